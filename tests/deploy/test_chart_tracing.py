"""The chart's tracing values: the worker's OTEL_* variables, which the worker honours."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from bridge.tracing import from_environment
from bridge.tracing.otel import OtelTracing
from tests.support.chart import Docs, container, one

Render = Callable[..., Docs]
RenderResult = Callable[..., subprocess.CompletedProcess[str]]


def _otel(docs: Docs) -> dict[str, str]:
    env = container(one(docs, "Deployment")).get("env", [])
    return {e["name"]: e["value"] for e in env if e["name"].startswith("OTEL_")}


def test_tracing_is_off_by_default(render: Render) -> None:
    assert _otel(render()) == {}


def test_tracing_sets_the_otel_variables_the_worker_honours(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    otel = _otel(render(None, ("ci/full-values.yaml",)))
    assert otel == {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4318",
        "OTEL_SERVICE_NAME": "talon-bridge",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod",
    }
    for name, value in otel.items():
        monkeypatch.setenv(name, value)
    tracing = from_environment()
    assert isinstance(tracing, OtelTracing)
    assert tracing.provider.resource.attributes["deployment.environment"] == "prod"
    tracing.close()


def test_the_users_env_comes_after_the_charts_and_so_wins(render: Render) -> None:
    values = {
        "tracing": {"enabled": True},
        "env": [{"name": "OTEL_SERVICE_NAME", "value": "checkout"}],
    }
    env = container(one(render(values), "Deployment"))["env"]
    names = [e["name"] for e in env]
    assert names.index("OTEL_SERVICE_NAME") < len(names) - 1
    assert env[-1] == {"name": "OTEL_SERVICE_NAME", "value": "checkout"}


@pytest.mark.parametrize(
    ("tracing", "message"),
    [
        ({"sampler": "sometimes"}, "/tracing/sampler"),
        ({"samplerArg": "1.5"}, "/tracing/samplerArg"),
        ({"endpoint": "otel-collector:4318"}, "/tracing/endpoint"),
        ({"resourceAttributes": {"a": "b,c=d"}}, "/tracing/resourceAttributes"),
        ({"exporter": "jaeger"}, "exporter"),
    ],
)
def test_schema_rejects_tracing_values_the_worker_would_refuse(
    render_result: RenderResult, tracing: dict[str, Any], message: str
) -> None:
    result = render_result({"tracing": {"enabled": True, **tracing}})
    assert result.returncode != 0
    assert "don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr
