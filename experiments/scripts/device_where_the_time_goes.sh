set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 ELASTIC_DEVICE=cpu ELASTIC_TORCH_THREADS=1
exp() { timeout 100 "$@" python3 experiments/scripts/where_the_time_goes.py --data .gpudata --images 300 2>&1 | grep -v INFO; }
echo "== any cores"; exp
echo "== one core (taskset -c 3)"; exp taskset -c 3
echo "== two cores (taskset -c 3,4)"; exp taskset -c 3,4
http() {  # http PIN_SERVER PIN_CLIENT
  $1 python3 -m elastic_anytime.elastic_cli.main serve --port 8765 --log-level warning > /tmp/s.log 2>&1 &
  for i in $(seq 120); do sleep 0.5; curl -sf localhost:8765/readyz >/dev/null && break; done
  $2 python3 -m elastic_anytime.elastic_cli.main bench load --url http://127.0.0.1:8765/v1/classify --data .gpudata --budgets none --concurrency 1 --requests 600 2>&1 | tail -1
  kill %1; wait
}
echo "== http, any cores"; http "" ""
echo "== http, server on 3,4, client on 5"; http "taskset -c 3,4" "taskset -c 5"
echo "== http, server and client on 3,4"; http "taskset -c 3,4" "taskset -c 3,4"
