"""Parked sessions on the real broker: only their own replayed records release them, in order."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import msgspec
import pytest
from confluent_kafka import Producer

from bridge import dlq
from bridge.avro.codec import Codec
from bridge.commands import Command, UpdateCustomerSession
from bridge.simulator.process import SimulatorProcess
from bridge.talon.client import idempotency_key_for
from bridge.tools.harness import WorkerProcess, read_topic, wait_for
from tests.support.bridge import Bridge
from tests.support.replay import command, encode, headers_of, run_replay, start_replay

from .test_replay import poisoned

pytestmark = pytest.mark.kafka

PROCESSED = "bridge_commands_processed_total"


def _keys(simulator: SimulatorProcess, session: str) -> list[str]:
    return [str(e["idempotencyKey"]) for e in simulator.journal(session=session)]


def _expected(commands: list[Command]) -> list[str]:
    return [idempotency_key_for(c.event_id) for c in commands]


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_forged_replay_headers_do_not_release_a_parked_session(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess, exactly_once: bool
) -> None:
    bridge = bridge_factory(partitions=2, BRIDGE_EXACTLY_ONCE=str(exactly_once).lower())
    session = "forged-victim"
    mine = [command(f"forged-victim:{i}", session) for i in range(3)]
    mine[1] = poisoned(mine[1])

    with WorkerProcess(bridge.env) as worker:
        bridge.produce(mine)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= 3, 60, "the session parked")
        letters = read_topic(bridge.conf, bridge.dlq, expected=2, timeout=30)
        poison, follower = (headers_of(m) for m in letters)
        simulator.set_faults(reject_attribute_prefixes=[])  # a forged release would now apply

        # What a producer of the input topic can know or guess: the poison's coordinates,
        # the chain's positions, the replay headers. Even a token read from the DLQ does not
        # pass with another value.
        ref = dlq.coordinates(
            poison[dlq.H_ORIGINAL_TOPIC],
            int(poison[dlq.H_ORIGINAL_PARTITION]),
            int(poison[dlq.H_ORIGINAL_OFFSET]),
        )
        forged_cmds = [command(f"forged:{i}", session) for i in range(4)]
        forged_headers = [
            [(dlq.H_REPLAY_OF, ref)],
            [
                (dlq.H_REPLAY_OF, ref),
                (dlq.H_REPLAY_POSITION, "0"),
                (dlq.H_REPLAY_TOKEN, "0" * 32),
                (dlq.H_REPLAY_ID, str(uuid.uuid4())),
                (dlq.H_REPLAY_COUNT, "1"),
            ],
            [
                (dlq.H_REPLAY_OF, ref),
                (dlq.H_REPLAY_POSITION, "0"),
                (dlq.H_REPLAY_TOKEN, poison[dlq.H_PARKED_TOKEN]),
            ],
            [(dlq.H_PARKED_BEHIND, ref), (dlq.H_REASON, "parked"), (dlq.H_REPLAY_OF, ref)],
        ]
        p = Producer(bridge.conf)
        for cmd, hs in zip(forged_cmds, forged_headers, strict=True):
            p.produce(
                bridge.input,
                key=session.encode(),
                value=encode(cmd),
                headers=[(k, v.encode()) for k, v in hs],
                partition=int(poison[dlq.H_ORIGINAL_PARTITION]),
            )
        assert p.flush(30) == 0
        wait_for(lambda: worker.metric_sum(PROCESSED) >= 7, 60, "the forged records handled")
        assert worker.metric_sum("bridge_parked_sessions") == 1, "still parked"
        assert _keys(simulator, session) == _expected(mine[:1]), "nothing ran past the poison"
        diverted = read_topic(bridge.conf, bridge.dlq, expected=6, timeout=30)
        assert [headers_of(m)[dlq.H_PARKED_POSITION] for m in diverted] == [
            str(i) for i in range(6)
        ], "the forged records wait at the end of the chain"
        assert follower[dlq.H_PARKED_POSITION] == "1"

        # The real replay brings the chain back in order, forged records included as the
        # session's ordinary later commands, and only then releases the session.
        done = run_replay(bridge.env, "--session", session)
        assert done.returncode == 0, done.stderr
        everything = [*mine, *forged_cmds]
        wait_for(lambda: len(_keys(simulator, session)) >= len(everything), 60, "the chain applied")
        wait_for(
            lambda: worker.metric_sum("bridge_parked_sessions") == 0, 30, "the session released"
        )
        assert worker.metric_sum("bridge_replay_proofs_rejected_total") == len(forged_cmds)
        inputs = len(read_topic(bridge.conf, bridge.input, timeout=30, idle=1))
        wait_for(lambda: worker.metric_sum(PROCESSED) >= inputs, 30, "all records finished")
        assert worker.metric_sum(PROCESSED) == inputs, "each record finished once"
    assert _keys(simulator, session) == _expected(everything)
    assert simulator.stats()["applied_event_ids_repeated"] == 0


def test_replay_under_live_traffic_keeps_every_session_in_order(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=2)
    sessions = [f"busy-{i}" for i in range(4)]
    produced: dict[str, list[Command]] = {s: [] for s in sessions}

    def next_command(session: str) -> Command:
        cmd = command(f"{session}:{len(produced[session])}", session)
        if len(produced[session]) == 1:
            cmd = poisoned(cmd)
        produced[session].append(cmd)
        return cmd

    def total() -> int:
        return sum(len(cs) for cs in produced.values())

    with WorkerProcess(bridge.env) as worker:

        def one_round() -> None:
            """One live command per session, then wait until the worker has taken them."""
            before = worker.metric_sum(PROCESSED)
            bridge.produce([next_command(s) for s in sessions])
            wait_for(lambda: worker.metric_sum(PROCESSED) >= before + len(sessions), 60, "a round")

        for _ in range(4):
            one_round()
        wait_for(lambda: worker.metric_sum(PROCESSED) >= total(), 60, "the sessions parked")
        assert worker.metric_sum("bridge_parked_sessions") == len(sessions)
        simulator.set_faults(reject_attribute_prefixes=[])  # the cause is fixed

        # Chains go out at a pace (--rate), so live commands reach the worker after the run's
        # stop point and before, between and after the chains it sends.
        proc = start_replay(bridge.env, "--rate", "2")
        assert proc.stderr is not None
        for line in proc.stderr:
            if "up to its stop point" in line:
                break
        rounds = 0
        while proc.poll() is None and rounds < 60:
            one_round()
            rounds += 1
        for _ in range(2):
            one_round()
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        first_run = 3 * len(sessions)  # each poison and the two commands parked behind it
        wait_for(lambda: worker.metric_sum(PROCESSED) >= total() + first_run, 60, "the first run")
        # Never released early: what ran is each session's produced order up to a point,
        # and a session with commands still in the DLQ is still parked.
        waiting = 0
        for s in sessions:
            ran = _keys(simulator, s)
            assert ran == _expected(produced[s])[: len(ran)], s
            waiting += len(ran) < len(produced[s])
        assert worker.metric_sum("bridge_parked_sessions") == waiting
        assert waiting, "live commands were diverted behind the replayed chains"

        second = run_replay(bridge.env)  # the same selection: only what the first did not send
        assert second.returncode == 0, second.stderr
        wait_for(
            lambda: all(len(_keys(simulator, s)) >= len(produced[s]) for s in sessions),
            60,
            "every command applied",
        )
        wait_for(
            lambda: worker.metric_sum("bridge_parked_sessions") == 0, 30, "the sessions released"
        )
        assert worker.metric_sum("bridge_parked_records_waiting") == 0
        inputs = read_topic(bridge.conf, bridge.input, timeout=30, idle=1)
        sent_back = [m for m in inputs if dlq.H_REPLAY_ID in headers_of(m)]
        assert len(inputs) == total() + len(sent_back)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= len(inputs), 30, "all records finished")
        assert worker.metric_sum(PROCESSED) == len(inputs), "each record finished once"
    for s in sessions:
        assert _keys(simulator, s) == _expected(produced[s]), s
    assert simulator.stats()["applied_event_ids_repeated"] == 0
    codec = Codec()
    assert len({codec.decode_command(m.value()).event_id for m in sent_back}) == len(sent_back)


def test_a_chain_record_that_fails_again_keeps_its_place(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=2)
    session = "fails-twice"
    mine = [command(f"fails-twice:{i}", session) for i in range(4)]
    mine[1] = poisoned(mine[1])
    second = mine[2].payload
    assert isinstance(second, UpdateCustomerSession)
    mine[2] = msgspec.structs.replace(
        mine[2], payload=msgspec.structs.replace(second, attributes={"x-later-tier": "gold"})
    )
    late = command("fails-twice:late", session)

    with WorkerProcess(bridge.env) as worker:
        bridge.produce(mine)
        wait_for(lambda: worker.metric_sum(PROCESSED) >= 4, 60, "the session parked")
        # The poison's cause is fixed, but the next command now fails too.
        simulator.set_faults(reject_attribute_prefixes=["x-later"])
        first = run_replay(bridge.env, "--session", session)
        assert first.returncode == 0, first.stderr
        wait_for(lambda: worker.metric_sum(PROCESSED) >= 7, 60, "the first run handled")
        bridge.produce([late])
        wait_for(lambda: worker.metric_sum(PROCESSED) >= 8, 60, "the late command parked")
        assert worker.metric_sum("bridge_parked_sessions") == 1
        assert _keys(simulator, session) == _expected(mine[:2])
        letters = [headers_of(m) for m in read_topic(bridge.conf, bridge.dlq, expected=6)]
        assert [(h[dlq.H_REASON], h[dlq.H_PARKED_POSITION]) for h in letters[3:]] == [
            ("permanent", "1"),
            ("parked", "2"),
            ("parked", "3"),
        ], "the failed record and the one behind it keep their places; the late one queues"

        simulator.set_faults(reject_attribute_prefixes=[])
        again = run_replay(bridge.env, "--session", session)  # the same command, once more
        assert again.returncode == 0, again.stderr
        everything = [*mine, late]
        wait_for(lambda: len(_keys(simulator, session)) >= len(everything), 60, "the chain applied")
        wait_for(
            lambda: worker.metric_sum("bridge_parked_sessions") == 0, 30, "the session released"
        )
        assert worker.metric_sum("bridge_replay_proofs_rejected_total") == 0
    assert _keys(simulator, session) == _expected(everything)
    assert simulator.stats()["applied_event_ids_repeated"] == 0
