"""At Talon.One's rate limit, on the real broker and simulator: the bridge paces itself to
what the API accepts, never retries before a Retry-After, loses and reorders nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, wait_for
from bridge.tools.produce import LoadSpec, generate
from tests.support.bridge import Bridge
from tests.support.oracle import assert_applied_in_order

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PROCESSED = "bridge_commands_processed_total"


@pytest.mark.parametrize("limit", [120, 600])
def test_paces_to_a_rate_limit_without_early_retries(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess, limit: int
) -> None:
    bridge = bridge_factory(partitions=4)
    # About fifteen seconds of work at the limit.
    sessions = limit * 15 // 6
    commands = list(generate(LoadSpec(sessions=sessions, max_cart_updates=6, run_id="limit")))
    simulator.set_faults(rate_limit_rps=limit, rate_limit_burst=20)
    with WorkerProcess(bridge.env) as worker:
        bridge.produce(commands)
        started = time.monotonic()
        wait_for(lambda: worker.metric_sum(PROCESSED) >= len(commands), 180, "all processed")
        seconds = time.monotonic() - started
        assert worker.metric_sum("bridge_api_pacing_limit_per_second") > 0
        assert worker.metric_sum("bridge_api_outage") == 0
        assert worker.metric_sum("bridge_dead_letters_total") == 0
    stats = simulator.stats()
    rejected = stats["faults_injected"]["rate_limit"]
    print(
        f"limit {limit}/s: {stats['applied'] / seconds:.0f} applied/s "
        f"({stats['applied'] / seconds / limit:.0%} of the limit, start-up included), "
        f"{rejected / stats['applied']:.3f} rejected per applied"
    )
    assert rejected > 0, "the limit was reached"
    assert rejected / stats["applied"] <= 0.3
    assert stats["early_retries"] == 0
    assert_applied_in_order(commands, simulator.journal())


def test_maintenance_window_of_503_honours_retry_after(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(
        partitions=4, BRIDGE_RETRY_MAX_ATTEMPTS="4", BRIDGE_RETRY_BASE_DELAY="0.05"
    )
    commands = list(generate(LoadSpec(sessions=300, max_cart_updates=4, run_id="maint")))
    with WorkerProcess(bridge.env) as worker:
        bridge.produce(commands)
        wait_for(lambda: worker.metric_sum(PROCESSED) > len(commands) / 5, 60, "progress")
        simulator.set_faults(outage=True, retry_after_s=10)
        wait_for(
            lambda: (
                worker.metric_sum('bridge_api_gate_closed{application="default",reason="outage"}')
                == 1
            ),
            30,
            "the gate closed",
        )
        assert worker.metric_sum("bridge_api_retry_after_seconds") > 0
        window_end = time.monotonic() + 30
        wait_for(lambda: time.monotonic() > window_end, 40, "the maintenance window")
        simulator.set_faults(outage=False)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= len(commands), 120, "all processed")
        assert worker.metric_sum("bridge_dead_letters_total") == 0
    stats = simulator.stats()
    # Every call answered 503 came back no earlier than its Retry-After: the gate waited.
    assert stats["faults_injected"]["outage"] > 0
    assert stats["early_retries"] == 0
    assert_applied_in_order(commands, simulator.journal())
