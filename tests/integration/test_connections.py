"""Connections to Talon.One, on the real broker and simulator: reused while idle for less
than `BRIDGE_TALON_IDLE_TIMEOUT`, then closed, and counted either way."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, wait_for
from bridge.tools.produce import LoadSpec, generate
from tests.support.bridge import Bridge
from tests.support.oracle import assert_applied_in_order

pytestmark = [pytest.mark.kafka]

PROCESSED = "bridge_commands_processed_total"
OPENED = "bridge_api_connections_opened_total"


def test_connections_idle_past_the_idle_timeout_are_opened_again(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=2, BRIDGE_MAX_IN_FLIGHT="4", BRIDGE_TALON_IDLE_TIMEOUT="0.5")
    first = list(generate(LoadSpec(sessions=40, run_id="idle-a")))
    second = list(generate(LoadSpec(sessions=40, run_id="idle-b")))
    with WorkerProcess(bridge.env) as worker:
        bridge.produce(first)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= len(first), 60, "first batch")
        opened = worker.metric_sum(OPENED)
        # Reused across the batch: at most one connection per call in flight.
        assert 1 <= opened <= 4
        time.sleep(1.5)  # every connection is now idle past the timeout
        bridge.produce(second)
        wait_for(
            lambda: worker.metric_sum(PROCESSED) >= len(first) + len(second), 60, "second batch"
        )
        assert worker.metric_sum(OPENED) > opened
        # The bridge let them go before the server did: none found closed on reuse.
        assert worker.metric_sum("bridge_api_stale_connections_total") == 0
    assert_applied_in_order(first + second, simulator.journal())
