#!/usr/bin/env bash
# The one script to run on a lent GPU machine (NVIDIA H100/H200, Python 3.12 with torch, no network).
# First, here: scripts/gpu_wheels.sh (wheels → .whl/, test images → .gpudata/). Then, with the device
# tool: command `bash scripts/gpu_check.sh`, carry [".whl", ".gpudata"], timeout_s 480.
#
# Steps, each under its own `timeout` so that one hang cannot eat the lease; one failing does not stop
# the next. Everything goes to $OUT (a local folder when OUT is unset):
#   gpu_check.log  all output          env.txt       GPU, driver, torch/CUDA/cuDNN, carried packages
#   pytest.xml     junit, per test     latency.json  benchmarks.runner_latency (per exit, batch, precision)
#   results.json   elastic bench suite elastic.log   the suite's server log
#   summary.txt    the table printed last
#
# Dry run on a CPU machine (small, skips the wheel install; the CUDA tests show as skipped):
#   OUT=/tmp/gpu-dry WHEELS=0 PYTHON=.venv/bin/python DEVICE=cpu SIZE=smoke BATCHES=1,8 REPS=5 \
#       bash scripts/gpu_check.sh
set -uo pipefail  # no -e: every step runs and reports its own exit status
cd "$(dirname "$0")/.." || exit 1

OUT=${OUT:-gpu-out}
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-1}                  # 0: the packages are already there (dry run)
DEVICE=${DEVICE:-cuda}               # for the latency step and the suite; the tests pick CUDA themselves
SIZE=${SIZE:-small}                  # elastic bench suite --size
BATCHES=${BATCHES:-1,8,32,128}
PRECISIONS=${PRECISIONS:-fp32,bf16}
REPS=${REPS:-100}
read -r -a TESTS <<<"${TESTS:-tests/service tests/models tests/e2e/test_serving.py}"
WORKERS=${WORKERS:-4}                # step d: uvicorn workers sharing the GPU
T_TESTS=${T_TESTS:-150} T_LATENCY=${T_LATENCY:-75} T_SUITE=${T_SUITE:-150} T_WORKERS=${T_WORKERS:-90}  # seconds per step
export PYTHONUNBUFFERED=1

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/gpu_check.log") 2>&1
tee_pid=$!
started=$SECONDS
declare -A status

if [[ $WHEELS == 1 ]]; then
    if ! "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl; then
        echo "wheel install failed"
        exit 1
    fi
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, record and print its exit status
    local name=$1 limit=$2
    shift 2
    echo "=== $name (at most ${limit}s) at +$((SECONDS - started))s: $*"
    timeout -k 10 "$limit" "$@"
    status[$name]=$?
    echo "=== $name: exit ${status[$name]} at +$((SECONDS - started))s"
}

{
    nvidia-smi -L || echo "no nvidia-smi"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu \
        --format=csv 2>/dev/null || true
    nproc
    "$PYTHON" - <<'EOF'
import torch
print("python", __import__("sys").version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version(), "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "tf32 conv", torch.backends.cudnn.allow_tf32,
          "tf32 matmul", torch.backends.cuda.matmul.allow_tf32)
for name in ("fastapi", "starlette", "pydantic", "uvicorn", "httptools", "uvloop", "httpx", "anyio", "numpy", "PIL"):
    module = __import__(name)
    print(name, getattr(module, "__version__", "?"), module.__file__)
EOF
} 2>&1 | tee "$OUT/env.txt"

# a. the CUDA tests, and the service/model tests (there `device=auto` is CUDA for the e2e server)
step tests "$T_TESTS" "$PYTHON" -m pytest -q -p no:cacheprovider -o faulthandler_timeout=60 --durations=10 \
    --junitxml="$OUT/pytest.xml" "${TESTS[@]}"

# b. per-exit latency of the serving runner (folded, as served), synchronised, after warm-up
step latency "$T_LATENCY" "$PYTHON" -m elastic_anytime.benchmarks.runner_latency --device "$DEVICE" --batches "$BATCHES" \
    --precisions "$PRECISIONS" --reps "$REPS" --warmup 10 --data .gpudata --out "$OUT/latency.json"

# c. the benchmark suite, our server only (LitServe is not on that machine)
suite_dir=$(mktemp -d)
step suite "$T_SUITE" "$PYTHON" -m elastic_anytime.elastic_cli.main bench suite --device "$DEVICE" --size "$SIZE" --no-peer \
    --data .gpudata --out "$suite_dir"
cp "$suite_dir/results.json" "$OUT/results.json" 2>/dev/null || echo "no results.json"
cp "$suite_dir/logs/elastic.log" "$OUT/elastic.log" 2>/dev/null || echo "no server log"

# d. one GPU, several uvicorn workers (each its own model copy and batcher): saturation at full depth
#    and with a 10 ms budget, closed loop with many clients
workers_bench() {
    local port=8765
    ELASTIC_DEVICE=$DEVICE "$PYTHON" -m elastic_anytime.elastic_cli.main serve --workers "$WORKERS" --port $port \
        --no-access-log --log-level warning >"$suite_dir/workers.log" 2>&1 &
    local server=$!
    "$PYTHON" - $port <<'EOF'
import sys, time, httpx
for _ in range(240):
    try:
        if httpx.get(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    time.sleep(0.5)
EOF
    "$PYTHON" -m elastic_anytime.elastic_cli.main bench load --url http://127.0.0.1:$port/v1/classify --data .gpudata \
        --budgets none,10 --concurrency 64 --requests 4000 --time-limit 20 --json "$OUT/workers.json"
    local rc=$?
    kill "$server"; wait "$server"
    return $rc
}
export -f workers_bench
export DEVICE PYTHON WORKERS OUT suite_dir
step workers "$T_WORKERS" bash -c workers_bench

{
    echo "=== summary after $((SECONDS - started))s: tests ${status[tests]}, latency ${status[latency]}," \
        "suite ${status[suite]}, workers ${status[workers]} (0 = ok, 124 = timed out)"
    grep -oE '<testsuite [^>]*' "$OUT/pytest.xml" 2>/dev/null | grep -oE '(tests|failures|errors|skipped|time)="[^"]*"' |
        tr '\n' ' '
    echo
    "$PYTHON" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
if (out / "latency.json").exists():
    from benchmarks.runner_latency import table
    latency = json.loads((out / "latency.json").read_text())
    print(f"runner latency on {latency['machine'].get('gpu') or latency['device']}: serving p50 ms (model-only p50 ms)")
    print(table(latency))
if (out / "results.json").exists():
    r = json.loads((out / "results.json").read_text())
    final = r["lower_bound"]["exits"][-1]
    e = r["elastic"]
    print(f"suite {r['size']} on {r['machine'].get('gpu') or r['machine']['device']}, {r['images']} images")
    print(f"in-process final exit: batch-1 p50 {final['batch1_ms']['p50']:.2f} ms, "
          f"batch {final['batch']} {final['batched_images_per_s'] or 0:.0f} img/s")
    c1, sat = e["full_depth_c1"], e["saturation"]
    print(f"server full depth c1: client p50 {c1['client_ms']['p50']:.2f} ms, server p50 {c1['server_ms']['p50']:.2f} ms;"
          f" saturation {sat['throughput_rps'] or 0:.0f} req/s; overhead {r['server_overhead_ms']:.2f} ms")
    for t in r["targets"]:
        print(f"target {t['name']}: {t['measured']} (goal {t['goal']}) met={t['met']}")
EOF
} 2>&1 | tee "$OUT/summary.txt"
rm -rf "$suite_dir"
exec >&- 2>&-
wait "$tee_pid"  # the whole log is in $OUT before the command returns
