"""Static checks of the Grafana dashboard and its provisioning. The live test (test_deploy_prometheus.py)
runs every query against a real Prometheus."""

from __future__ import annotations

import re

from deploy_helpers import DEPLOY, dashboard, load_yaml, panel_queries

REQUIRED_PANELS = {
    "Request rate by exit",
    "Latency p50 by exit",
    "Latency p95 by exit",
    "Latency p99 by exit",
    "Budget hit ratio",
    "Budget slack",
    "Queue wait",
    "Batch size",
    "Stage latency",
    "Rejected and errored rate",
}


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    titles = {panel["title"] for panel in dashboard()["panels"]}
    assert titles >= REQUIRED_PANELS, REQUIRED_PANELS - titles


def test_every_panel_queries_the_provisioned_datasource() -> None:
    provisioned = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    uids = {ds["uid"] for ds in provisioned if ds["type"] == "prometheus"}
    for panel in dashboard()["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_ids_and_ref_ids_are_unique() -> None:
    panels = dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_tile_the_24_column_grid_without_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells.get((x, y))}"
                cells[(x, y)] = panel["title"]


def test_only_known_grafana_variables_are_used() -> None:
    # the live test expands these; anything else would reach Prometheus unexpanded and fail there
    for name, expr in panel_queries():
        assert not re.search(r"\$\w+", expr), f"{name}: unexpanded variable in {expr}"


def test_provisioning_points_at_the_dashboard_folder_compose_mounts() -> None:
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "elastic.yml")["providers"][0]
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    mounts = dict(volume.split(":")[:2][::-1] for volume in compose["services"]["grafana"]["volumes"])
    host_dir = mounts[provider["options"]["path"]]
    assert (DEPLOY / host_dir / "elastic.json").is_file()
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/elastic.json"
