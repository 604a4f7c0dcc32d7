"""Several Talon.One applications in one deployment, on the real broker, with one simulator
process per application: one application's failure holds only its own records."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from bridge.avro.codec import Codec
from bridge.commands import Command, UpdateCustomerSession
from bridge.dlq import H_APPLICATION, H_REASON, H_REPLAY_ID, H_STAGE, header
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, read_topic, wait_for
from bridge.tools.produce import LoadSpec, generate
from tests.support.bridge import API_KEY, Bridge
from tests.support.oracle import assert_applied_in_order
from tests.support.replay import command, run_replay

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KEY_B = "it-api-key-b-93c0"
PROCESSED = "bridge_commands_processed_total"


@pytest.fixture
def simulator_b() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(
        api_key=KEY_B, args=["--latency-ms", "5", "--latency-jitter-ms", "2"]
    ) as sim:
        yield sim


def _deployment(
    bridge_factory: Callable[..., Bridge],
    tmp_path: Path,
    a: SimulatorProcess,
    b: SimulatorProcess,
    *,
    b_takes_the_topic: bool = False,
) -> Bridge:
    """A bridge whose records go to `a` (the default) unless their header names `b`; or,
    `b_takes_the_topic`, to `b` unless their header names `a` (no default)."""
    (tmp_path / "a.key").write_text(API_KEY, encoding="utf-8")
    (tmp_path / "b.key").write_text(KEY_B, encoding="utf-8")
    path = tmp_path / "applications.json"
    bridge = bridge_factory(partitions=4, BRIDGE_APPLICATIONS_FILE=str(path))
    apps = [
        {"name": "a", "base_url": a.base_url, "api_key_file": str(tmp_path / "a.key")},
        {"name": "b", "base_url": b.base_url, "api_key_file": str(tmp_path / "b.key")},
    ]
    if b_takes_the_topic:
        apps[1]["topics"] = [bridge.input]  # type: ignore[assignment]
    table = {"applications": apps, "default": None if b_takes_the_topic else "a"}
    path.write_text(json.dumps(table), encoding="utf-8")
    # The table alone says where the applications are.
    del bridge.env["BRIDGE_TALON_BASE_URL"], bridge.env["BRIDGE_TALON_API_KEY"]
    return bridge


def _produce(bridge: Bridge, commands: list[Command], application: str | None) -> None:
    from confluent_kafka import Producer

    codec = Codec()
    headers = [] if application is None else [("talon-application", application.encode())]
    producer = Producer({**bridge.conf, "enable.idempotence": True, "linger.ms": 20})
    for cmd in commands:
        producer.produce(
            bridge.input,
            key=cmd.session_id.encode(),
            value=codec.encode_command(cmd, bridge.input),
            headers=headers,
        )
    assert producer.flush(30) == 0


def _applied(sim: SimulatorProcess) -> int:
    return sum(len(v) for v in sim.journal()["sessions"].values())


def _all_applied(commands: list[Command], sim: SimulatorProcess) -> bool:
    try:
        assert_applied_in_order(commands, sim.journal())
    except AssertionError:
        return False
    return True


def test_a_rejected_key_holds_only_its_application_then_its_records_complete_in_order(
    bridge_factory: Callable[..., Bridge],
    simulator: SimulatorProcess,
    simulator_b: SimulatorProcess,
    tmp_path: Path,
) -> None:
    bridge = _deployment(bridge_factory, tmp_path, simulator, simulator_b)
    to_a = list(generate(LoadSpec(sessions=300, run_id="apps-a")))
    to_b = list(generate(LoadSpec(sessions=150, run_id="apps-b")))
    with WorkerProcess(bridge.env) as worker:
        simulator_b.set_faults(auth_failure=True)
        _produce(bridge, to_b[: len(to_b) // 2], "b")
        _produce(bridge, to_a, None)
        _produce(bridge, to_b[len(to_b) // 2 :], "b")
        wait_for(lambda: worker.metric_sum('bridge_api_auth_ok{application="b"}') == 0, 30, "b")
        # a's traffic flows to its end while b's key is rejected.
        wait_for(lambda: _all_applied(to_a, simulator), 120, "every command of a applied")
        assert worker.metric_sum('bridge_api_auth_ok{application="a"}') == 1
        assert worker.metric_sum('bridge_api_auth_ok{application="b"}') == 0
        assert _applied(simulator_b) == 0
        assert worker.metric_sum(PROCESSED) < len(to_a) + len(to_b)
        simulator_b.set_faults(auth_failure=False)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= len(to_a) + len(to_b), 120, "b's records")
        assert worker.metric_sum('bridge_api_auth_ok{application="b"}') == 1
        assert worker.metric_sum("bridge_dead_letters_total") == 0
    assert_applied_in_order(to_b, simulator_b.journal())
    assert simulator_b.stats()["conflicts_409"] == 0
    assert simulator.stats()["applied_event_ids_repeated"] == 0


def test_a_record_naming_an_unknown_application_is_dead_lettered(
    bridge_factory: Callable[..., Bridge],
    simulator: SimulatorProcess,
    simulator_b: SimulatorProcess,
    tmp_path: Path,
) -> None:
    bridge = _deployment(bridge_factory, tmp_path, simulator, simulator_b)
    to_a = list(generate(LoadSpec(sessions=40, run_id="apps-known")))
    lost = list(generate(LoadSpec(sessions=3, run_id="apps-unknown")))
    with WorkerProcess(bridge.env) as worker:
        _produce(bridge, to_a, "a")
        _produce(bridge, lost, "nowhere")
        total = len(to_a) + len(lost)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= total, 60, "all records finished")
        unroutable = 'bridge_dead_letters_total{application="",reason="unroutable"}'
        assert worker.metrics()[unroutable] >= 3
    letters = read_topic(bridge.conf, bridge.dlq, expected=len(lost), timeout=30)
    assert {m.key().decode() for m in letters} == {c.session_id for c in lost}
    for m in letters:
        headers = m.headers()
        assert header(headers, H_APPLICATION) is None
        # The session's first is routed nowhere; the rest of it are parked behind it.
        assert header(headers, H_STAGE) in ("route", "parked")
    first = [m for m in letters if header(m.headers(), H_STAGE) == "route"]
    assert len(first) == 3 and all(header(m.headers(), H_REASON) == "unroutable" for m in first)
    assert_applied_in_order(to_a, simulator.journal())
    assert _applied(simulator_b) == 0


def test_replay_of_an_application_sends_its_dead_letters_back_to_it(
    bridge_factory: Callable[..., Bridge],
    simulator: SimulatorProcess,
    simulator_b: SimulatorProcess,
    tmp_path: Path,
) -> None:
    bridge = _deployment(bridge_factory, tmp_path, simulator, simulator_b, b_takes_the_topic=True)
    victim = "apps-victim"
    mine = [command(f"victim:{i}", victim) for i in range(4)]
    payload = mine[0].payload
    assert isinstance(payload, UpdateCustomerSession)
    # An attribute b's simulator refuses (400): dead-lettered, the rest parked behind it.
    mine[0] = msgspec.structs.replace(
        mine[0],
        payload=msgspec.structs.replace(payload, attributes={"x-undefined-tier": "gold"}),
    )
    to_a = list(generate(LoadSpec(sessions=10, run_id="apps-replay-a")))
    with WorkerProcess(bridge.env) as worker:
        _produce(bridge, mine, None)  # to b, by topic
        _produce(bridge, to_a, "a")
        total = len(mine) + len(to_a)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= total, 60, "all records finished")
        letters = read_topic(bridge.conf, bridge.dlq, expected=len(mine), timeout=30)
        assert {header(m.headers(), H_APPLICATION) for m in letters} == {"b"}
        simulator_b.set_faults(reject_attribute_prefixes=[])  # the cause is fixed
        # a has no dead letters: selecting it replays nothing.
        assert "replayed   0" in run_replay(bridge.env, "--application", "a").stderr
        done = run_replay(bridge.env, "--application", "b")
        assert done.returncode == 0, done.stderr
        assert f"replayed   {len(mine)}" in done.stderr
        wait_for(
            lambda: len(simulator_b.journal(session=victim)) >= len(mine), 60, "victim applied"
        )
    assert [e["eventId"] for e in simulator_b.journal(session=victim)] == [c.event_id for c in mine]
    assert simulator.journal(session=victim) == []
    sent = [
        m
        for m in read_topic(bridge.conf, bridge.input, expected=total + len(mine), timeout=30)
        if header(m.headers(), H_REPLAY_ID) is not None
    ]
    assert [header(m.headers(), "talon-application") for m in sent] == ["b"] * len(mine)
