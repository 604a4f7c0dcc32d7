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
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

from bridge.errors import ApiError, ConfigError
from bridge.talon.addressing import TRACE_HEADERS, TraceHeaders
from bridge.types import ConsumedRecord

if TYPE_CHECKING:
    from bridge.dlq import DeadLetter

__all__ = [
    "MAX_TRACE_HEADER",
    "TRACEPARENT",
    "TRACESTATE",
    "TRACE_NAMES",
    "SpanCounter",
    "Traced",
    "Tracing",
    "from_environment",
    "http_headers",
    "output_headers",
]

# Called with ("exported" or "failed", number of spans) after each export.
SpanCounter: TypeAlias = Callable[[str, int], None]

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
TRACE_NAMES: Final = frozenset({TRACEPARENT, TRACESTATE})
# Longer trace headers are dropped (W3C Trace Context allows a tracestate of 512 characters).
MAX_TRACE_HEADER: Final = 512
# Version, trace id, parent id, flags; a later version may append fields (W3C Trace Context),
# in printable ASCII here, since the value goes into an HTTP header.
_TRACEPARENT: Final = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(?:-[ -~]*)?")
_VERSION_00_LENGTH: Final = 55
_ZERO_TRACE_ID: Final = "0" * 32
_ZERO_PARENT_ID: Final = "0" * 16


class Traced(Protocol):
    """What tracing reads of a record on its way (the worker's `Work`); `trace` is its own."""

    trace: Any

    @property
    def rec(self) -> ConsumedRecord: ...
    @property
    def attempts(self) -> int: ...
    @property
    def command_type(self) -> str: ...


def _valid_traceparent(value: str) -> bool:
    if len(value) > MAX_TRACE_HEADER or _TRACEPARENT.fullmatch(value) is None:
        return False
    version = value[:2]
    return (
        version != "ff"
        and (version != "00" or len(value) == _VERSION_00_LENGTH)
        and value[3:35] != _ZERO_TRACE_ID
        and value[36:52] != _ZERO_PARENT_ID
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
        if value is None or name not in TRACE_NAMES:
            continue
        text = value.decode("ascii", errors="replace")
        if name == TRACEPARENT:
            parent = text
        else:
            state = text
    if parent is None or not _valid_traceparent(parent):
        return ()
    if (
        state is None
        or len(state) > MAX_TRACE_HEADER
        or not (state.isascii() and state.isprintable())
    ):
        return ((TRACEPARENT, parent),)
    return ((TRACEPARENT, parent), (TRACESTATE, state))


def output_headers(
    headers: Iterable[tuple[str, Any]] | None, trace: TraceHeaders
) -> list[tuple[str, str | bytes | None]]:
    """`headers` with their trace context replaced by `trace`."""
    kept = [(k, v) for k, v in headers or () if k not in TRACE_NAMES]
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
        trace = work.trace
        if trace is None:
            trace = work.trace = http_headers(work.rec.headers)  # once, retries reuse it
        if trace or TRACE_HEADERS.get():
            TRACE_HEADERS.set(trace)

    def failed(self, work: Traced, exc: ApiError) -> None:
        """An attempt failed."""

    def applied(self, work: Traced, status: int) -> list[tuple[str, str | bytes | None]] | None:
        """The call went through with `status`: the effects record's headers."""
        trace = work.trace
        return output_headers(None, trace) if trace else None

    def dead_lettered(
        self, work: Traced, letter: DeadLetter, headers: list[tuple[str, str | bytes | None]]
    ) -> list[tuple[str, str | bytes | None]]:
        """The command goes to the dead-letter topic with `headers` (the record's own among
        them): the headers to send."""
        return headers

    def dropped(self, work: Traced) -> None:
        """The command's partition was revoked while it waited to retry."""

    def count_spans(self, counter: SpanCounter) -> None:
        """Report how each export of spans went to `counter`."""

    def close(self) -> None:
        """Send what is still buffered; called once the worker has stopped."""


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
        from bridge.tracing.otel import build
    except ImportError:
        raise ConfigError(
            "OTEL_TRACES_EXPORTER",
            "otlp needs the OpenTelemetry SDK: install talon-bridge[otlp] (the image has it)",
        ) from None
    return build(env)
