#!/bin/sh
# Starts `elastic serve` from ELASTIC_* env, in the image and outside it alike:
#   ELASTIC_CHECKPOINT  checkpoint dir (default: the shipped one), e.g. /models/my-ckpt
#   ELASTIC_HOST / ELASTIC_PORT / ELASTIC_WORKERS
# Extra arguments are passed on to `elastic serve`.
set -eu

workers="${ELASTIC_WORKERS:-1}"

# Several workers share one /metrics through prometheus-client's multiprocess mode. Files left by a previous
# run would be merged into the new counters, so the directory is emptied at every start.
if [ "$workers" -gt 1 ] && [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    export PROMETHEUS_MULTIPROC_DIR=/tmp/elastic-metrics
fi
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    rm -rf "${PROMETHEUS_MULTIPROC_DIR:?}"
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi

if [ -n "${ELASTIC_CHECKPOINT:-}" ]; then
    set -- "$ELASTIC_CHECKPOINT" "$@"
fi

exec elastic serve "$@" \
    --host "${ELASTIC_HOST:-0.0.0.0}" \
    --port "${ELASTIC_PORT:-8000}" \
    --workers "$workers"
