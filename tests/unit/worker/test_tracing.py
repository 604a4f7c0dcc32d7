"""Trace context through the pipeline: from a record's headers to its Talon.One call and to
its effects record or dead letter; with spans on, one span per command's API call.

A Talon client on a mock transport records the headers of every request; outputs are kept in
a list and acknowledged on the next loop turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bridge.avro.codec import Codec
from bridge.commands import Command, TrackEvent, UpdateCustomerSession
from bridge.dlq import H_REASON, header
from bridge.kafka.records import InputRecord
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.talon import TalonClient
from bridge.talon.transports.base import Answer, Request
from bridge.talon.transports.mock import MockTransport, answer
from bridge.tracing import Tracing
from bridge.tracing.otel import OtelTracing
from bridge.types import TP
from bridge.worker.handlers import Handlers
from bridge.worker.pipeline import Pipeline
from bridge.worker.work import OutputHeaders, State, Work

CODEC = Codec()
PART: TP = ("in", 0)
OK = {"effects": [], "createdCoupons": [], "createdReferrals": []}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
PARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
STATE = "vendor=opaque"
SESSION = "sess-7f3a-secret"
PROFILE = "profile-9c1e-secret"


class Outputs:
    """Keeps every output; acknowledges each on the next loop turn."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.sent: list[tuple[str, OutputHeaders | None]] = []

    def send(
        self,
        work: Work,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: OutputHeaders | None = None,
    ) -> None:
        self.sent.append((topic, headers))
        work.pending += 1
        asyncio.get_running_loop().call_soon(self._ack, work)

    def _ack(self, work: Work) -> None:
        work.pending -= 1
        if work.pending == 0 and work.state is State.PRODUCING:
            self.pipeline.complete(work)

    def finish(self, work: Work) -> None:
        if work.pending == 0:
            self.pipeline.complete(work)

    def forget(self, partitions: Iterable[TP]) -> None:
        pass

    def orphan(self, tp: TP) -> None:
        pass

    def on(self, topic: str) -> list[OutputHeaders | None]:
        return [h for t, h in self.sent if t == topic]


class Rig:
    """A pipeline with one server against a mock Talon.One answering from `statuses`."""

    def __init__(self, tracing: Tracing, statuses: list[int] | None = None, **kw: Any) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[dict[str, str]] = []
        self.client = TalonClient("https://talon.test", "k", transport=MockTransport(self.talon))
        self.settings = Settings(
            kafka_bootstrap_servers="127.0.0.1:1",
            input_topics=["in"],
            talon_base_url="https://talon.test",
            talon_api_key="k",
            retry_base_delay=0.001,
            retry_max_delay=0.002,
            on_poison="skip",
            **kw,
        )
        self.pipeline = Pipeline(
            self.settings,
            codec=CODEC,
            handlers=Handlers(self.client),
            metrics=Metrics(),
            tracing=tracing,
        )
        self.outputs = Outputs(self.pipeline)
        self.pipeline.output = self.outputs
        self.pipeline.assigned.add(PART)
        self._server = asyncio.create_task(self.pipeline.serve())

    async def talon(self, request: Request) -> Answer:
        self.requests.append(dict(request.headers))
        status = self.statuses.pop(0) if self.statuses else 200
        return answer(status, json=OK if status == 200 else {"message": "no"})

    async def run(self, records: list[InputRecord]) -> None:
        self.pipeline.on_batch(records)
        async with asyncio.timeout(5):
            while self.pipeline.offsets.position(PART) != records[-1].offset + 1:
                await asyncio.sleep(0.001)

    async def close(self) -> None:
        self._server.cancel()
        await asyncio.gather(self._server, return_exceptions=True)
        await self.client.aclose()

    def effects(self) -> list[OutputHeaders | None]:
        return self.outputs.on(self.settings.output_topic)

    def dlq(self) -> list[OutputHeaders | None]:
        return self.outputs.on(self.settings.dlq_topic)


def _record(
    offset: int, headers: list[tuple[str, bytes]] | None = None, event: bool = False
) -> InputRecord:
    payload = (
        TrackEvent(type="checkout", profile_id=PROFILE)
        if event
        else UpdateCustomerSession(profile_id=PROFILE)
    )
    cmd = Command(f"e-{offset}", SESSION, 1, payload)
    value = CODEC.encode_command(cmd, "in")
    return InputRecord("in", 0, offset, SESSION.encode(), value, headers, 0)


def _w3c(headers: OutputHeaders | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers or ():
        if k in ("traceparent", "tracestate"):
            out[k] = v.decode() if isinstance(v, bytes) else str(v)
    return out


INCOMING = [("traceparent", PARENT.encode()), ("tracestate", STATE.encode())]


@pytest.fixture
def spans() -> Iterable[tuple[OtelTracing, Callable[[], list[ReadableSpan]]]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield OtelTracing(provider), lambda: list(exporter.get_finished_spans())
    provider.shutdown()


# --- off ---------------------------------------------------------------------------------


async def test_off_the_incoming_context_goes_on_unchanged_to_the_call_and_the_outputs() -> None:
    rig = Rig(Tracing(), statuses=[200, 400])
    await rig.run([_record(0, INCOMING), _record(1, INCOMING)])
    for request in rig.requests:
        assert request["traceparent"] == PARENT and request["tracestate"] == STATE
    assert [_w3c(h) for h in rig.effects()] == [{"traceparent": PARENT, "tracestate": STATE}]
    (letter,) = rig.dlq()
    assert header(letter, H_REASON) == "permanent"
    assert _w3c(letter) == {"traceparent": PARENT, "tracestate": STATE}
    await rig.close()


async def test_off_a_command_without_a_context_gets_none() -> None:
    rig = Rig(Tracing())
    await rig.run([_record(0), _record(1, [("other", b"1")])])
    assert all("traceparent" not in r for r in rig.requests)
    assert rig.effects() == [None, None]
    await rig.close()


async def test_off_a_malformed_context_is_not_sent_on_and_the_dead_letter_keeps_it() -> None:
    bad = [("traceparent", b"00-zz-\r\nX-Injected: 1"), ("tracestate", STATE.encode())]
    rig = Rig(Tracing(), statuses=[200, 400])
    await rig.run([_record(0, bad), _record(1, bad)])
    assert all("traceparent" not in r and "tracestate" not in r for r in rig.requests)
    assert rig.effects() == [None]
    (letter,) = rig.dlq()
    # A dead letter keeps the record's own headers, whatever they are.
    assert ("traceparent", b"00-zz-\r\nX-Injected: 1") in (letter or [])
    await rig.close()


# --- on ----------------------------------------------------------------------------------


async def test_on_the_span_is_a_child_of_the_incoming_context_and_travels_on(
    spans: tuple[OtelTracing, Callable[[], list[ReadableSpan]]],
) -> None:
    tracing, finished = spans
    rig = Rig(tracing)
    await rig.run([_record(0, INCOMING)])
    (span,) = finished()
    ctx = span.context
    assert ctx is not None and span.parent is not None
    assert f"{ctx.trace_id:032x}" == TRACE_ID
    assert f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.kind is SpanKind.CLIENT
    ours = f"00-{TRACE_ID}-{ctx.span_id:016x}-01"
    assert rig.requests[0]["traceparent"] == ours
    assert rig.requests[0]["tracestate"] == STATE
    assert _w3c(rig.effects()[0]) == {"traceparent": ours, "tracestate": STATE}
    attributes = dict(span.attributes or {})
    assert attributes["talon_bridge.command.type"] == "update_customer_session"
    assert attributes["talon_bridge.outcome"] == "applied"
    assert attributes["http.response.status_code"] == 200
    assert attributes["talon_bridge.attempts"] == 1
    await rig.close()


async def test_on_retries_are_events_and_the_dead_letter_carries_the_span(
    spans: tuple[OtelTracing, Callable[[], list[ReadableSpan]]],
) -> None:
    tracing, finished = spans
    rig = Rig(tracing, statuses=[503, 503, 503], retry_max_attempts=3)
    await rig.run([_record(0, INCOMING, event=True)])
    (span,) = finished()
    assert span.context is not None
    (letter,) = rig.dlq()
    assert header(letter, H_REASON) == "retries-exhausted"
    ours = f"00-{TRACE_ID}-{span.context.span_id:016x}-01"
    assert _w3c(letter) == {"traceparent": ours, "tracestate": STATE}
    assert [r["traceparent"] for r in rig.requests] == [ours] * 3, "one span over all attempts"
    assert [e.name for e in span.events] == ["attempt failed"] * 3
    assert dict(span.events[0].attributes or {}) == {
        "talon_bridge.attempt": 1,
        "error.type": "server",
        "http.response.status_code": 503,
    }
    attributes = dict(span.attributes or {})
    assert attributes["talon_bridge.outcome"] == "dead_lettered"
    assert attributes["talon_bridge.attempts"] == 3
    assert attributes["http.response.status_code"] == 503
    assert span.status.status_code is StatusCode.ERROR
    await rig.close()


@pytest.mark.parametrize("headers", [None, [("traceparent", b"not-a-traceparent")]])
async def test_on_a_command_without_a_valid_context_starts_a_trace(
    spans: tuple[OtelTracing, Callable[[], list[ReadableSpan]]],
    headers: list[tuple[str, bytes]] | None,
) -> None:
    tracing, finished = spans
    rig = Rig(tracing)
    await rig.run([_record(0, headers)])
    (span,) = finished()
    assert span.parent is None and span.context is not None
    ctx = span.context
    ours = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
    assert rig.requests[0]["traceparent"] == ours
    assert _w3c(rig.effects()[0]) == {"traceparent": ours}
    await rig.close()


async def test_on_spans_hold_no_customer_data(
    spans: tuple[OtelTracing, Callable[[], list[ReadableSpan]]],
) -> None:
    tracing, finished = spans
    rig = Rig(tracing, statuses=[500, 200, 400])
    await rig.run([_record(0, INCOMING), _record(1, INCOMING, event=True)])
    seen = []
    for span in finished():
        seen.append(span.name)
        seen.extend(f"{k}={v}" for k, v in (span.attributes or {}).items())
        seen.append(str(span.status.description))
        for event in span.events:
            seen.append(event.name)
            seen.extend(f"{k}={v}" for k, v in (event.attributes or {}).items())
    assert len(finished()) == 2
    text = "\n".join(seen)
    assert SESSION not in text and PROFILE not in text and "e-0" not in text
    assert '"message"' not in text, "no bodies"
    await rig.close()
