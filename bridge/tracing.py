"""W3C trace context through the worker, and OpenTelemetry spans when the `OTEL_*` variables
ask for them.

A command's `traceparent`/`tracestate` Kafka headers go on its Talon.One call and on the
effects record or dead letter it produces, so one trace id follows a checkout from its
producer through Talon.One to the effects consumer.

Off (the default, `OTEL_TRACES_EXPORTER` unset or `none`): a valid incoming context is passed
on unchanged, a header copy; no span, no SDK. On (`OTEL_TRACES_EXPORTER=otlp`): one CLIENT
span per command's API call, child of the incoming context (or the root of a new trace), from
its first attempt to its outcome; each failed attempt is an `attempt failed` event on it.
The call and the outputs then carry that span's context. Spans hold the command type, outcome,
HTTP status, attempt count and the record's coordinates; never session or profile ids, nor
bodies, which are customer data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from bridge import __version__
from bridge.errors import ApiError, ConfigError
from bridge.talon.addressing import TRACE_HEADERS, TraceHeaders

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Span, Tracer

    from bridge.dlq import DeadLetter

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "Traced",
    "Tracing",
    "from_environment",
    "http_headers",
    "output_headers",
]

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
_NAMES: Final = (TRACEPARENT, TRACESTATE)
# Version, trace id, parent id, flags; a later version may append fields (W3C Trace Context).
_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-.*)?")
_MAX_TRACEPARENT: Final = 512
_MAX_TRACESTATE: Final = 512


class _Record(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def headers(self) -> list[tuple[str, bytes]] | None: ...


class Traced(Protocol):
    """What tracing reads of a record on its way (the worker's `Work`); `trace` is its own."""

    trace: Any

    @property
    def rec(self) -> _Record: ...
    @property
    def attempts(self) -> int: ...
    @property
    def command_type(self) -> str: ...


def _valid_traceparent(value: str) -> bool:
    if len(value) > _MAX_TRACEPARENT or not value.isascii():
        return False
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return False
    version, trace_id, parent_id, more = match.groups()
    return (
        version != "ff"
        and not (version == "00" and more)
        and trace_id != "0" * 32
        and parent_id != "0" * 16
    )


def http_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> TraceHeaders:
    """The record's W3C trace context as HTTP headers; () when it has none or an invalid one.

    A malformed `traceparent` is dropped, with its `tracestate` (which means nothing without
    it); a `tracestate` that cannot travel in a header is dropped alone.
    """
    if not headers:
        return ()
    parent: str | None = None
    state: str | None = None
    for name, value in headers:
        if value is None or name not in _NAMES:
            continue
        text = value.decode("ascii", errors="replace")
        if name == TRACEPARENT:
            parent = text
        else:
            state = text
    if parent is None or not _valid_traceparent(parent):
        return ()
    if state is None or len(state) > _MAX_TRACESTATE or not state.isascii():
        return ((TRACEPARENT, parent),)
    if not state.isprintable():
        return ((TRACEPARENT, parent),)
    return ((TRACEPARENT, parent), (TRACESTATE, state))


def output_headers(
    headers: Iterable[tuple[str, Any]] | None, trace: TraceHeaders
) -> list[tuple[str, str | bytes | None]]:
    """`headers` with their trace context replaced by `trace`."""
    kept = [(k, v) for k, v in headers or () if k not in _NAMES]
    return [*kept, *((k, v.encode()) for k, v in trace)]


class Tracing:
    """Tracing off: a valid incoming trace context goes on unchanged; no spans.

    The pipeline calls these hooks for every command: `calling` before each attempt of its
    API call, `failed` after a failed one, then `applied` or `dead_lettered` (or `dropped`,
    its partition revoked first) once.
    """

    enabled = False

    def calling(self, work: Traced) -> None:
        """Set the trace headers of the call about to start (for this task's context)."""
        TRACE_HEADERS.set(http_headers(work.rec.headers))

    def failed(self, work: Traced, exc: ApiError) -> None:
        """An attempt failed."""

    def applied(self, work: Traced, status: int) -> list[tuple[str, str | bytes | None]] | None:
        """The call went through with `status`: the effects record's headers."""
        trace = http_headers(work.rec.headers)
        return output_headers(None, trace) if trace else None

    def dead_lettered(
        self, work: Traced, letter: DeadLetter, headers: list[tuple[str, str | bytes | None]]
    ) -> list[tuple[str, str | bytes | None]]:
        """The command goes to the dead-letter topic with `headers` (the record's own among
        them): the headers to send."""
        return headers

    def dropped(self, work: Traced) -> None:
        """The command's partition was revoked while it waited to retry."""

    def close(self) -> None:
        """Send what is still buffered; called once the worker has stopped."""


class OtelTracing(Tracing):
    """Tracing on: a span per command's API call, exported by an OpenTelemetry SDK provider."""

    enabled = True

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self._tracer: Tracer = provider.get_tracer("talon-bridge", __version__)
        self._propagator = TraceContextTextMapPropagator()

    def _start(self, work: Traced) -> tuple[Span, TraceHeaders]:
        from opentelemetry.trace import SpanKind, set_span_in_context

        rec = work.rec
        incoming = http_headers(rec.headers)
        parent = self._propagator.extract(dict(incoming)) if incoming else None
        span = self._tracer.start_span(
            f"talon {work.command_type}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes={
                "talon_bridge.command.type": work.command_type,
                "messaging.system": "kafka",
                "messaging.destination.name": rec.topic,
                "messaging.destination.partition.id": str(rec.partition),
                "messaging.kafka.offset": rec.offset,
            },
        )
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, set_span_in_context(span))
        work.trace = traced = (span, tuple(carrier.items()))
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
        from opentelemetry.trace import StatusCode

        span: Span = work.trace[0]
        span.set_attribute("talon_bridge.outcome", outcome)
        span.set_attribute("talon_bridge.attempts", work.attempts)
        if status is not None:
            span.set_attribute("http.response.status_code", status)
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

    def close(self) -> None:
        self.provider.shutdown()


# OTEL_TRACES_SAMPLER values, as the OpenTelemetry SDK names them.
_SAMPLERS: Final = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


def _sampler(environ: Mapping[str, str]) -> Sampler:
    from opentelemetry.sdk.trace import sampling

    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if name not in _SAMPLERS:
        raise ConfigError("OTEL_TRACES_SAMPLER", f"must be one of {', '.join(_SAMPLERS)}")
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


def from_environment(environ: Mapping[str, str] | None = None) -> Tracing:
    """The tracing the standard `OTEL_*` variables ask for.

    `OTEL_TRACES_EXPORTER=otlp` switches spans on (OTLP over HTTP/protobuf); unset, `none`, or
    `OTEL_SDK_DISABLED=true` leaves them off. The exporter itself reads the
    `OTEL_EXPORTER_OTLP_*` and `OTEL_BSP_*` variables; the resource `OTEL_SERVICE_NAME` and
    `OTEL_RESOURCE_ATTRIBUTES`.

    Raises:
        ConfigError: a variable has a value the bridge cannot honour, or the SDK is missing.
    """
    env = os.environ if environ is None else environ
    exporters = {
        name.strip().lower()
        for name in env.get("OTEL_TRACES_EXPORTER", "none").split(",")
        if name.strip()
    }
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or exporters <= {"none"}:
        return Tracing()
    if exporters != {"otlp"}:
        raise ConfigError("OTEL_TRACES_EXPORTER", "must be otlp or none")
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = env.get(name, "").strip()
        if protocol:
            if protocol != "http/protobuf":
                raise ConfigError(name, "must be http/protobuf, the one protocol exported")
            break
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            "OTEL_TRACES_EXPORTER",
            "otlp needs the OpenTelemetry SDK: install talon-bridge[otlp] (the image has it)",
        ) from None
    sampler = _sampler(env)
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        # Neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES named the service.
        resource = resource.merge(Resource({"service.name": "talon-bridge"}))
    provider = TracerProvider(sampler=sampler, resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return OtelTracing(provider)
