"""The group's API budget and the adaptive in-flight limit, on the real broker and simulator:
members take their partitions' share of BRIDGE_TALON_MAX_RPS, and a slow, throttling
Talon.One brings the in-flight limit down without losing or reordering anything."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, wait_for
from bridge.tools.produce import LoadSpec, generate
from tests.support.bridge import Bridge
from tests.support.oracle import assert_applied_in_order

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]

PROCESSED = "bridge_commands_processed_total"
LIMIT = "bridge_in_flight_limit"
SHARE = "bridge_api_budget_share_per_second"
BUDGET = "bridge_api_group_budget_per_second"
PACING = 'bridge_api_pacing_limit_per_second{application="default"}'
ASSIGNED = "bridge_assigned_partitions"


def _gauge(worker: WorkerProcess, name: str) -> float:
    """One series, by its exact name and labels (-1 while the worker does not answer)."""
    return worker.metrics().get(name, -1.0)


def _changes(worker: WorkerProcess, direction: str) -> float:
    return worker.metric_sum(f'bridge_in_flight_limit_changes_total{{direction="{direction}"}}')


def test_the_in_flight_limit_comes_down_on_a_slow_throttling_api_and_back_up(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(
        partitions=4, BRIDGE_ADAPTIVE_IN_FLIGHT="true", BRIDGE_MAX_IN_FLIGHT="32"
    )
    first = list(generate(LoadSpec(sessions=200, max_cart_updates=6, run_id="slow")))
    later = list(generate(LoadSpec(sessions=300, max_cart_updates=6, run_id="healthy")))
    # Answers take 100 ms, so a few hundred calls a second fill half the limit: growing it
    # needs it in use, and a shared machine keeps up with that.
    simulator.set_faults(latency_ms=100, latency_jitter_ms=5)
    with WorkerProcess(bridge.env) as worker:
        wait_for(lambda: _gauge(worker, LIMIT) == 32, 30, "the limit at BRIDGE_MAX_IN_FLIGHT")
        bridge.produce(first)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= 50, 60, "progress")
        # Talon.One slows down fourfold and throttles a tenth of the calls.
        simulator.set_faults(latency_ms=400, rate_429=0.1)
        wait_for(lambda: 0 < _gauge(worker, LIMIT) <= 8, 90, "the limit cut to a quarter")
        assert _changes(worker, "down") > 0
        simulator.set_faults(latency_ms=100, rate_429=0.0)
        bridge.produce(later)
        wait_for(lambda: _gauge(worker, LIMIT) == 32, 120, "the limit grown back")
        assert _changes(worker, "up") > 0
        total = len(first) + len(later)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= total, 180, "all processed")
        assert worker.metric_sum("bridge_dead_letters_total") == 0
    stats = simulator.stats()
    assert stats["faults_injected"]["429"] > 0
    assert stats["early_retries"] == 0
    assert_applied_in_order(first + later, simulator.journal())


def test_two_members_each_take_their_partitions_share_of_the_budget(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    budget = 60.0
    bridge = bridge_factory(partitions=6, BRIDGE_TALON_MAX_RPS=str(budget))
    commands = list(generate(LoadSpec(sessions=80, max_cart_updates=3, run_id="budget")))
    with WorkerProcess(bridge.env) as one:
        wait_for(lambda: _gauge(one, SHARE) == budget, 60, "the only member's whole budget")
        assert _gauge(one, BUDGET) == budget
        with WorkerProcess(bridge.env) as two:
            members = (one, two)

            def split() -> bool:
                owned = [_gauge(w, ASSIGNED) for w in members]
                return sum(owned) == 6 and min(owned) > 0

            wait_for(split, 90, "the partitions split between the members")
            wait_for(
                lambda: all(
                    _gauge(w, SHARE) == pytest.approx(budget * _gauge(w, ASSIGNED) / 6)
                    for w in members
                ),
                30,
                "each member's share of its partitions",
            )
            assert sum(_gauge(w, SHARE) for w in members) == pytest.approx(budget)
            assert all(_gauge(w, BUDGET) == budget for w in members)
            bridge.produce(commands)
            over: list[float] = []

            def done() -> bool:
                # Under load each member's pacer stays within its share.
                for w in members:
                    limit, share = _gauge(w, PACING), _gauge(w, SHARE)
                    if limit > 0 and share > 0:
                        over.append(limit - share)
                return sum(w.metric_sum(PROCESSED) for w in members) >= len(commands)

            wait_for(done, 120, "all processed")
            assert over and max(over) <= 1e-6
            assert sum(w.metric_sum("bridge_dead_letters_total") for w in members) == 0
        # The second member left: the first owns every partition and the whole budget again.
        wait_for(lambda: _gauge(one, SHARE) == budget, 90, "the whole budget back")
    assert_applied_in_order(commands, simulator.journal())
