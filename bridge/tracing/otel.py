"""Tracing on: spans made with the OpenTelemetry SDK and exported over OTLP/HTTP.

Imported only when `OTEL_TRACES_EXPORTER=otlp` asks for spans, so a worker without tracing
loads none of the SDK.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Final

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    Tracer,
    TraceState,
    set_span_in_context,
)

from bridge import __version__
from bridge.dlq import DeadLetter
from bridge.errors import ApiError, ConfigError
from bridge.logs import RepeatFilter
from bridge.talon.addressing import TRACE_HEADERS, TraceHeaders
from bridge.tracing import SpanCounter, Traced, Tracing, http_headers, output_headers

__all__ = ["CountingExporter", "OtelTracing", "build"]

# The SDK logs each span it drops while the collector is away, and each failed export:
# thinned like the Kafka clients' repeats.
_REPETITIVE: Final = (
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)


class OtelTracing(Tracing):
    """Tracing on: a span per command's API call, exported by an OpenTelemetry SDK provider."""

    enabled = True

    def __init__(self, provider: TracerProvider, exporter: CountingExporter | None = None) -> None:
        self.provider = provider
        self.exporter = exporter
        self._tracer: Tracer = provider.get_tracer("talon-bridge", __version__)

    def _start(self, work: Traced) -> tuple[Span, TraceHeaders]:
        rec = work.rec
        span = self._tracer.start_span(
            f"talon {work.command_type}",
            context=_parent(http_headers(rec.headers)),
            kind=SpanKind.CLIENT,
            attributes={
                "talon_bridge.command.type": work.command_type,
                "messaging.system": "kafka",
                "messaging.destination.name": rec.topic,
                "messaging.destination.partition.id": str(rec.partition),
                "messaging.kafka.offset": rec.offset,
            },
        )
        work.trace = traced = (span, _headers(span.get_span_context()))
        return traced

    def calling(self, work: Traced) -> None:
        _, trace = work.trace or self._start(work)
        TRACE_HEADERS.set(trace)

    def failed(self, work: Traced, exc: ApiError) -> None:
        if work.trace is None:
            return
        attributes: dict[str, str | int] = {
            "talon_bridge.attempt": work.attempts,
            "error.type": exc.error_class,
        }
        if exc.status is not None:
            attributes["http.response.status_code"] = exc.status
        work.trace[0].add_event("attempt failed", attributes)

    def _end(self, work: Traced, outcome: str, status: int | None, error: str | None) -> None:
        span: Span = work.trace[0]
        attributes: dict[str, str | int] = {
            "talon_bridge.outcome": outcome,
            "talon_bridge.attempts": work.attempts,
        }
        if status is not None:
            attributes["http.response.status_code"] = status
        span.set_attributes(attributes)
        if error is not None:
            span.set_status(StatusCode.ERROR, error)
        span.end()

    def applied(self, work: Traced, status: int) -> list[tuple[str, str | bytes | None]] | None:
        if work.trace is None:
            return super().applied(work, status)
        self._end(work, "applied", status, None)
        return output_headers(None, work.trace[1])

    def dead_lettered(
        self, work: Traced, letter: DeadLetter, headers: list[tuple[str, str | bytes | None]]
    ) -> list[tuple[str, str | bytes | None]]:
        if work.trace is None:
            return headers  # it never reached the API: the incoming context, unchanged
        outcome = "parked" if letter.reason == "parked" else "dead_lettered"
        self._end(work, outcome, letter.http_status, letter.reason)
        return output_headers(headers, work.trace[1])

    def dropped(self, work: Traced) -> None:
        if work.trace is not None:
            self._end(work, "dropped", None, None)

    def count_spans(self, counter: SpanCounter) -> None:
        if self.exporter is not None:
            self.exporter.counter = counter

    def close(self) -> None:
        self.provider.shutdown()


def _parent(incoming: TraceHeaders) -> Context | None:
    """The context of a valid incoming `traceparent` (checked by `http_headers`): what
    TraceContextTextMapPropagator.extract makes of it, without parsing it again."""
    if not incoming:
        return None
    parent = incoming[0][1]
    state = TraceState.from_header([incoming[1][1]]) if len(incoming) > 1 else None
    context = SpanContext(
        trace_id=int(parent[3:35], 16),
        span_id=int(parent[36:52], 16),
        is_remote=True,
        trace_flags=TraceFlags(int(parent[53:55], 16)),
        trace_state=state,
    )
    return set_span_in_context(NonRecordingSpan(context))


def _headers(context: SpanContext) -> TraceHeaders:
    """`context` as W3C headers, as TraceContextTextMapPropagator.inject writes them."""
    parent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    if context.trace_state:
        return (("traceparent", parent), ("tracestate", context.trace_state.to_header()))
    return (("traceparent", parent),)


class CountingExporter(SpanExporter):
    """Passes spans to `inner` and reports how each export went, for a metric."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.counter: SpanCounter | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        if self.counter is not None:
            self.counter("exported" if result is SpanExportResult.SUCCESS else "failed", len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


# OTEL_TRACES_SAMPLER values, as the OpenTelemetry SDK names them.
SAMPLERS: Final = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


def _sampler(environ: Mapping[str, str]) -> sampling.Sampler:
    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if name not in SAMPLERS:
        raise ConfigError("OTEL_TRACES_SAMPLER", f"must be one of {', '.join(SAMPLERS)}")
    if name.endswith("traceidratio"):
        raw = environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = float(raw)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError("OTEL_TRACES_SAMPLER_ARG", "must be a ratio from 0 to 1")
        if name == "traceidratio":
            return sampling.TraceIdRatioBased(ratio)
        return sampling.ParentBasedTraceIdRatio(ratio)
    return {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "parentbased_always_on": sampling.DEFAULT_ON,
        "parentbased_always_off": sampling.DEFAULT_OFF,
    }[name]


def build(environ: Mapping[str, str]) -> OtelTracing:
    """Spans exported over OTLP/HTTP, configured by `environ` (sampler) and the process
    environment, which the SDK reads itself (exporter, batching, resource)."""
    sampler = _sampler(environ)
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        # Neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES named the service.
        resource = resource.merge(Resource({"service.name": "talon-bridge"}))
    provider = TracerProvider(sampler=sampler, resource=resource)
    exporter = CountingExporter(OTLPSpanExporter())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    for name in _REPETITIVE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter())
    return OtelTracing(provider, exporter)
