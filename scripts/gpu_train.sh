#!/usr/bin/env bash
# One lease of a GPU machine: train the teacher, the shipped cascade and its plain baselines
# (training/recipes/cascade-cifar10.json) from the packed train split, results under $OUT.
# Usage there: bash scripts/gpu_train.sh   (needs .pack/train from scripts/pack_images.py, carried)
set -o pipefail
export PYTHONUNBUFFERED=1
out=${OUT:-runs/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
python3 -m elastic_anytime.training.fast_recipe --data .pack/train --recipe training/recipes/cascade-cifar10.json \
  --out "$out" --workers 14 "$@" 2>&1 | grep -v -i warn | tee "$out/train.log"
python3 -c "
import json, sys
r = json.load(open('$out/report.json'))
for m in r['models']:
    print(m.get('name'), m.get('epochs'), m.get('seconds'), m.get('val'), m.get('skipped', ''))
print('total', r.get('total_seconds'))
"
