"""The Dockerfile, its build context and the compose stack, checked without a Docker engine (none runs here):
what the image copies is in the context, what compose mounts exists, and the pieces point at each other.
hadolint and `docker-compose config` run in scripts/check_deploy.sh."""

from __future__ import annotations

import fnmatch
import re

from deploy_helpers import DEPLOY, REPO, load_yaml

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """Arguments of every `NAME ...` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.split(None, 1)[:1] == [name]]


def in_context(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context (last matching rule wins, as in Docker)."""
    included = True
    for rule in (REPO / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/").removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or fnmatch.fnmatch(parts[-1], pattern):
            included = negate
    return included


def test_base_image_is_a_pinned_cuda_pytorch_tag_matching_the_project_pin() -> None:
    (base,) = instructions("FROM")
    match = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda\d+\.\d+-cudnn\d+-runtime", base)
    assert match, base
    pinned = re.search(r'"torch==([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert match.group(1) == pinned


def test_everything_copied_is_in_the_build_context() -> None:
    copies = instructions("COPY")
    assert copies
    for args in copies:
        *sources, _dest = args.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert in_context(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    # and the heavy or private things stay out
    for path in (".venv", ".git", "data", "runs", "logs", "tests", "models/__pycache__"):
        assert not in_context(path), path


def test_image_runs_as_numeric_non_root_user_with_healthcheck_and_entrypoint() -> None:
    (user,) = instructions("USER")
    uid, gid = user.split(":")
    assert int(uid) > 0 and int(gid) > 0
    assert instructions("EXPOSE") == ["8000"]
    (health,) = instructions("HEALTHCHECK")
    assert "python3" in health and "/healthz" in health and "curl" not in health
    assert instructions("ENTRYPOINT") == ['["elastic", "serve"]']


def test_compose_wires_service_prometheus_and_grafana() -> None:
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert {"elastic", "prometheus", "grafana"} <= set(services)
    elastic = services["elastic"]
    (device,) = elastic["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "/healthz" in " ".join(elastic["healthcheck"]["test"])
    assert elastic["build"]["context"] == ".." and (DEPLOY / ".." / elastic["build"]["dockerfile"]).is_file()
    # every bind mount's host side exists (its default, for ${VAR:-default} forms)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            host = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", volume).split(":")[0]
            if host.startswith("."):  # a bind mount, not a named volume
                assert (DEPLOY / host).exists(), f"{name}: {volume}"
    # Prometheus scrapes the compose service on the container port, as job "elastic"
    prometheus = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    (job,) = prometheus["scrape_configs"]
    assert job["job_name"] == "elastic"
    assert job["static_configs"][0]["targets"] == ["elastic:8000"]
    # Grafana's datasource is the compose Prometheus
    datasource = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert "9090:9090" in services["prometheus"]["ports"] and "3000:3000" in services["grafana"]["ports"]
