"""A checkout followed by its trace id, on a real broker and the simulator process: from the
command's `traceparent` to the request Talon.One got, to the effects record and the dead
letter; with spans on, to an OTLP/HTTP receiver, and on through a replay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from confluent_kafka import Producer

from bridge.avro.codec import Codec
from bridge.commands import Command, UpdateCustomerSession
from bridge.dlq import H_REASON
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, read_topic, wait_for
from tests.support.bridge import Bridge
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.replay import command, run_replay

pytestmark = pytest.mark.kafka

CODEC = Codec()
APPLIED_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
POISON_TRACE = "0af7651916cd43dd8448eb211c80319c"
APPLIED_PARENT = f"00-{APPLIED_TRACE}-00f067aa0ba902b7-01"
POISON_PARENT = f"00-{POISON_TRACE}-b7ad6b7169203331-01"
STATE = "vendor=opaque"


def _poisoned(cmd: Command) -> Command:
    payload = cmd.payload
    assert isinstance(payload, UpdateCustomerSession)
    bad = msgspec.structs.replace(payload, attributes={"x-undefined-tier": "gold"})
    return msgspec.structs.replace(cmd, payload=bad)


def _produce(bridge: Bridge, records: list[tuple[Command, list[tuple[str, bytes]]]]) -> None:
    producer = Producer({**bridge.conf, "enable.idempotence": True})
    for cmd, headers in records:
        value = CODEC.encode_command(cmd, bridge.input)
        producer.produce(bridge.input, value, cmd.session_id.encode(), headers=headers)
    assert producer.flush(30) == 0


def _w3c(msg: Any) -> dict[str, str]:
    return {
        k: (v or b"").decode()
        for k, v in msg.headers() or []
        if k in ("traceparent", "tracestate", H_REASON)
    }


def _traced(parent: str) -> list[tuple[str, bytes]]:
    return [("traceparent", parent.encode()), ("tracestate", STATE.encode())]


def _commands(tag: str) -> tuple[Command, Command, Command]:
    return (
        command(f"{tag}:applied", f"{tag}-applied"),
        _poisoned(command(f"{tag}:poison", f"{tag}-poison")),
        command(f"{tag}:plain", f"{tag}-plain"),
    )


def _run(bridge: Bridge, commands: tuple[Command, Command, Command]) -> tuple[Any, Any, Any]:
    applied, poison, plain = commands
    with WorkerProcess(bridge.env) as worker:
        _produce(
            bridge,
            [(applied, _traced(APPLIED_PARENT)), (poison, _traced(POISON_PARENT)), (plain, [])],
        )
        wait_for(
            lambda: worker.metric_sum("bridge_commands_processed_total") >= 3,
            60,
            "the commands processed",
        )
        assert worker.stop() == 0
    effects = {
        CODEC.decode_effects(m.value()).event_id: m
        for m in read_topic(bridge.conf, bridge.output, expected=2, timeout=30)
    }
    (letter,) = read_topic(bridge.conf, bridge.dlq, expected=1, timeout=30)
    return effects[applied.event_id], effects[plain.event_id], letter


def test_tracing_off_passes_the_context_on_unchanged(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=2)
    commands = _commands("off")
    applied, plain, letter = _run(bridge, commands)

    (seen,) = simulator.journal(session=commands[0].session_id)
    assert seen["traceparent"] == APPLIED_PARENT
    (unseen,) = simulator.journal(session=commands[2].session_id)
    assert unseen["traceparent"] is None
    assert _w3c(applied) == {"traceparent": APPLIED_PARENT, "tracestate": STATE}
    assert _w3c(plain) == {}
    assert _w3c(letter) == {
        "traceparent": POISON_PARENT,
        "tracestate": STATE,
        H_REASON: "permanent",
    }


def _one(receiver: OtlpReceiver, trace_id: str, outcome: str) -> ReceivedSpan:
    def found() -> list[ReceivedSpan]:
        return [
            s
            for s in receiver.of_trace(trace_id)
            if s.attributes.get("talon_bridge.outcome") == outcome
        ]

    wait_for(lambda: len(found()) > 0, 30, f"a span of {outcome} exported")
    (span,) = found()
    return span


def test_spans_reach_an_otlp_endpoint_and_the_trace_survives_a_replay(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    with OtlpReceiver() as receiver:
        bridge = bridge_factory(
            partitions=2,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_SERVICE_NAME="checkout-bridge",
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        commands = _commands("on")
        applied, plain, letter = _run(bridge, commands)

        span = _one(receiver, APPLIED_TRACE, "applied")
        assert span.parent_span_id == "00f067aa0ba902b7", "a child of the producer's span"
        assert span.resource["service.name"] == "checkout-bridge"
        assert span.attributes["talon_bridge.command.type"] == "update_customer_session"
        assert span.attributes["http.response.status_code"] == 200
        ours = f"00-{APPLIED_TRACE}-{span.span_id}-01"
        (seen,) = simulator.journal(session=commands[0].session_id)
        assert seen["traceparent"] == ours, "Talon.One saw the bridge's span as the parent"
        assert _w3c(applied) == {"traceparent": ours, "tracestate": STATE}

        failed = _one(receiver, POISON_TRACE, "dead_lettered")
        assert failed.status_code == 2 and failed.status_message == "permanent"
        assert failed.attributes["http.response.status_code"] == 400
        assert [name for name, _ in failed.events] == ["attempt failed"]
        assert _w3c(letter)["traceparent"] == f"00-{POISON_TRACE}-{failed.span_id}-01"

        # A command without a context starts a trace of its own.
        (unseen,) = simulator.journal(session=commands[2].session_id)
        started = unseen["traceparent"].split("-")[1]
        assert started not in (APPLIED_TRACE, POISON_TRACE)
        assert _w3c(plain)["traceparent"].split("-")[1] == started
        assert _one(receiver, started, "applied").parent_span_id == ""

        # The cause fixed, the dead letter goes back and is applied in the same trace.
        simulator.set_faults(reject_attribute_prefixes=[])
        victim = commands[1].session_id
        with WorkerProcess(bridge.env) as worker:
            done = run_replay(bridge.env, "--session", victim)
            assert done.returncode == 0, done.stderr
            wait_for(lambda: len(simulator.journal(session=victim)) == 1, 60, "replay applied")
            assert worker.stop() == 0
        (replayed,) = simulator.journal(session=victim)
        assert replayed["traceparent"].split("-")[1] == POISON_TRACE
        again = _one(receiver, POISON_TRACE, "applied")
        assert again.parent_span_id == failed.span_id, "a child of the failed call's span"
