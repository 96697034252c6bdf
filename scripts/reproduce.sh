#!/usr/bin/env bash
# The paper's comparison at 32×32 from scratch: each backbone trained with exits and with
# `--exits final` (no early exits), same recipe and epochs; then a table and one combined plot.
# Results and the exact schedule are discussed in docs/reproduction.md.
#
#   scripts/reproduce.sh                 # all six runs, sequentially, then the summary
#   EPOCHS=30 LIMIT_TRAIN=0 THREADS=8 scripts/reproduce.sh   # a longer schedule on a bigger machine
#
# Runs are resumable: finished runs are skipped, an interrupted one continues from its last epoch.
set -euo pipefail

DATA=${DATA:-../shared/data/cifar10}     # an ImageFolder root with train/ and test/, or cifar10
OUT=${OUT:-runs/repro}
EPOCHS=${EPOCHS:-10}
LIMIT_TRAIN=${LIMIT_TRAIN:-10000}        # first N shuffled training images (0 = all 50000)
THREADS=${THREADS:-1}
ELASTIC=${ELASTIC:-.venv/bin/elastic}
PYTHON=${PYTHON:-.venv/bin/python}
DOCS=${DOCS:-docs}

recipe=(
  --data "$DATA" --limit-train "$LIMIT_TRAIN" --epochs "$EPOCHS"
  --batch-size 128 --optimizer sgd --lr 0.1 --momentum 0.9 --weight-decay 5e-4
  --schedule onecycle --warmup 0.2 --loss uniform --head linear
  --crop-padding 4 --flip true --precision bf16 --seed 0
  --threads "$THREADS" --eval-every 5 --progress false
)

mkdir -p "$OUT"
train() {
  local name=$1
  shift
  if [[ -f $OUT/$name/checkpoint/elastic.json ]]; then
    echo "== $name: done already ($OUT/$name)"
    return
  fi
  echo "== $name: $ELASTIC train ${recipe[*]} $* --out $OUT/$name --resume true"
  local start=$SECONDS
  "$ELASTIC" train "${recipe[@]}" "$@" --out "$OUT/$name" --resume true
  printf '%s\t%d\n' "$name" $((SECONDS - start)) >>"$OUT/wall_seconds.tsv"
}

train resnet20-exits --model cifar_resnet20 --exits all
train resnet20-final --model cifar_resnet20 --exits final
train mobilenetv2-exits --model mobilenetv2 --model-arg width_mult=0.5 --exits all
train mobilenetv2-final --model mobilenetv2 --model-arg width_mult=0.5 --exits final
# DenseNet-121 has 58 dense layers: an exit after every 4th keeps 15 exits (all 58 would cost more
# in heads and loss terms than the comparison needs).
train densenet121-exits --model densenet121 --model-arg growth_rate=12 --exits 4
train densenet121-final --model densenet121 --model-arg growth_rate=12 --exits final

# SEED_CHECK=1: the ResNet-20 and MobileNetV2 pairs again with seed 1 (other init, order and
# augmentation), to see how much of a difference is run-to-run noise.
if [[ ${SEED_CHECK:-0} == 1 ]]; then
  train resnet20-exits-seed1 --model cifar_resnet20 --exits all --seed 1
  train resnet20-final-seed1 --model cifar_resnet20 --exits final --seed 1
  train mobilenetv2-exits-seed1 --model mobilenetv2 --model-arg width_mult=0.5 --exits all --seed 1
  train mobilenetv2-final-seed1 --model mobilenetv2 --model-arg width_mult=0.5 --exits final --seed 1
  "$PYTHON" -m elastic_anytime.training.compare "$OUT" \
    --pair "CIFAR ResNet-20, seed 1=resnet20-exits-seed1,resnet20-final-seed1" \
    --pair "MobileNetV2 ×0.5, seed 1=mobilenetv2-exits-seed1,mobilenetv2-final-seed1" \
    --png "$OUT/seed1.png" --markdown "$OUT/table-seed1.md"
fi

"$PYTHON" -m elastic_anytime.training.compare "$OUT" \
  --pair "CIFAR ResNet-20=resnet20-exits,resnet20-final" \
  --pair "MobileNetV2 ×0.5=mobilenetv2-exits,mobilenetv2-final" \
  --pair "DenseNet-121 k=12=densenet121-exits,densenet121-final" \
  --png "$DOCS/reproduction.png" --markdown "$OUT/table.md"
