"""Resilience on the real broker and simulator: faults, outages, auth failure, kill -9,
broker restarts. Nothing may be lost, and each session's order must hold."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bridge.avro.codec import Codec
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import (
    WorkerProcess,
    committed_offsets,
    create_bridge_topics,
    end_offsets,
    read_topic,
    wait_committed,
    wait_for,
    worker_env,
)
from bridge.tools.localkafka import LocalKafka
from bridge.tools.produce import LoadSpec, generate
from tests.support.bridge import API_KEY, Bridge
from tests.support.oracle import assert_applied_in_order, assert_order_allowing_replays

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PROCESSED = "bridge_commands_processed_total"


def _processed(worker: WorkerProcess) -> float:
    return worker.metric_sum(PROCESSED)


def test_transient_faults_apply_everything_in_order(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(
        partitions=4,
        BRIDGE_TALON_READ_TIMEOUT="1",
        BRIDGE_RETRY_BASE_DELAY="0.05",
        BRIDGE_RETRY_MAX_DELAY="2",
    )
    commands = list(generate(LoadSpec(sessions=400, run_id="faults")))
    simulator.set_faults(
        rate_500=0.05,
        rate_502=0.025,
        rate_503=0.025,
        rate_429=0.05,
        retry_after_s=1,
        rate_hang=0.02,
        hang_s=3.0,
    )
    with WorkerProcess(bridge.env) as worker:
        bridge.produce(commands)
        wait_for(lambda: _processed(worker) >= len(commands), 240, "all commands processed")
        assert worker.metric_sum("bridge_dead_letters_total") == 0
        assert worker.metric_sum("bridge_commands_retried_total") > 0
    stats = simulator.stats()
    assert sum(stats["faults_injected"].values()) > 0
    assert stats["applied_event_ids_repeated"] == 0
    assert_applied_in_order(commands, simulator.journal())


def test_outage_pauses_and_recovers_without_dead_letters(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(
        partitions=4, BRIDGE_RETRY_MAX_ATTEMPTS="4", BRIDGE_RETRY_BASE_DELAY="0.05"
    )
    commands = list(generate(LoadSpec(sessions=600, max_cart_updates=6, run_id="outage")))
    simulator.set_faults(latency_ms=10)
    with WorkerProcess(bridge.env) as worker:
        bridge.produce(commands)
        wait_for(lambda: _processed(worker) > len(commands) / 5, 60, "progress before outage")
        simulator.set_faults(outage=True)
        wait_for(lambda: worker.metric_sum("bridge_api_outage") == 1, 30, "outage detected")
        during = _processed(worker)
        # Thirty seconds of outage: longer than the whole retry budget of a single record.
        deadline = time.monotonic() + 30
        wait_for(lambda: time.monotonic() > deadline, 40, "the outage window")
        assert _processed(worker) - during < 300, "intake paused during the outage"
        simulator.set_faults(outage=False)
        resumed = time.monotonic()
        wait_for(lambda: worker.metric_sum("bridge_api_outage") == 0, 60, "recovery")
        print(f"recovered {time.monotonic() - resumed:.1f}s after the outage ended")
        wait_for(lambda: _processed(worker) >= len(commands), 120, "all commands processed")
        assert worker.metric_sum("bridge_dead_letters_total") == 0
    assert_applied_in_order(commands, simulator.journal())
    assert simulator.stats()["conflicts_409"] == 0


def test_one_failing_session_is_dead_lettered_others_flow(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(
        partitions=4, BRIDGE_RETRY_MAX_ATTEMPTS="3", BRIDGE_RETRY_BASE_DELAY="0.05"
    )
    commands = list(generate(LoadSpec(sessions=300, run_id="onefail")))
    victim = commands[0].session_id
    simulator.set_faults(fail_sessions=[victim])
    with WorkerProcess(bridge.env) as worker:
        bridge.produce(commands)
        wait_for(lambda: _processed(worker) >= len(commands), 120, "all commands processed")
        assert worker.metric_sum("bridge_api_outage") == 0
    others = [c for c in commands if c.session_id != victim]
    journal = simulator.journal()
    journal["sessions"].pop(victim, None)
    assert_applied_in_order(others, journal)
    victim_count = sum(1 for c in commands if c.session_id == victim)
    letters = read_topic(bridge.conf, bridge.dlq, expected=victim_count, timeout=30)
    assert len(letters) == victim_count
    assert all(m.key() == victim.encode() for m in letters)


def test_auth_failure_pauses_without_commits_then_recovers(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=3)
    commands = list(generate(LoadSpec(sessions=400, run_id="auth")))
    simulator.set_faults(latency_ms=5)
    with WorkerProcess(bridge.env) as worker:
        bridge.produce(commands[: len(commands) // 2])
        wait_for(lambda: _processed(worker) >= len(commands) // 2, 60, "first half processed")
        simulator.set_faults(auth_failure=True)
        bridge.produce(commands[len(commands) // 2 :])
        wait_for(lambda: not worker.ready(), 30, "the worker to report not ready")
        assert worker.metric_sum("bridge_api_auth_ok") == 0

        def ticks() -> float:
            return worker.metric_sum("bridge_offset_commits_total")

        # Work finished before the key was rejected is still being committed: let it land.
        snapshot: list[dict[int, int]] = []

        def settled() -> bool:
            snapshot.append(committed_offsets(bridge.conf, bridge.group, bridge.input))
            return len(snapshot) > 2 and snapshot[-1] == snapshot[-2] == snapshot[-3]

        wait_for(settled, 30, "committed offsets to settle", step=0.6)
        frozen, done, start = snapshot[-1], _processed(worker), ticks()
        # While the key is rejected nothing finishes, so no offset moves on later commits.
        wait_for(lambda: ticks() >= start + 4, 30, "more commit ticks")
        assert _processed(worker) == done
        assert committed_offsets(bridge.conf, bridge.group, bridge.input) == frozen
        assert sum(frozen.values()) < sum(end_offsets(bridge.conf, bridge.input).values())
        simulator.set_faults(auth_failure=False)
        wait_for(worker.ready, 60, "the worker to become ready again")
        wait_for(lambda: _processed(worker) >= len(commands), 60, "all commands processed")
        assert worker.metric_sum("bridge_dead_letters_total") == 0
    assert_applied_in_order(commands, simulator.journal())


@pytest.mark.parametrize("keys", ["on", "off"])
def test_kill_9_mid_stream_loses_nothing(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess, keys: str
) -> None:
    bridge = bridge_factory(
        partitions=6, BRIDGE_TALON_IDEMPOTENCY_KEYS="true" if keys == "on" else "false"
    )
    commands = list(generate(LoadSpec(sessions=1500, max_cart_updates=6, run_id=f"kill{keys}")))
    simulator.set_faults(latency_ms=15, latency_jitter_ms=5)
    worker = WorkerProcess(bridge.env).start()
    bridge.produce(commands)
    wait_for(lambda: _processed(worker) > len(commands) / 3, 60, "progress before the kill")
    worker.kill()
    with WorkerProcess(bridge.env):
        wait_for(
            lambda: (
                simulator.stats()["applied"] + simulator.stats()["duplicates_suppressed"] * 0
                >= len(commands)
            ),
            120,
            "every command applied",
        )
        ends = end_offsets(bridge.conf, bridge.input)
        wait_committed(
            bridge.conf, bridge.group, bridge.input, ends, 60, "offsets committed to the end"
        )
    stats = simulator.stats()
    codec = Codec()
    letters = read_topic(bridge.conf, bridge.dlq, timeout=30, idle=2.0)
    dead = {codec.decode_command(m.value()).event_id for m in letters}
    repeats = assert_order_allowing_replays(commands, simulator.journal(), dead)
    print(f"dead-lettered after the restart: {len(dead)}")
    print(
        f"idempotency keys {keys}: {stats['applied_event_ids_repeated']} eventIds applied "
        f"twice, {stats['duplicates_suppressed']} duplicates suppressed by the key"
    )
    if keys == "on":
        assert stats["applied_event_ids_repeated"] == 0
        assert repeats == 0
        assert not dead
    else:
        # Redelivered: what finished after the last commit, bounded by the buffered window.
        assert repeats <= 5_000
    assert stats["conflicts_409"] == 0


def test_broker_restart_mid_stream(simulator: SimulatorProcess) -> None:
    import uuid

    with LocalKafka() as broker:
        conf = {"bootstrap.servers": broker.bootstrap}
        run = uuid.uuid4().hex[:6]
        names = create_bridge_topics(conf, f"restart-{run}", 3)
        group = f"g-{run}"
        env = worker_env(
            broker.bootstrap,
            names,
            group=group,
            talon_url=simulator.base_url,
            api_key=API_KEY,
            BRIDGE_COMMIT_INTERVAL="0.5",
        )
        bridge = Bridge(
            broker.bootstrap, env, names["in"], names["out"], names["dlq"], names["park"], group, 3
        )
        commands = list(generate(LoadSpec(sessions=800, run_id="restart")))
        simulator.set_faults(latency_ms=20)
        with WorkerProcess(bridge.env) as worker:
            bridge.produce(commands)
            wait_for(lambda: _processed(worker) > len(commands) / 4, 60, "progress")
            broker.kill()
            broker.start()
            wait_for(
                lambda: simulator.stats()["applied"] >= len(commands),
                180,
                "every command applied after the broker came back",
            )
            wait_for(lambda: _processed(worker) >= len(commands), 120, "all effects acknowledged")
        repeats = assert_order_allowing_replays(commands, simulator.journal())
        assert simulator.stats()["applied_event_ids_repeated"] == 0, repeats
        effects = read_topic(conf, names["out"], expected=len(commands), timeout=60)
        assert len({m.value() for m in effects}) >= len(commands)


def test_exactly_once_output_survives_kill_9(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    from collections import Counter

    from bridge.avro.codec import Codec

    bridge = bridge_factory(partitions=4, BRIDGE_EXACTLY_ONCE="true")
    commands = list(generate(LoadSpec(sessions=800, max_cart_updates=6, run_id="eos")))
    simulator.set_faults(latency_ms=15, latency_jitter_ms=5)
    worker = WorkerProcess(bridge.env).start()
    bridge.produce(commands)
    wait_for(lambda: _processed(worker) > len(commands) / 3, 60, "progress before the kill")
    worker.kill()
    with WorkerProcess(bridge.env):
        ends = end_offsets(bridge.conf, bridge.input)
        wait_committed(
            bridge.conf,
            bridge.group,
            bridge.input,
            ends,
            180,
            "every record finished and committed",
        )
    codec = Codec()
    records = read_topic(
        bridge.conf, bridge.output, timeout=90, idle=3.0, isolation="read_committed"
    )
    seen = Counter(codec.decode_effects(m.value()).event_id for m in records)
    assert set(seen) == {c.event_id for c in commands}
    assert max(seen.values()) == 1, "a read_committed consumer saw an effect twice"
    assert simulator.stats()["applied_event_ids_repeated"] == 0
    assert_order_allowing_replays(commands, simulator.journal())
