#!/usr/bin/env bash
# `make bench` on a lent GPU machine: the whole suite (our server, LitServe, in-process bound, oracle) on
# its 16 cores, to see which targets a machine with spare cores meets with the same code.
# First, here: PER_CLASS=200 scripts/gpu_wheels.sh (wheels incl. LitServe → .whl/, 2000 images → .gpudata/).
# Then, with the device tool: command `bash scripts/gpu_bench.sh`, carry [".whl", ".gpudata"], timeout_s 590.
#
#   DEVICE=cpu (default) or cuda; SIZE=full (default); THREADS=1 (torch intra-op threads, as `make bench`)
# Everything goes to $OUT (default gpu-bench-out): gpu_bench.log, BENCHMARKS.md, results.json, plots.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-gpu-bench-out}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cpu}
SIZE=${SIZE:-full}
THREADS=${THREADS:-1}
LIMIT=${LIMIT:-560}  # seconds for the suite, inside the device call's own limit
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/gpu_bench.log") 2>&1
tee_pid=$!

if [[ ${WHEELS:-1} == 1 ]]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
echo "cores: $(nproc); $(grep -m1 'model name' /proc/cpuinfo)"
echo "load: $(cat /proc/loadavg)"

timeout -k 10 "$LIMIT" "$PYTHON" -m elastic_anytime.elastic_cli.main bench suite --device "$DEVICE" --size "$SIZE" --threads "$THREADS" \
    --data .gpudata --out "$OUT/suite" --doc "$OUT/BENCHMARKS.md" --assets "$OUT/assets"
echo "suite: exit $?"
cp "$OUT/suite/results.json" "$OUT/results.json" 2>/dev/null || echo "no results.json"
exec >&- 2>&-
wait "$tee_pid"
