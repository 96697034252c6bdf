"""Kubernetes manifests: schema-valid (kubernetes-validate, offline, strict) and wired to each other, to the
image and to the server's settings. scripts/check_deploy.sh runs the same validation from the command line."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from deploy_helpers import K8S, REPO, RULES, load_yaml, load_yaml_docs

from elastic_anytime.service.settings import ENV_PREFIX, Settings

K8S_VERSIONS = ["1.29", kubernetes_validate.latest_version()]
# variables `elastic serve` reads for its own flags (elastic_cli/serve_cmd.py), not Settings fields
CLI_ENV = {"ELASTIC_HOST", "ELASTIC_PORT", "ELASTIC_WORKERS"}

# The Prometheus Operator's kinds have no schema in kubernetes-validate. These are the parts of the CRD schemas
# (monitoring.coreos.com/v1) our manifests use, closed with additionalProperties=false so a typo fails.
_METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", "endpoints"],
                "properties": {
                    "selector": _LABEL_SELECTOR,
                    "namespaceSelector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array"}},
                    },
                    "jobLabel": {"type": "string"},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?)$"},
                                "scrapeTimeout": {"type": "string", "pattern": "^(([0-9]+)m)?(([0-9]+)s)?$"},
                                "honorLabels": {"type": "boolean"},
                            },
                        },
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["groups"],
                "properties": {"groups": {"type": "array", "minItems": 1}},
            },
        },
    },
}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path.name.endswith("-values.yaml"):
            continue
        out.extend((str(path.relative_to(REPO)), doc) for doc in load_yaml_docs(path))
    return out


def applied() -> dict[str, dict[str, Any]]:
    """The objects `kubectl apply -k deploy/k8s` creates, by kind (one of each)."""
    objects: dict[str, dict[str, Any]] = {}
    for name in load_yaml(K8S / "kustomization.yaml")["resources"]:
        for doc in load_yaml_docs(K8S / name):
            assert doc["kind"] not in objects, f"two {doc['kind']} objects"
            objects[doc["kind"]] = doc
    return objects


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates(version: str) -> None:
    docs = manifests()
    assert len(docs) >= 9
    for path, doc in docs:
        if doc["kind"] in CRD_SCHEMAS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", path
            jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
        else:
            kubernetes_validate.validate(doc, version, strict=True)


def test_validation_catches_a_typo() -> None:
    # the check has teeth: a misspelt field fails in strict mode, in a core kind and in a CRD
    deployment = applied()["Deployment"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)
    monitor = applied()["ServiceMonitor"]
    broken = {**monitor, "spec": {**monitor["spec"], "endpoint": []}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, CRD_SCHEMAS["ServiceMonitor"])


def test_kustomization_lists_every_manifest_outside_examples() -> None:
    listed = set(load_yaml(K8S / "kustomization.yaml")["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_all_objects_live_in_the_namespace() -> None:
    objects = applied()
    namespace = objects["Namespace"]["metadata"]["name"]
    for kind, obj in objects.items():
        if kind != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, kind


def _container() -> dict[str, Any]:
    (container,) = applied()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_deployment_requests_a_gpu_with_resources_and_probes() -> None:
    container = _container()
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"]["nvidia.com/gpu"] == 1
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
    # Guaranteed QoS, whole CPUs: what the static CPU manager needs to give the pod cores of its own
    assert all(resources["requests"][r] == resources["limits"][r] for r in ("cpu", "memory"))
    assert str(resources["requests"]["cpu"]).isdigit()
    port_names = {port["name"] for port in container["ports"]}
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["port"] in port_names


def test_pod_runs_as_the_images_non_root_user() -> None:
    user = next(line.split()[1] for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("USER "))
    pod = applied()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == user
    assert _container()["securityContext"]["readOnlyRootFilesystem"] is True


def test_config_env_names_are_settings_the_server_reads() -> None:
    objects = applied()
    container = _container()
    (source,) = container["envFrom"]
    assert source["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    serve_source = (REPO / "elastic_cli" / "serve_cmd.py").read_text()
    assert all(f'"{name}"' in serve_source for name in CLI_ENV)
    known = {ENV_PREFIX + field.upper() for field in Settings.model_fields} | CLI_ENV
    names = set(objects["ConfigMap"]["data"]) | {var["name"] for var in container.get("env", [])}
    assert names <= known, names - known


def test_service_hpa_and_pdb_select_the_deployment() -> None:
    objects = applied()
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        spec = objects[kind]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= pod_labels.items(), kind
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] in {p["name"] for p in _container()["ports"]}
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_service_monitor_scrapes_the_service_as_job_elastic() -> None:
    objects = applied()
    service, monitor = objects["Service"], objects["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # without jobLabel the operator names the job after the Service; the alert rules select job="elastic"
    assert "jobLabel" not in monitor["spec"] and service["metadata"]["name"] == "elastic"


def test_prometheus_rule_is_the_rules_file_verbatim() -> None:
    assert applied()["PrometheusRule"]["spec"]["groups"] == load_yaml(RULES)["groups"]


def test_queue_wait_example_hpa_asks_for_the_adapter_metric() -> None:
    hpa = load_yaml(K8S / "examples" / "hpa-queue-wait.yaml")
    values = load_yaml(K8S / "examples" / "prometheus-adapter-values.yaml")
    published = {rule["name"]["as"] for rule in values["rules"]["custom"]}
    wanted = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert wanted and wanted <= published
    assert hpa["metadata"]["name"] == applied()["HorizontalPodAutoscaler"]["metadata"]["name"]  # replaces it
