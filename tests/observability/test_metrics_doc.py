"""docs/operations.md documents exactly the metrics a running worker exposes."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from bridge.metrics import Metrics
from tests.support.observability import (
    OPERATIONS,
    ObservedRun,
    exposed_families,
    fetch,
    metric_table,
)

# Standard collectors of prometheus_client, listed apart from the table (see below).
_RUNTIME_PREFIXES = ("process_", "python_")


def _documented() -> dict[str, tuple[str, str]]:
    table = metric_table(OPERATIONS.read_text())
    assert len(table) > 20, "the metrics table of docs/operations.md was not found"
    return table


def _created_of(name: str, families: dict[str, str]) -> bool:
    """`x_created`: the creation time prometheus_client adds to counter or histogram `x`."""
    base = name.removesuffix("_created")
    if base == name:
        return False
    return families.get(base + "_total") == "counter" or families.get(base) == "histogram"


@pytest.mark.kafka
def test_documented_families_are_exactly_the_exposed_ones(observed_run: ObservedRun) -> None:
    body = fetch(f"http://127.0.0.1:{observed_run.worker.metrics_port}/metrics")
    families = exposed_families(body)
    exposed = {
        name: kind
        for name, kind in families.items()
        if not name.startswith(_RUNTIME_PREFIXES) and not _created_of(name, families)
    }
    documented = _documented()
    undocumented = sorted(set(exposed) - set(documented))
    missing = sorted(set(documented) - set(exposed))
    assert not undocumented, f"exposed but not in docs/operations.md: {undocumented}"
    assert not missing, f"documented but not exposed: {missing}"
    wrong_type = {n: (documented[n][0], k) for n, k in exposed.items() if documented[n][0] != k}
    assert not wrong_type, f"documented type differs from # TYPE: {wrong_type}"


def test_documented_labels_match_the_code() -> None:
    metrics = Metrics(CollectorRegistry())
    suffix = {"counter": "_total", "info": "_info"}
    actual = {
        # An Info's labels are the keys of its value, not label names.
        m._name + suffix.get(m._type, ""): set(m._value if m._type == "info" else m._labelnames)
        for m in vars(metrics).values()
        if isinstance(m, MetricWrapperBase)
    }
    documented = {
        name: set(re.findall(r"`(\w+)`", labels)) for name, (_, labels) in _documented().items()
    }
    assert documented == actual


def test_process_families_are_the_documented_ones() -> None:
    """The process collector's families are named in the docs; no `python_*` ones exist."""
    registry = CollectorRegistry()
    Metrics(registry)
    names = {m.name + ("_total" if m.type == "counter" else "") for m in registry.collect()}
    process = {n for n in names if n.startswith("process_")}
    assert "process_cpu_seconds_total" in process
    assert not {n for n in names if n.startswith("python_")}
    text = OPERATIONS.read_text()
    assert "no process" not in text
    for name in sorted(process):
        assert f"`{name}`" in text, f"{name} is exported but docs/operations.md does not name it"
