"""CPU the tracing hooks add per command, measured in one process without Kafka or HTTP.

Each command goes through what the pipeline and the client do for it: `calling` before the
call, the client adding the trace headers to its request, then `applied` for the effects
record's headers. Rows: tracing off with no headers, with other headers, with a
`traceparent`/`tracestate`; tracing on (a span per command, a batch span processor, an
exporter that drops the batches, so no network), sampled and sampled out. The best of
`--repeat` runs is taken, which is what the machine can do when it is least disturbed.

Run: ``.venv/bin/python -m benchmarks.tracing [--commands 50000]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from bridge.kafka.records import InputRecord
from bridge.talon.addressing import TRACE_HEADERS
from bridge.tracing import Tracing
from bridge.tracing.otel import OtelTracing

PARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UNSAMPLED = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"


class Item:
    """What the hooks read of the worker's `Work`."""

    __slots__ = ("attempts", "command_type", "rec", "trace")

    def __init__(self, headers: list[tuple[str, bytes]] | None) -> None:
        self.rec = InputRecord("talon.commands", 3, 18842, b"s", b"v", headers, 0)
        self.trace: Any = None
        self.attempts = 1
        self.command_type = "update_customer_session"


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _per_command(
    tracing: Tracing,
    headers: list[tuple[str, bytes]] | None,
    n: int,
    repeat: int,
    flush: Callable[[], object] = lambda: None,
) -> float:
    best = float("inf")
    for _ in range(repeat):
        items = [Item(headers) for _ in range(n)]
        request: list[tuple[str, str]] = []
        started = time.process_time()
        for item in items:
            tracing.calling(item)
            request.extend(TRACE_HEADERS.get())
            tracing.applied(item, 200)
            request.clear()
        flush()  # the export thread's share counts too
        best = min(best, (time.process_time() - started) / n)
    return best


def _bare(n: int, repeat: int) -> float:
    """The loop alone, with no hook: subtracted from each row."""
    best = float("inf")
    for _ in range(repeat):
        items = [Item(None) for _ in range(n)]
        started = time.process_time()
        for _item in items:
            pass
        best = min(best, (time.process_time() - started) / n)
    return best


def _on(sampler: sampling.Sampler, n: int) -> tuple[OtelTracing, TracerProvider]:
    provider = TracerProvider(sampler=sampler)
    # A queue that holds every span: none is dropped, each is exported.
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=n + 1))
    return OtelTracing(provider), provider


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, repeat = args.commands, args.repeat
    traced = [("traceparent", PARENT), ("tracestate", b"vendor=opaque")]
    other = [("source", b"checkout"), ("schema", b"v3")]
    bare = _bare(n, repeat)
    rows: list[tuple[str, float]] = [
        ("off, no headers", _per_command(Tracing(), None, n, repeat)),
        ("off, other headers", _per_command(Tracing(), other, n, repeat)),
        ("off, traceparent + tracestate", _per_command(Tracing(), traced, n, repeat)),
    ]
    for label, headers in (
        ("on, traceparent + tracestate, sampled", traced),
        ("on, no headers (new trace), sampled", None),
        ("on, sampled out by the producer", [("traceparent", UNSAMPLED)]),
    ):
        sampler = sampling.DEFAULT_ON
        tracing, provider = _on(sampler, n)
        rows.append((label, _per_command(tracing, headers, n, repeat, provider.force_flush)))
        provider.shutdown()
    print(f"{n:,} commands, best of {repeat}; CPU microseconds per command, loop subtracted")
    print("| tracing | µs per command |")
    print("|---|---:|")
    for label, seconds in rows:
        print(f"| {label} | {(seconds - bare) * 1e6:.2f} |")


if __name__ == "__main__":
    main()
