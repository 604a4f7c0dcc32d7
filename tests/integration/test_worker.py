"""The worker end to end on a real broker and the simulator: order, no loss, no 409s."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from confluent_kafka.cimpl import NewTopic

from bridge import dlq
from bridge.avro.codec import Codec
from bridge.commands import Command
from bridge.kafka.cluster import Cluster
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import (
    WorkerProcess,
    committed_offsets,
    end_offsets,
    read_topic,
    wait_committed,
    wait_for,
)
from bridge.tools.produce import LoadSpec, generate, produce_commands
from bridge.worker.topic_limits import TopicLimits
from tests.support.bridge import Bridge
from tests.support.oracle import assert_applied_in_order

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PROCESSED = "bridge_commands_processed_total"


def _assert_exactly_once_effects(
    bridge: Bridge, commands: list, timeout: float = 120, isolation: str = "read_uncommitted"
) -> None:
    codec = Codec()
    # Read to the end (not just `len(commands)` records) so duplicates cannot hide a gap.
    records = read_topic(bridge.conf, bridge.output, timeout=timeout, idle=3.0, isolation=isolation)
    ids = Counter(codec.decode_effects(m.value()).event_id for m in records)
    assert set(ids) == {c.event_id for c in commands}
    assert max(ids.values()) == 1, "an effects record was published twice"


def _event_loop(worker: WorkerProcess) -> str:
    (series,) = (k for k in worker.metrics() if k.startswith("bridge_build_info{"))
    return series.split('event_loop="', 1)[1].split('"', 1)[0]


def _assert_committed_to_end(bridge: Bridge) -> None:
    ends = end_offsets(bridge.conf, bridge.input)
    wait_committed(
        bridge.conf, bridge.group, bridge.input, ends, 30, "offsets committed to the end"
    )


def _create_topic(admin: AdminClient, name: str, partitions: int = 2) -> str:
    """Create `name`, again if need be: a topic just deleted takes a moment to let go of it."""

    def created() -> bool:
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            return False
        return True

    wait_for(created, 60, f"topic {name} created", step=0.2)
    return name


def test_20k_commands_2k_sessions_in_order(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=6)
    commands = list(
        generate(LoadSpec(sessions=2000, total=20_000, max_cart_updates=14, run_id="order"))
    )
    assert len(commands) == 20_000
    with WorkerProcess(bridge.env) as worker:
        bridge.produce(commands)
        wait_for(
            lambda: worker.metric_sum("bridge_commands_processed_total") >= len(commands),
            180,
            "all commands processed",
            step=0.5,
        )
        assert worker.metric_sum("bridge_dead_letters_total") == 0
        # Records come to the loop in batches, which the overview dashboard divides by.
        batches = worker.metric_sum("bridge_consumer_batches_total")
        assert 0 < batches <= worker.metric_sum("bridge_commands_consumed_total")
        assert worker.stop() == 0
    stats = simulator.stats()
    assert stats["conflicts_409"] == 0
    assert stats["applied_event_ids_repeated"] == 0
    assert_applied_in_order(commands, simulator.journal())
    _assert_exactly_once_effects(bridge, commands)
    _assert_committed_to_end(bridge)


def test_second_worker_joins_then_first_leaves(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    # A drain long enough for a slow machine: one cut short by its deadline redoes work.
    bridge = bridge_factory(partitions=6, BRIDGE_DRAIN_TIMEOUT="60")
    commands = list(generate(LoadSpec(sessions=1500, max_cart_updates=8, run_id="rebal")))
    half = len(commands) // 2
    simulator.set_faults(latency_ms=15, latency_jitter_ms=5)
    first = WorkerProcess(bridge.env).start()
    second = WorkerProcess(bridge.env)
    try:
        bridge.produce(commands[:half])
        wait_for(
            lambda: first.metric_sum(PROCESSED) > half / 5, 60, "the first worker to make progress"
        )
        second.start()
        wait_for(
            lambda: second.metric_sum("bridge_assigned_partitions") > 0,
            60,
            "the second worker to take partitions",
        )
        bridge.produce(commands[half:])
        wait_for(lambda: second.metric_sum(PROCESSED) > 0, 60, "the second worker to work")
        assert first.stop() == 0  # leaves gracefully mid-stream
        wait_for(lambda: simulator.stats()["applied"] >= len(commands), 120, "all commands applied")
        assert second.stop() == 0
    finally:
        first.kill()
        second.kill()
    stats = simulator.stats()
    # Two workers can each hold a session of the same profile (on different partitions);
    # Talon.One then answers one event with 409 and the bridge retries it. Sessions never clash.
    assert stats["conflicts_by_kind"]["session"] == 0, stats["conflicts_by_kind"]
    print(f"profile conflicts across two workers (retried): {stats['conflicts_by_kind']}")
    assert stats["applied_event_ids_repeated"] == 0, stats["repeated_event_ids"]
    assert_applied_in_order(commands, simulator.journal())
    # A graceful handoff finishes what it holds: nothing is redone, so no effect repeats.
    _assert_exactly_once_effects(bridge, commands)
    _assert_committed_to_end(bridge)


def test_sigterm_under_load_then_restart(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    drain = 8
    bridge = bridge_factory(partitions=6, BRIDGE_DRAIN_TIMEOUT=str(drain))
    commands = list(generate(LoadSpec(sessions=3000, max_cart_updates=8, run_id="term")))
    simulator.set_faults(latency_ms=40, latency_jitter_ms=10)
    # The first worker runs on asyncio's own loop, the restart on the default, uvloop.
    worker = WorkerProcess({**bridge.env, "BRIDGE_EVENT_LOOP": "asyncio"}).start()
    assert _event_loop(worker) == "asyncio"
    bridge.produce(commands)
    wait_for(lambda: worker.metric_sum(PROCESSED) > len(commands) / 10, 60, "progress under load")
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.proc is not None
    assert worker.proc.wait(drain + 20) == 0
    print(f"SIGTERM to exit: {time.monotonic() - started:.1f}s (drain timeout {drain}s)")
    with WorkerProcess(bridge.env) as restarted:
        assert _event_loop(restarted) == "uvloop"
        wait_for(lambda: simulator.stats()["applied"] >= len(commands), 180, "all commands applied")
    stats = simulator.stats()
    assert stats["conflicts_409"] == 0
    assert stats["applied_event_ids_repeated"] == 0, stats["repeated_event_ids"]
    assert_applied_in_order(commands, simulator.journal())
    codec = Codec()
    records = read_topic(bridge.conf, bridge.output, timeout=120, idle=3.0)
    ids = Counter(codec.decode_effects(m.value()).event_id for m in records)
    assert set(ids) == {c.event_id for c in commands}, "no command lost"
    repeated = sum(n - 1 for n in ids.values())
    print(f"effects repeated after the restart: {repeated} (Talon.One applied none twice)")
    _assert_committed_to_end(bridge)


def test_backpressure_bounds_what_is_held_in_memory(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    limit = 1000
    in_flight_limit = 64
    bridge = bridge_factory(
        partitions=4,
        BRIDGE_MAX_BUFFERED_RECORDS=str(limit),
        BRIDGE_MAX_IN_FLIGHT=str(in_flight_limit),
    )
    commands = list(generate(LoadSpec(sessions=1200, max_cart_updates=8, run_id="bp")))
    assert len(commands) > 5 * limit
    bridge.produce(commands)  # a backlog far larger than the limit, before the worker starts
    simulator.set_faults(latency_ms=20)
    held: list[float] = []
    paused: list[float] = []
    in_flight: list[float] = []
    keys: list[float] = []
    oldest: list[float] = []
    with WorkerProcess(bridge.env) as worker:

        def sample() -> bool:
            held.append(worker.metric_sum("bridge_buffered_commands"))
            paused.append(worker.metric_sum("bridge_paused_partitions"))
            in_flight.append(worker.metric_sum("bridge_in_flight_commands"))
            keys.append(worker.metric_sum("bridge_active_keys"))
            oldest.append(worker.metric_sum("bridge_oldest_unprocessed_age_seconds"))
            return worker.metric_sum(PROCESSED) >= len(commands)

        wait_for(sample, 180, "all commands processed", step=0.05)
        assert worker.metric_sum("bridge_last_progress_timestamp_seconds") > 0
    # One consume batch (500) may arrive after the limit is reached, before the pause.
    assert max(held) <= limit + 500, max(held)
    assert max(paused) > 0, "partitions were paused"
    # The worker-state gauges follow the work while it runs.
    assert 0 < max(in_flight) <= in_flight_limit, max(in_flight)
    assert max(keys) > 0
    assert max(oldest) > 0
    stats = simulator.stats()
    assert stats["conflicts_409"] == 0
    assert_applied_in_order(commands, simulator.journal())
    _assert_exactly_once_effects(bridge, commands)


def test_effects_kafka_refuses_are_sent_again_and_nothing_is_committed_past_them(
    bridge_factory: Callable[..., Bridge], kafka_admin: AdminClient, simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=2)
    commands = list(generate(LoadSpec(sessions=40, total=400, run_id="refused")))
    failures = 'bridge_producer_delivery_failures_total{kind="effects"}'
    with WorkerProcess(bridge.env) as worker:
        # Lowered after the worker read it: each record fits the limit it knows, so the
        # refusal is the topic's to fix, not the record's.
        _set_topic_config(kafka_admin, bridge.output, "max.message.bytes", "64")
        bridge.produce(commands)
        wait_for(
            lambda: worker.metrics().get(failures, 0) >= 2 * len(commands),
            60,
            "every effects record refused twice",
        )
        assert worker.metric_sum(PROCESSED) == 0
        committed = committed_offsets(bridge.conf, bridge.group, bridge.input)
        assert max(committed.values()) <= 0, f"committed past unfinished records: {committed}"
        _set_topic_config(kafka_admin, bridge.output, "max.message.bytes", "1048588")
        wait_for(lambda: worker.metric_sum(PROCESSED) >= len(commands), 60, "all delivered")
        assert worker.stop() == 0
        # One line per topic and error each 30 s, not one per attempt.
        assert worker.log_text().count("producer could not deliver to") <= 3
    _assert_exactly_once_effects(bridge, commands)
    _assert_committed_to_end(bridge)


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_effects_records_over_their_topics_limit_are_dead_lettered_and_the_rest_flow(
    bridge_factory: Callable[..., Bridge],
    kafka_admin: AdminClient,
    simulator: SimulatorProcess,
    exactly_once: bool,
) -> None:
    bridge = bridge_factory(partitions=2, BRIDGE_EXACTLY_ONCE=str(exactly_once).lower())
    _set_topic_config(kafka_admin, bridge.output, "max.message.bytes", str(_OUTPUT_LIMIT))
    commands = list(generate(LoadSpec(sessions=20, total=600, run_id="topic-limit")))
    with WorkerProcess(bridge.env) as worker:
        bridge.produce(commands)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= len(commands), 90, "all finished")
        failures = worker.metric_sum("bridge_producer_delivery_failures_total")
        assert worker.stop() == 0
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    effects = read_topic(bridge.conf, bridge.output, timeout=60, idle=3.0, isolation=isolation)
    letters = read_topic(bridge.conf, bridge.dlq, timeout=60, idle=3.0, isolation=isolation)
    assert {dict(m.headers() or ())[dlq.H_REASON] for m in letters} == {b"output-too-large"}
    codec = Codec()
    published = {codec.decode_effects(m.value()).event_id for m in effects}
    refused = {codec.decode_command(m.value()).event_id for m in letters}
    assert published and refused, "the limit falls inside the records' sizes"
    assert sorted([*published, *refused]) == sorted(c.event_id for c in commands)
    assert max(len(m.value()) for m in effects) < _OUTPUT_LIMIT
    # Batches are capped under the limit: no batch of records that fit is refused.
    assert failures == 0
    assert simulator.stats()["applied"] == len(commands)
    _assert_committed_to_end(bridge)


def test_the_produced_topics_limits_are_read_in_one_request(
    bridge_factory: Callable[..., Bridge], kafka_admin: AdminClient
) -> None:
    bridge = bridge_factory(partitions=1)
    _set_topic_config(kafka_admin, bridge.dlq, "max.message.bytes", "2000")
    missing = f"missing-{uuid.uuid4().hex[:10]}"
    limits = Cluster(bridge.conf).record_limits([bridge.output, bridge.dlq, missing, bridge.dlq])
    assert limits[bridge.dlq] == 2000
    assert limits[bridge.output] > 2000, "the broker's default"
    assert missing not in limits, "not described: unknown, so never refused for its size"
    # Read again while the worker runs, with a fresh admin client each time.
    _set_topic_config(kafka_admin, bridge.dlq, "max.message.bytes", "3000")
    again = TopicLimits(bridge.conf, [bridge.output, bridge.dlq], dict(limits)).read()
    assert again == {bridge.output: limits[bridge.output], bridge.dlq: 3000}


def test_a_session_key_over_the_parking_topics_limit_is_dead_lettered_and_not_parked(
    bridge_factory: Callable[..., Bridge], kafka_admin: AdminClient, simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=2)
    _set_topic_config(kafka_admin, bridge.parking, "max.message.bytes", "1000")
    # Incompressible: the broker counts the compressed batch.
    big_key = os.urandom(2_000)
    good = list(generate(LoadSpec(sessions=10, run_id="parking-limit")))
    with WorkerProcess(bridge.env) as worker:
        bridge.produce_raw([(big_key, b"\x7fjunk"), (b"k-small", b"\x7fjunk")])
        bridge.produce(good)
        total = 2 + len(good)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= total, 60, "every record finished")
        assert worker.metric_sum("bridge_producer_delivery_failures_total") == 0
        assert worker.stop() == 0
        assert "session key too large to park" in worker.log_text()
    letters = read_topic(bridge.conf, bridge.dlq, expected=2, timeout=30)
    assert sorted(m.key() for m in letters) == sorted([big_key, b"k-small"])
    parked = read_topic(bridge.conf, bridge.parking, timeout=30, idle=3.0)
    assert [m.key() for m in parked] == [b"k-small"], "only the small key is parked"
    _assert_committed_to_end(bridge)


# Inside the sizes of the effects records of 20 sessions' growing carts.
_OUTPUT_LIMIT = 300


def test_dead_letters_their_topic_refuses_as_too_large_go_again_without_their_value(
    bridge_factory: Callable[..., Bridge], kafka_admin: AdminClient, simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=2)
    _set_topic_config(kafka_admin, bridge.dlq, "max.message.bytes", "2000")
    # Incompressible: the broker counts the compressed batch.
    undecodable = [(f"k-{i}".encode(), b"\x7f" + os.urandom(5_000)) for i in range(3)]
    good = list(generate(LoadSpec(sessions=10, run_id="dlq-limit")))
    with WorkerProcess(bridge.env) as worker:
        bridge.produce_raw(undecodable)
        bridge.produce(good)
        total = len(undecodable) + len(good)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= total, 60, "every record finished")
        assert worker.metric_sum("bridge_dead_letters_value_omitted_total") == len(undecodable)
        assert worker.stop() == 0
    letters = read_topic(bridge.conf, bridge.dlq, expected=len(undecodable), timeout=30)
    assert sorted(m.key() for m in letters) == [k for k, _ in undecodable]
    assert all(m.value() is None for m in letters)
    assert {dict(m.headers())[dlq.H_OMITTED] for m in letters} == {b"value,headers"}
    _assert_committed_to_end(bridge)


def _set_topic_config(admin: AdminClient, topic: str, name: str, value: str) -> None:
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)],
    )
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)


@contextlib.contextmanager
def _reading_a_second_topic(
    bridge: Bridge, admin: AdminClient, old: list[Command]
) -> Iterator[tuple[WorkerProcess, str]]:
    """A worker on the bridge's input and a second topic, which has delivered `old`."""
    other = _create_topic(admin, f"other-{uuid.uuid4().hex[:10]}")
    with WorkerProcess({**bridge.env, "BRIDGE_INPUT_TOPICS": f"{bridge.input},{other}"}) as worker:
        produce_commands(bridge.conf, other, iter(old), encode=Codec().encode_command)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= len(old), 120, "the old log")
        assert worker.metrics().get(_resets(other)) == 0
        yield worker, other


def _resets(topic: str) -> str:
    return f'bridge_input_log_resets_total{{topic="{topic}"}}'


def _assert_new_log_read(worker: WorkerProcess, topic: str, total: int) -> None:
    wait_for(
        lambda: worker.metric_sum(PROCESSED) >= total, 120, "the new log, from its first record"
    )
    wait_for(worker.ready, 60, "the worker ready again")
    assert worker.metrics().get(_resets(topic)) == 2  # one per partition
    assert worker.metric_sum("bridge_dead_letters_total") == 0
    assert worker.stop() == 0


def test_an_input_topic_deleted_and_created_again_is_read_from_its_start(
    bridge_factory: Callable[..., Bridge], kafka_admin: AdminClient, simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=2)
    old = list(generate(LoadSpec(sessions=40, total=400, run_id="old-log")))
    staying = list(generate(LoadSpec(sessions=40, total=400, run_id="staying")))
    # Longer than the old log: read from the old offsets, its first records would be skipped.
    new = list(generate(LoadSpec(sessions=80, total=800, run_id="new-log")))
    with _reading_a_second_topic(bridge, kafka_admin, old) as (worker, other):
        kafka_admin.delete_topics([other])[other].result(timeout=30)
        # The client's first error about the topic makes the worker look at once.
        missing = f'bridge_input_topic_missing{{topic="{other}"}}'
        wait_for(lambda: worker.metrics().get(missing) == 1, 90, "the deleted topic reported")
        assert not worker.ready()
        bridge.produce(staying)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= len(old) + len(staying), 120, "staying")
        _create_topic(kafka_admin, other)
        produce_commands(bridge.conf, other, iter(new), encode=Codec().encode_command)
        _assert_new_log_read(worker, other, len(old) + len(staying) + len(new))
    assert_applied_in_order(old + staying + new, simulator.journal())


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_an_input_topic_created_again_before_its_deletion_is_noticed_is_read_whole(
    bridge_factory: Callable[..., Bridge],
    kafka_admin: AdminClient,
    simulator: SimulatorProcess,
    exactly_once: bool,
) -> None:
    # With exactly-once output, a long commit interval keeps the old log's effects held when
    # its offsets go backwards: they have no offset left to go out with.
    eos = {"BRIDGE_EXACTLY_ONCE": "true", "BRIDGE_COMMIT_INTERVAL": "30"} if exactly_once else {}
    bridge = bridge_factory(partitions=2, **eos)
    old = list(generate(LoadSpec(sessions=40, total=400, run_id="old-quick")))
    new = list(generate(LoadSpec(sessions=10, total=100, run_id="new-quick")))
    with _reading_a_second_topic(bridge, kafka_admin, old) as (worker, other):
        # librdkafka calls a topic gone only after 30 s (topic.metadata.propagation.max.ms):
        # a log shorter than the old one comes back first, and its offsets go backwards.
        kafka_admin.delete_topics([other])[other].result(timeout=30)
        _create_topic(kafka_admin, other)
        produce_commands(bridge.conf, other, iter(new), encode=Codec().encode_command)
        _assert_new_log_read(worker, other, len(old) + len(new))
    assert_applied_in_order(old + new, simulator.journal())
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    _assert_exactly_once_effects(bridge, old + new, timeout=90, isolation=isolation)


def test_a_missing_input_topic_is_reported_until_it_exists(
    bridge_factory: Callable[..., Bridge], kafka_admin: AdminClient
) -> None:
    bridge = bridge_factory(partitions=2)
    later = f"later-{uuid.uuid4().hex[:10]}"
    missing = f'bridge_input_topic_missing{{topic="{later}"}}'
    first = list(generate(LoadSpec(sessions=20, total=100, run_id="present")))
    second = list(generate(LoadSpec(sessions=20, total=100, run_id="later")))
    worker = WorkerProcess({**bridge.env, "BRIDGE_INPUT_TOPICS": f"{bridge.input},{later}"})
    worker.start(wait_ready=False)
    try:
        wait_for(lambda: worker.metrics().get(missing) == 1, 60, "the missing topic reported")
        assert not worker.ready(), "a worker missing an input topic must not be ready"
        # The topic that exists still flows.
        bridge.produce(first)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= len(first), 120, "the first topic")
        assert not worker.ready()
        kafka_admin.create_topics([NewTopic(later, 2, 1)])[later].result(timeout=30)
        # Checked every 10 s; the new topic is subscribed to at once, not at the next
        # metadata refresh five minutes later.
        wait_for(worker.ready, 60, "the worker ready once the topic exists")
        assert worker.metrics().get(missing) == 0
        produce_commands(bridge.conf, later, iter(second), encode=Codec().encode_command)
        wait_for(
            lambda: worker.metric_sum(PROCESSED) >= len(first) + len(second),
            120,
            "the new topic's commands",
        )
        log = worker.log_text()
        assert "input topic unreadable: it does not exist" in log
        assert "input topic exists now" in log
    finally:
        assert worker.stop() == 0
