"""The Grafana dashboards: generated output up to date, well-formed, and shipped in the chart."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bridge.metrics import Metrics
from tests.support.observability import (
    CHART_DASHBOARDS,
    GRAFANA,
    GRAFANA_VARIABLES,
    dashboard_targets,
    load_dashboards,
)

UIDS = {
    "talon-bridge-overview.json": "talon-bridge-overview",
    "talon-bridge-talon-api.json": "talon-bridge-talon-api",
}
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
    "gauge": ("",),
}


def _build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards_build", GRAFANA / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _series_names() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry)
    return {m.name + s for m in registry.collect() for s in SUFFIXES[m.type]}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return load_dashboards()


def test_regeneration_is_a_noop() -> None:
    rendered = _build().render()
    on_disk = {p.name: p.read_text() for p in GRAFANA.glob("*.json")}
    assert set(rendered) == set(on_disk)
    stale = [name for name, text in rendered.items() if on_disk[name] != text]
    assert not stale, f"run `python deploy/grafana/build.py`; out of date: {stale}"


def test_the_charts_copies_are_identical() -> None:
    sources = {p.name: p.read_bytes() for p in GRAFANA.glob("*.json")}
    copies = {p.name: p.read_bytes() for p in CHART_DASHBOARDS.glob("*.json")}
    assert copies == sources, f"{CHART_DASHBOARDS} must hold exactly the files of {GRAFANA}"


def test_identity_and_links(boards: dict[str, dict[str, Any]]) -> None:
    assert {name: b["uid"] for name, b in boards.items()} == UIDS
    for name, board in boards.items():
        assert board["title"].startswith("talon-bridge / "), name
        assert "talon-bridge" in board["tags"], name
        # The runbook link is a hidden constant, set where the runbook is browsable.
        assert any(link.get("url") == "${runbook_url}" for link in board["links"]), name
        runbook = {v["name"]: v for v in board["templating"]["list"]}["runbook_url"]
        assert runbook["type"] == "constant" and runbook["hide"] == 2, name
        assert runbook["query"] == "docs/operations.md", name


def test_template_variables(boards: dict[str, dict[str, Any]]) -> None:
    for name, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for var in ("namespace", "pod"):
            assert variables[var]["type"] == "query", (name, var)
            assert variables[var]["includeAll"] and variables[var]["allValue"] == ".*"
        assert set(variables) - {"datasource", "runbook_url"} <= set(GRAFANA_VARIABLES), name
    overview = boards["talon-bridge-overview.json"]["templating"]["list"]
    assert "topic" in {v["name"] for v in overview}


def test_panels_are_well_formed(boards: dict[str, dict[str, Any]]) -> None:
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in _panels(board):
            where = f"{name} / {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel.get("description"), where
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, where
            targets = panel["targets"]
            assert targets, where
            assert len({t["refId"] for t in targets}) == len(targets), where
            assert all(t["refId"] and t["expr"].strip() for t in targets), where


def test_queries_use_known_metrics_variables_and_rate_interval(
    boards: dict[str, dict[str, Any]],
) -> None:
    known = _series_names()
    for name, board in boards.items():
        for title, expr in dashboard_targets(board):
            where = f"{name} / {title}: {expr}"
            for metric in re.findall(r"\bbridge_\w+", expr):
                assert metric in known, f"{where}: unknown metric {metric}"
            for var in re.findall(r"\$\{?(\w+)\}?", expr):
                assert var in GRAFANA_VARIABLES, f"{where}: unknown variable ${var}"
            assert not re.search(r"\[\d+[smhd]\]", expr), f"{where}: use $__rate_interval"
            if "bridge_" in expr:
                assert 'namespace=~"$namespace"' in expr and 'pod=~"$pod"' in expr, where


def test_overview_covers_the_worker(boards: dict[str, dict[str, Any]]) -> None:
    exprs = " ".join(e for _, e in dashboard_targets(boards["talon-bridge-overview.json"]))
    required = {
        "bridge_commands_consumed_total",
        "bridge_commands_processed_total",
        "bridge_api_errors_total",
        "bridge_commands_retried_total",
        "bridge_api_request_duration_seconds_bucket",
        "bridge_end_to_end_latency_seconds_bucket",
        "bridge_consumer_lag_records",
        "bridge_oldest_unprocessed_age_seconds",
        "bridge_in_flight_commands",
        "bridge_buffered_commands",
        "bridge_active_keys",
        "bridge_paused_partitions",
        "bridge_parked_sessions",
        "bridge_parked_oldest_age_seconds",
        "bridge_dead_letters_total",
        "bridge_rebalances_total",
        "bridge_offset_commits_total",
        "bridge_revoke_drain_duration_seconds_bucket",
        "bridge_ready",
        "bridge_input_topic_missing",
    }
    assert not required - set(re.findall(r"\bbridge_\w+", exprs))
    assert "process_cpu_seconds_total" in exprs and "process_resident_memory_bytes" in exprs
    assert "histogram_quantile(0.99, sum by (le) (rate(bridge_api_request_duration" in exprs


def test_api_dashboard_covers_each_operation(boards: dict[str, dict[str, Any]]) -> None:
    exprs = [e for _, e in dashboard_targets(boards["talon-bridge-talon-api.json"])]
    joined = " ".join(exprs)
    for needle in (
        "sum by (operation)",
        "sum by (outcome)",
        "sum by (operation, le)",
        "bridge_commands_retried_total",
        "bridge_idempotent_replays_total",
        "bridge_events_deduplicated_total",
        "bridge_api_auth_ok",
    ):
        assert needle in joined, needle


def test_no_stray_files() -> None:
    allowed = {"build.py", "plot.py", *UIDS}
    assert {p.name for p in GRAFANA.iterdir() if p.is_file()} <= allowed
