"""The alert rules: promtool's syntax check and unit tests, conventions, and the chart's copy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.observability import ALERTS, CHART_ALERTS, OPERATIONS, heading_anchors

TESTS = sorted(ALERTS.parent.glob("*.test.yaml"))


def _rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _promtool(promtool: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_promtool_check_rules(promtool: str) -> None:
    out = _promtool(promtool, "check", "rules", str(ALERTS), cwd=ALERTS.parent)
    assert f"SUCCESS: {len(_rules())} rules found" in out


def test_promtool_unit_tests(promtool: str) -> None:
    assert TESTS, "no *.test.yaml next to alerts.yaml"
    _promtool(promtool, "test", "rules", *(p.name for p in TESTS), cwd=ALERTS.parent)


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for path in TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in _rules()} <= tested


def test_labels_annotations_and_runbook_anchors() -> None:
    anchors = heading_anchors(OPERATIONS.read_text())
    for rule in _rules():
        name = rule["alert"]
        labels = rule["labels"]
        annotations = rule["annotations"]
        assert isinstance(labels, dict) and isinstance(annotations, dict)
        assert labels.get("severity") in {"critical", "warning", "info"}, name
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        path, _, anchor = str(annotations["runbook_url"]).partition("#")
        assert path == "docs/operations.md", name
        assert anchor == str(name).lower() and anchor in anchors, f"{name}: no #{anchor} section"


def test_the_charts_copy_is_identical() -> None:
    assert CHART_ALERTS.read_bytes() == ALERTS.read_bytes(), (
        f"{CHART_ALERTS} differs from {ALERTS}: copy the rules file over"
    )
