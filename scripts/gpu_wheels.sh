#!/usr/bin/env bash
# Run HERE (with network) before a GPU check: what scripts/gpu_check.sh needs on the lent GPU machine,
# which has Python 3.12, torch and most libraries but cannot download anything.
#
#   scripts/gpu_wheels.sh      # → .whl/ (py3.12 manylinux wheels) and .gpudata/test/<class>/*.jpg
#
# Both folders are ignored through .git/info/exclude and travel with the run's `carry`.
# Versions are the ones in .venv, so the GPU machine serves with what the tests here ran against.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
DATA=${DATA:-../shared/data/cifar10}
PER_CLASS=${PER_CLASS:-50}
# not on the GPU image (KINDS.md's package list), or needed at a newer version than it may hold (anyio:
# fastapi needs >= 4.1; typing-extensions: pydantic needs >= 4.16; the image's versions are unknown)
PACKAGES=(fastapi starlette pydantic pydantic-core annotated-types annotated-doc typing-inspection typing-extensions
    uvicorn httptools python-multipart opentelemetry-api anyio
    litserve pyzmq)  # the benchmark's peer server (scripts/gpu_bench.sh)

mkdir -p .git/info
for path in /.whl/ /.gpudata/; do
    grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >>.git/info/exclude
done

pins=()
for name in "${PACKAGES[@]}"; do
    version=$("$PYTHON" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    [[ -n $version ]] || { echo "error: $name is not installed in the venv" >&2; exit 1; }
    pins+=("$name==$version")
done

rm -rf .whl && mkdir -p .whl
# the recipe of /work/.library/device/README.md (notes): one wheel per package, no dependencies resolved
"$PYTHON" -m pip download -q --no-deps --progress-bar off --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pins[@]}"

# every wheel must install on CPython 3.12 x86-64
for wheel in .whl/*.whl; do
    tags=$(basename "$wheel" .whl | awk -F- '{print $(NF-2) "-" $(NF-1) "-" $NF}')
    case $tags in
        py3-none-any | cp312-cp312-*x86_64* | cp3*-abi3-*x86_64*) ;;
        *) echo "error: $wheel does not fit CPython 3.12 x86-64 ($tags)" >&2; exit 1 ;;
    esac
done

rm -rf .gpudata && mkdir -p .gpudata/test
for class_dir in "$DATA"/test/*/; do
    class=$(basename "$class_dir")
    mkdir -p ".gpudata/test/$class"
    mapfile -t files < <(find "$class_dir" -maxdepth 1 -name '*.jpg' | sort)  # no `head`: SIGPIPE under pipefail
    cp -t ".gpudata/test/$class" "${files[@]:0:$PER_CLASS}"
done

ls -1 .whl
echo "images: $(find .gpudata -name '*.jpg' | wc -l)"
du -sh .whl .gpudata
