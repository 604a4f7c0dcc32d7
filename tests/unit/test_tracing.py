"""The W3C trace context headers, and the tracing the `OTEL_*` variables ask for."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, get_current_span, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry

from bridge.cli import main
from bridge.errors import ConfigError
from bridge.metrics import Metrics
from bridge.tracing import Tracing, from_environment, http_headers, output_headers
from bridge.tracing.otel import CountingExporter, OtelTracing, _headers, _parent

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "vendor=opaque,other=1"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, ()),
        ([], ()),
        ([("other", b"x")], ()),
        ([("traceparent", PARENT.encode())], (("traceparent", PARENT),)),
        (
            [("tracestate", STATE.encode()), ("traceparent", PARENT.encode())],
            (("traceparent", PARENT), ("tracestate", STATE)),
        ),
        # A later version may carry more fields; version 00 may not.
        (
            [("traceparent", b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-ext")],
            (("traceparent", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-ext"),),
        ),
    ],
)
def test_the_trace_context_is_read_from_the_headers(
    headers: list[tuple[str, bytes]] | None, expected: tuple[tuple[str, str], ...]
) -> None:
    assert http_headers(headers) == expected


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"garbage",
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-ext",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX-Injected: 1",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\xff",
        b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-\x01",
        b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + b"x" * 600,
    ],
)
def test_a_malformed_traceparent_is_dropped_with_its_tracestate(value: bytes) -> None:
    assert http_headers([("traceparent", value), ("tracestate", STATE.encode())]) == ()


@pytest.mark.parametrize("state", [b"a=1\r\nX-Injected: 1", "a=\u00e9".encode(), b"a=" * 300])
def test_a_tracestate_that_cannot_travel_is_dropped_alone(state: bytes) -> None:
    got = http_headers([("traceparent", PARENT.encode()), ("tracestate", state)])
    assert got == (("traceparent", PARENT),)


def test_outputs_get_the_trace_context_in_place_of_the_records_own() -> None:
    own = [("traceparent", b"old"), ("a", b"1"), ("tracestate", b"old"), ("b", b"2")]
    new = (("traceparent", PARENT), ("tracestate", STATE))
    assert output_headers(own, new) == [
        ("a", b"1"),
        ("b", b"2"),
        ("traceparent", PARENT.encode()),
        ("tracestate", STATE.encode()),
    ]
    assert output_headers(None, ()) == []


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_tracing_is_off_unless_an_exporter_is_named(env: dict[str, str]) -> None:
    tracing = from_environment(env)
    assert type(tracing) is Tracing and not tracing.enabled


def test_tracing_off_loads_no_opentelemetry_at_all() -> None:
    code = (
        "import sys; from bridge.tracing import from_environment; "
        "from bridge.worker import pipeline; from_environment({}); "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_otlp_switches_spans_on_with_the_bridge_as_the_default_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    tracing = from_environment({"OTEL_TRACES_EXPORTER": "otlp"})
    assert isinstance(tracing, OtelTracing) and tracing.enabled
    assert tracing.provider.resource.attributes["service.name"] == "talon-bridge"
    tracing.close()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout-bridge")
    named = from_environment({"OTEL_TRACES_EXPORTER": "otlp"})
    assert isinstance(named, OtelTracing)
    assert named.provider.resource.attributes["service.name"] == "checkout-bridge"
    named.close()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "sometimes"},
            "OTEL_TRACES_SAMPLER",
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "half",
            },
            "OTEL_TRACES_SAMPLER_ARG",
        ),
    ],
)
def test_a_value_the_bridge_cannot_honour_names_its_variable(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        from_environment(env)
    assert caught.value.setting == variable


def test_the_worker_exits_2_naming_the_otel_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BRIDGE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("BRIDGE_TALON_BASE_URL", "https://acme.talon.one/")
    monkeypatch.setenv("BRIDGE_TALON_API_KEY", "secret-key-123")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "OTEL_TRACES_EXPORTER" in err and "secret-key-123" not in err


class _Refusing(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE


def test_span_exports_are_counted_by_result() -> None:
    metrics = Metrics(CollectorRegistry())
    for inner, result in ((InMemorySpanExporter(), "exported"), (_Refusing(), "failed")):
        exporter = CountingExporter(inner)
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracing = OtelTracing(provider, exporter)
        tracing.count_spans(lambda r, n: metrics.trace_spans.labels(r).inc(n))
        for _ in range(3):
            provider.get_tracer("t").start_span("s").end()
        tracing.close()
        sample = metrics.registry.get_sample_value("bridge_trace_spans_total", {"result": result})
        assert sample == 3


@pytest.mark.parametrize(
    "incoming",
    [
        ((("traceparent", PARENT),)),
        (("traceparent", PARENT), ("tracestate", STATE)),
        (("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),),
    ],
)
def test_the_context_is_read_and_written_as_the_w3c_propagator_does(
    incoming: tuple[tuple[str, str], ...],
) -> None:
    propagator = TraceContextTextMapPropagator()
    ours = get_current_span(_parent(incoming)).get_span_context()
    theirs = get_current_span(propagator.extract(dict(incoming))).get_span_context()
    assert ours == theirs and ours.trace_state == theirs.trace_state
    carrier: dict[str, str] = {}
    propagator.inject(carrier, set_span_in_context(NonRecordingSpan(ours)))
    assert _headers(ours) == tuple(carrier.items()) == incoming
