#!/usr/bin/env bash
# A/B of server settings in one session (docs/performance.md): for each round and each setting, start
# `elastic serve` with it, measure concurrency 1 (no budget, 2 ms, 3 ms), saturation (closed loop, 32
# clients), then open-loop points at RATE for each budget, and print one line per point. Rounds
# alternate the settings, because this VM drifts.
#
#   experiments/scripts/ab_engine.sh 2 300 "ELASTIC_ENGINE=thread" "ELASTIC_ENGINE=process"
#   BUDGETS=5,8,15 N=800 experiments/scripts/ab_engine.sh 2 250 "ELASTIC_GIL_SWITCH_INTERVAL_MS=0.1" "ELASTIC_GIL_SWITCH_INTERVAL_MS=0.02"
#   experiments/scripts/ab_engine.sh 2 300 TREE=/tmp/base TREE=.   (a setting TREE=DIR serves the code of DIR,
#   e.g. a `git worktree` of another commit, with this checkout's venv)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
root=$(pwd)
rounds=$1 rate=$2
shift 2
data=${DATA:-../shared/data/cifar10}
port=${PORT:-8124}
for _ in $(seq 1 "$rounds"); do
    for setting in "$@"; do
        tree=.
        for word in $setting; do case $word in TREE=*) tree=${word#TREE=} ;; esac; done
        # shellcheck disable=SC2086  # each setting is one or more NAME=VALUE words
        (cd "$tree" && exec env ELASTIC_TORCH_THREADS=1 $setting "$root/.venv/bin/python" -m elastic_anytime.elastic_cli.main serve \
            --port "$port" --no-access-log >/tmp/ab_engine.log 2>&1) &
        server=$!
        for _ in $(seq 120); do sleep 0.5; curl -sf "localhost:$port/readyz" >/dev/null && break; done
        url="http://127.0.0.1:$port/v1/classify"
        .venv/bin/elastic bench load --url "$url" --data "$data" --budgets none,2,3 --concurrency 1 --requests 400 \
            --time-limit 20 2>&1 | grep "^| closed" |
            awk -F'|' -v s="$setting" '{printf "[%s] c=1 budget %s: p50 %s ms, refused %s, in budget %s (client %s)\n", s, $3, $11, $6, $8, $9}'
        sat=$(.venv/bin/elastic bench load --url "$url" --data "$data" --budgets none --concurrency 32 \
            --requests 2000 --time-limit 15 2>&1 | tail -1 | awk -F'|' '{print $14}')
        .venv/bin/elastic bench load --url "$url" --data "$data" --budgets "${BUDGETS:-4,5,8}" --mode open \
            --rates "$rate" --requests "${N:-1000}" --time-limit 20 2>&1 | grep "^| open" |
            awk -F'|' -v s="$setting" -v sat="$sat" \
                '{printf "[%s] saturation %s/s | budget %s: sent %s, refused %s, in budget %s, accuracy %s\n", s, sat, $3, $4, $6, $8, $10}'
        kill "$server"
        wait "$server" 2>/dev/null
    done
done
