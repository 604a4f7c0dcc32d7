"""Every dashboard query and alert rule, evaluated by a real Prometheus on a real worker's data.

The worker ran against the simulator with injected faults (429/5xx, resets, lost responses, a
short API key rejection and a rejected attribute), so error, retry and dead-letter series
exist. A query that returns nothing here would show "No data" on a dashboard, or never fire.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.support.observability import (
    ALERTS,
    LABELS,
    ObservedRun,
    PrometheusError,
    dashboard_targets,
    grafana_to_promql,
    load_dashboards,
    wait_until,
    without_thresholds,
)

pytestmark = pytest.mark.kafka


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _empty_or_failing(prom: Any, queries: list[tuple[str, str]]) -> list[str]:
    problems = []
    for where, promql in queries:
        try:
            result = prom.query(promql)
        except PrometheusError as exc:
            problems.append(f"{where}: {promql}\n    error: {exc}")
            continue
        if not result:
            problems.append(f"{where}: {promql}\n    returned no series")
    return problems


def test_prometheus_scrapes_the_worker(observed_run: ObservedRun) -> None:
    prom = observed_run.require_prometheus()
    up = prom.query(f'up{{job="{prom.job}"}}')
    assert [s["value"][1] for s in up] == ["1"]
    assert {k: up[0]["metric"][k] for k in LABELS} == LABELS


def test_every_dashboard_query_returns_series(observed_run: ObservedRun) -> None:
    prom = observed_run.require_prometheus()
    queries = [
        (f"{name} / {title}", grafana_to_promql(expr))
        for name, board in load_dashboards().items()
        for title, expr in dashboard_targets(board)
    ]
    assert len(queries) > 40
    problems = _empty_or_failing(prom, queries)
    assert not problems, "dashboard queries without data:\n" + "\n".join(problems)


def test_every_dashboard_variable_has_values(observed_run: ObservedRun) -> None:
    prom = observed_run.require_prometheus()
    problems = []
    for name, board in load_dashboards().items():
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
            assert m, f"{name}: ${var['name']} is not a label_values() query"
            selector, label = grafana_to_promql(m.group(1)), m.group(2)
            values = prom.api(f"label/{label}/values", **{"match[]": selector})
            if not values:
                problems.append(f"{name}: ${var['name']} = {var['query']}")
    assert not problems, "variables without values:\n" + "\n".join(problems)


def test_every_alert_expression_returns_series(observed_run: ObservedRun) -> None:
    """Each rule without its thresholds (`x > 5` becomes `x > bool 5`) matches real series."""
    prom = observed_run.require_prometheus()
    queries = [
        (rule["alert"], without_thresholds(rule["expr"]))
        for rule in _rules()
        if "absent(" not in rule["expr"]  # absence rules: see the next test
    ]
    problems = _empty_or_failing(prom, queries)
    assert not problems, "alert expressions without data:\n" + "\n".join(problems)


def test_absence_rule_knows_the_worker_and_stays_quiet(observed_run: ObservedRun) -> None:
    """While a worker reports, the rule for "none reports" holds its deployment and is empty."""
    prom = observed_run.require_prometheus()
    rule = next(r for r in _rules() if r["alert"] == "BridgeWorkersAbsent")
    seen = prom.query("group by (namespace, job) (max_over_time(bridge_build_info[1d]))")
    assert [s["metric"]["job"] for s in seen] == [prom.job]
    assert prom.query(str(rule["expr"])) == []


def test_rules_load_and_evaluate_without_errors(observed_run: ObservedRun) -> None:
    prom = observed_run.require_prometheus()
    expected = {rule["alert"] for rule in _rules()}
    wait_until(
        lambda: {r["name"] for r in prom.rules() if r.get("health") == "ok"} == expected,
        30,
        "every rule evaluated",
    )
    assert all(not r.get("lastError") for r in prom.rules())


def test_dead_letter_alert_fires(observed_run: ObservedRun) -> None:
    prom = observed_run.require_prometheus()

    def firing() -> list[dict[str, Any]]:
        return [
            a
            for a in prom.alerts()
            if a["labels"]["alertname"] == "BridgeDeadLetters" and a["state"] == "firing"
        ]

    wait_until(lambda: bool(firing()), 30, "BridgeDeadLetters to fire")
    alert = next(a for a in firing() if a["labels"]["reason"] == "permanent")
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["pod"] == LABELS["pod"]
    assert alert["annotations"]["runbook_url"].endswith("#bridgedeadletters")
