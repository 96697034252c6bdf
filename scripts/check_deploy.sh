#!/usr/bin/env bash
# Static checks of everything under deploy/ with the real tools (Docker itself is not needed):
#   hadolint (Dockerfile), shellcheck (this script), docker-compose config (compose schema),
#   promtool check config / check rules / test rules, kubernetes-validate (every manifest, strict, oldest and
#   newest supported Kubernetes; the kustomize render too when kubectl is there).
# Tools: `pip install -e '.[deploy]'` (hadolint, shellcheck, kubernetes-validate) and Debian's `prometheus`
# (promtool) and `docker-compose`; .ci/run installs them. The live checks (real server + real Prometheus,
# promtool check metrics) are pytest tests in tests/deploy, run by `make check-deploy` after this script.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${VENV:-.venv}/bin"
K8S_VERSIONS=(1.29 1.37) # oldest and newest that kubernetes-validate ships schemas for, as of writing

need() {
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "check_deploy: '$tool' not found. Run .ci/run, or: pip install -e '.[deploy]' and" \
                "apt-get install prometheus docker-compose" >&2
            exit 1
        fi
    done
}
step() { printf '\n== %s\n' "$*"; }

export PATH="$BIN:$PATH"
need hadolint shellcheck kubernetes-validate promtool docker-compose

step "hadolint Dockerfile"
hadolint Dockerfile
echo "ok"

step "shellcheck"
shellcheck scripts/check_deploy.sh
echo "ok"

step "docker-compose config (compose file schema and interpolation)"
docker-compose -f deploy/docker-compose.yml config --quiet
echo "ok"

step "promtool check config / rules / test rules"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.yml

# kubernetes-validate --strict; fails on errors and on warnings other than "no schema" for the Prometheus
# Operator kinds (no upstream schema: tests/deploy/test_deploy_k8s.py checks those against the CRD fields).
validate() {
    local out
    out=$(kubernetes-validate --strict "$@" 2>&1) || {
        echo "$out"
        return 1
    }
    echo "$out"
    if grep -v -E "Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1" \
        <<<"$out" | grep -q -E '^(WARN|ERROR)'; then
        echo "check_deploy: unexpected warnings above" >&2
        return 1
    fi
}

# Kubernetes objects: every YAML under deploy/k8s except the kustomization itself and Helm values files.
mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml ! -name '*-values.yaml' | sort)
for version in "${K8S_VERSIONS[@]}"; do
    step "kubernetes-validate --strict, Kubernetes $version (${#manifests[@]} files)"
    validate --kubernetes-version "$version" "${manifests[@]}"
done

step "kustomize render"
if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize deploy/k8s >"${TMPDIR:-/tmp}/elastic-k8s-rendered.yaml"
    validate "${TMPDIR:-/tmp}/elastic-k8s-rendered.yaml"
    echo "ok: rendered and validated"
else
    # the kustomization only lists the files validated above, so nothing goes unchecked without kubectl
    echo "kubectl not found: render not checked (the listed files were validated one by one)"
fi

printf '\ncheck_deploy: all static deploy checks passed\n'
