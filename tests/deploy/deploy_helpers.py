"""Shared by the deploy tests: readers for the files under deploy/ and the PromQL they contain, and small
helpers for the live tests (ports, images, binaries)."""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "elastic.json"
RULES = DEPLOY / "prometheus" / "rules" / "elastic.rules.yml"
K8S = DEPLOY / "k8s"
ADAPTER_VALUES = K8S / "examples" / "prometheus-adapter-values.yaml"
SCRAPE_INTERVAL_S = 1  # the live Prometheus scrapes and evaluates rules this often

# Grafana's own variables, as Grafana would expand them against a 1 s scrape interval in the live test
GRAFANA_VARS = {"$__rate_interval": "1m"}
_METRIC = re.compile(r"\belastic_[a-z0-9_]+\b")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panel_queries() -> list[tuple[str, str]]:
    """(panel title + refId, PromQL as Prometheus will see it) for every target of every panel."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append((f"{panel['title']} [{target['refId']}]", expand_grafana(target["expr"])))
    return out


def expand_grafana(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def rule_queries() -> list[tuple[str, str]]:
    return [(rule.get("alert") or rule["record"], rule["expr"].strip()) for rule in rules()]


def adapter_queries() -> list[tuple[str, str]]:
    """prometheus-adapter metricsQuery templates, rendered as the adapter would for one job's pods."""
    out = []
    for rule in load_yaml(ADAPTER_VALUES)["rules"]["custom"]:
        series = re.match(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"]).group(1)
        query = (
            rule["metricsQuery"]
            .replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", 'job="elastic"')
            .replace("<<.GroupBy>>", "instance")
        )
        out.append((rule["name"]["as"], query))
    return out


def metric_names(expr: str) -> set[str]:
    """Our metric families an expression reads (histogram series names folded to the family)."""
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in _METRIC.findall(expr)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def png_bytes(seed: int) -> bytes:
    image = Image.new("RGB", (32, 32), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # a failure, not a skip: CI must have it (.ci/run installs Debian's prometheus)
        pytest.fail(f"'{name}' not found: apt-get install prometheus (or run .ci/run)")
    return path
