"""A hot session on the real broker: parked past its queue quota, in order, while the others run.

A storm of one session (a bot, a replayed backlog) is read far faster than its commands can
be applied one at a time. Past `BRIDGE_MAX_QUEUED_PER_SESSION` its records go to the
dead-letter topic behind the first, in order; a replay brings them back in order.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bridge.avro.codec import Codec
from bridge.dlq import H_REASON
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, read_topic, wait_for
from bridge.tools.produce import LoadSpec, generate
from tests.support.bridge import Bridge
from tests.support.oracle import assert_applied_in_order
from tests.support.replay import command, headers_of, run_replay

pytestmark = pytest.mark.kafka

PROCESSED = "bridge_commands_processed_total"
QUOTA = 20
STORM = 300


def test_a_hot_session_is_parked_in_order_and_comes_back_with_a_replay(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=2, BRIDGE_MAX_QUEUED_PER_SESSION=str(QUOTA))
    hot = "storm-session"
    storm = [command(f"storm:{i}", hot) for i in range(STORM)]
    others = list(generate(LoadSpec(sessions=40, run_id="calm")))
    codec = Codec()
    # Produced before the worker starts: it reads the storm in a few batches.
    bridge.produce([*storm[:100], *others, *storm[100:]])
    total = len(storm) + len(others)

    with WorkerProcess(bridge.env) as worker:
        wait_for(lambda: worker.metric_sum(PROCESSED) >= total, 90, "every record finished")
        diverted = int(worker.metric_sum("bridge_session_quota_exceeded_total"))
        assert diverted == 1, "one record over the quota; the rest follow it, parked"
        letters = read_topic(bridge.conf, bridge.dlq, timeout=30)
        ids = [codec.decode_command(m.value()).event_id for m in letters]
        applied = [str(e["eventId"]) for e in simulator.journal(session=hot)]
        assert QUOTA <= len(applied) < STORM
        assert applied + ids == [c.event_id for c in storm], "applied, then parked, in order"
        reasons = [headers_of(m)[H_REASON] for m in letters]
        assert reasons == ["hot-session"] + ["parked"] * (len(ids) - 1)
        # The calm sessions never waited for the storm.
        assert_applied_in_order(others, simulator.journal())

        done = run_replay(bridge.env, "--session", hot)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: len(simulator.journal(session=hot)) >= STORM, 90, "the storm applied")
        wait_for(lambda: worker.metric_sum("bridge_parked_sessions") == 0, 30, "released")
    assert_applied_in_order([*storm, *others], simulator.journal())
