"""trackEventV3 end to end on a real broker and the simulator process: events applied in
order, a command sent again deduplicated, and plain events sent through V3 by the setting."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest

from bridge.avro.codec import Codec
from bridge.commands import Command, EffectsEmitted
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, read_topic, wait_for
from bridge.tools.produce import LoadSpec, generate
from tests.support.bridge import API_KEY, Bridge
from tests.support.oracle import assert_applied_in_order

pytestmark = [pytest.mark.kafka]

PROCESSED = "bridge_commands_processed_total"
DEDUPLICATED = "bridge_events_deduplicated_total"
# The load generator's event types, each given a customEffect so events have effects.
EVENT_TYPES = ("newsletter_signup", "product_viewed", "wishlist_added")


@pytest.fixture
def simulator() -> Iterator[SimulatorProcess]:
    effects = [arg for kind in EVENT_TYPES for arg in ("--event-type-effect", kind)]
    with SimulatorProcess(
        api_key=API_KEY, args=["--latency-ms", "5", "--latency-jitter-ms", "2", *effects]
    ) as sim:
        yield sim


def _effects_by_event(bridge: Bridge, expected: int) -> dict[str, list[EffectsEmitted]]:
    codec = Codec()
    records = read_topic(bridge.conf, bridge.output, timeout=60, idle=3.0)
    by_event: dict[str, list[EffectsEmitted]] = defaultdict(list)
    for m in records:
        rec = codec.decode_effects(m.value())
        by_event[rec.event_id].append(rec)
    assert sum(len(v) for v in by_event.values()) == expected
    return by_event


def _profile_events(simulator: SimulatorProcess) -> list[dict[str, object]]:
    journal = simulator.journal()
    return [e for entries in journal["profiles"].values() for e in entries]


def test_v3_events_in_order_and_a_command_sent_again_is_deduplicated(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    # Without Idempotency-Keys nothing answers a repeated call but trackEventV3 itself, as
    # for a command sent again after Talon.One's 24 hours of stored responses.
    bridge = bridge_factory(partitions=3, BRIDGE_TALON_IDEMPOTENCY_KEYS="false")
    commands = list(generate(LoadSpec(sessions=300, events_v3=1.0, run_id="v3")))
    events = [c for c in commands if c.command_type == "track_event_v3"]
    assert len(events) > 50
    assert not [c for c in commands if c.command_type == "track_event"]
    with WorkerProcess(bridge.env) as worker:
        bridge.produce(commands)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= len(commands), 120, "first delivery")
        assert worker.metric_sum(DEDUPLICATED) == 0
        stats = simulator.stats()
        assert stats["conflicts_409"] == 0
        assert_applied_in_order(commands, simulator.journal())
        registered = _profile_events(simulator)
        assert {e["operation"] for e in registered} == {"event_v3"}
        assert sorted(str(e["integrationId"]) for e in registered) == sorted(
            c.event_id for c in events
        )

        # The events again, as a replay or a redelivery after a crash would send them.
        bridge.produce(events)
        total = len(commands) + len(events)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= total, 120, "second delivery")
        assert worker.metric_sum(DEDUPLICATED) == len(events)
        assert worker.metric_sum("bridge_dead_letters_total") == 0
        assert worker.stop() == 0
    stats = simulator.stats()
    assert stats["events_v3_already_registered"] == len(events)
    assert stats["applied_event_ids_repeated"] == 0
    assert len(_profile_events(simulator)) == len(events)  # nothing registered twice

    by_event = _effects_by_event(bridge, total)
    for c in events:
        first, again = by_event[c.event_id]
        assert first.command_type == again.command_type == "track_event_v3"
        assert [e.effect_type for e in first.effects] == ["customEffect"]
        assert again.effects == first.effects
    assert read_topic(bridge.conf, bridge.dlq, timeout=5, idle=2.0) == []


def test_the_setting_sends_plain_events_through_v3(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=3, BRIDGE_TALON_EVENTS_API="v3")
    commands: list[Command] = list(generate(LoadSpec(sessions=150, run_id="plain")))
    events = [c for c in commands if c.command_type == "track_event"]
    assert len(events) > 20
    with WorkerProcess(bridge.env) as worker:
        bridge.produce(commands)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= len(commands), 120, "all processed")
        assert worker.metric_sum("bridge_dead_letters_total") == 0
        assert worker.stop() == 0
    assert simulator.stats()["conflicts_409"] == 0
    assert_applied_in_order(commands, simulator.journal())
    registered = _profile_events(simulator)
    assert {e["operation"] for e in registered} == {"event_v3"}
    # Each event's integrationId is its command's eventId.
    assert sorted(str(e["integrationId"]) for e in registered) == sorted(c.event_id for c in events)
    by_event = _effects_by_event(bridge, len(commands))
    assert {by_event[c.event_id][0].command_type for c in events} == {"track_event"}
