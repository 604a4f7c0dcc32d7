"""The simulator as a real subprocess, and its command-line options."""

from __future__ import annotations

import argparse

import pytest
from talon_one import models as t1

from bridge.cli import build_parser
from bridge.errors import ConfigError
from bridge.simulator.cli import fault_config
from bridge.simulator.process import SimulatorProcess


def parse(*argv: str) -> argparse.Namespace:
    return build_parser("simulator").parse_args(["simulator", "--api-key", "k", *argv])


def test_subprocess_end_to_end() -> None:
    args = ["--event-type-effect", "signup", "--seed", "5", "--fail-session", "doomed"]
    with SimulatorProcess(api_key="proc-key", args=args) as sim:
        assert sim.running
        assert sim.base_url.startswith("http://127.0.0.1:")

        body = {"customerSession": {"profileId": "p", "cartItems": [{"sku": "A", "quantity": 1}]}}
        headers = {"X-Talon-Bridge-Event-Id": "e-1", "Idempotency-Key": "k-1"}
        first = sim.request("PUT", "/v2/customer_sessions/a%2Fb", body, headers=headers)
        assert first.status == 200
        assert first.headers["Content-Type"] == "application/json"
        assert t1.IntegrationStateV2.from_json(first.body.decode()) is not None
        again = sim.request("PUT", "/v2/customer_sessions/a%2Fb", body, headers=headers)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert sim.session("a/b").json()["customerSession"]["integrationId"] == "a/b"

        event = sim.request("POST", "/v2/events?silent=no", {"type": "signup", "profileId": "p"})
        assert [e["effectType"] for e in event.json()["effects"]] == ["customEffect"]
        assert sim.request("PUT", "/v2/customer_sessions/doomed", body).status == 500
        assert (
            sim.request(
                "PUT", "/v2/customer_sessions/x", body, headers={"Authorization": "no"}
            ).status
            == 401
        )

        entries = sim.journal(session="a/b")
        assert [(e["seq"], e["eventId"]) for e in entries] == [(1, "e-1")]
        assert len(sim.journal(profile="p")) == 1
        assert set(sim.journal()) == {"sessions", "profiles"}
        stats = sim.stats()
        assert stats["duplicates_suppressed"] == 1
        assert stats["faults_injected"]["fail_session"] == 1

        assert sim.set_faults(rate_429=1.0)["rate_429"] == 1.0
        limited = sim.request("PUT", "/v2/customer_sessions/y", body)
        assert (limited.status, limited.headers["Retry-After"]) == (429, "1")
        assert sim.replace_faults(latency_ms=1.0)["rate_429"] == 0.0
        assert sim.faults()["latency_ms"] == 1.0

        sim.reset()
        assert sim.stats()["requests"] == 0
        assert sim.faults()["fail_sessions"] == ["doomed"]
        assert sim.faults()["seed"] == 5
    assert not sim.running
    assert sim.stop() == 0
    assert "simulator stopped" in sim.stderr_tail
    assert "proc-key" not in sim.stderr_tail


def test_command_line_maps_to_the_fault_configuration() -> None:
    args = parse(
        "--latency-ms",
        "20",
        "--latency-jitter-ms",
        "5",
        "--rate-429",
        "0.05",
        "--retry-after-s",
        "2",
        "--rate-503",
        "0.01",
        "--rate-hang",
        "0.02",
        "--hang-s",
        "0",
        "--reject-attribute",
        "Tier",
        "--reject-attribute-prefix",
        "zz-",
    )
    cfg = fault_config(args)
    assert (cfg.latency_ms, cfg.latency_jitter_ms) == (20.0, 5.0)
    assert (cfg.rate_429, cfg.retry_after_s, cfg.rate_503, cfg.rate_hang) == (0.05, 2, 0.01, 0.02)
    assert cfg.hang_s is None
    assert cfg.reject_attributes == ["Tier"]
    assert cfg.reject_attribute_prefixes == ["zz-"]
    assert parse().port == 9000
    assert parse().access_log is False
    assert fault_config(parse()).reject_attribute_prefixes == ["x-undefined"]


def test_invalid_rates_are_configuration_errors() -> None:
    with pytest.raises(ConfigError):
        fault_config(parse("--rate-500", "0.7", "--rate-502", "0.7"))
