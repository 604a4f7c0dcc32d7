"""Fault injection: the seeded decisions, and faults toggled at runtime over /_sim/faults."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from bridge.simulator.faults import FaultConfig, FaultConfigError, FaultInjector
from tests.support.simulator import Harness


def decisions(injector: FaultInjector, n: int, session: str | None = "s") -> list[str | None]:
    return [injector.decide(session) for _ in range(n)]


def test_same_seed_same_faults() -> None:
    cfg = FaultConfig(rate_429=0.2, rate_500=0.1, rate_hang=0.05, rate_reset=0.05)
    a = decisions(FaultInjector(cfg, seed=42), 500)
    b = decisions(FaultInjector(cfg, seed=42), 500)
    c = decisions(FaultInjector(cfg, seed=43), 500)
    assert a == b
    assert a != c
    assert {"429", "500", "hang", "reset", None} == set(a)


def test_latency_settings_do_not_shift_the_fault_sequence() -> None:
    cfg = FaultConfig(rate_503=0.3)
    plain = FaultInjector(cfg, seed=1)
    slow = FaultInjector(FaultConfig(rate_503=0.3, latency_ms=5, latency_jitter_ms=2), seed=1)
    got = []
    for _ in range(200):
        slow.latency_s()
        got.append(slow.decide("s"))
    assert got == decisions(plain, 200)


def test_rates_zero_and_one() -> None:
    assert set(decisions(FaultInjector(FaultConfig(), seed=1), 100)) == {None}
    assert set(decisions(FaultInjector(FaultConfig(rate_502=1.0), seed=1), 100)) == {"502"}


def test_precedence_of_switches() -> None:
    cfg = FaultConfig(rate_429=1.0, fail_sessions=["bad"])
    inj = FaultInjector(cfg, seed=1)
    assert inj.decide("bad") == "fail_session"
    assert inj.decide("good") == "429"
    assert inj.decide(None) == "429"
    inj.configure(FaultConfig(outage=True, fail_sessions=["bad"]))
    assert inj.decide("bad") == "outage"
    inj.configure(FaultConfig(outage=True, auth_failure=True))
    assert inj.decide("bad") == "auth_failure"


def test_latency_distributions() -> None:
    uniform = FaultInjector(FaultConfig(latency_ms=20, latency_jitter_ms=5), seed=3)
    samples = [uniform.latency_s() for _ in range(500)]
    assert min(samples) >= 0.015
    assert max(samples) <= 0.025
    lognormal = FaultInjector(
        FaultConfig(latency_ms=20, latency_jitter_ms=10, latency_distribution="lognormal"), seed=3
    )
    samples = [lognormal.latency_s() for _ in range(2000)]
    assert min(samples) > 0
    assert sum(samples) / len(samples) == pytest.approx(0.020, rel=0.15)
    tail = FaultInjector(
        FaultConfig(latency_ms=1, latency_tail_rate=1.0, latency_tail_ms=99), seed=3
    )
    assert tail.latency_s() == pytest.approx(0.1)
    assert FaultInjector(FaultConfig(), seed=3).latency_s() == 0.0


@pytest.mark.parametrize(
    "changes",
    [
        {"rate_429": 1.5},
        {"rate_429": 0.6, "rate_500": 0.6},
        {"rate_500": "0.1"},
        {"retry_after_s": 1.5},
        {"hang_s": 0},
        {"latency_ms": -1},
        {"latency_distribution": "pareto"},
        {"outage": 1},
        {"fail_sessions": "s1"},
        {"no_such_setting": 1},
    ],
)
def test_invalid_configurations_are_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(FaultConfigError):
        FaultConfig().merged(changes)


async def test_429_with_retry_after_and_nothing_applied(sim: Harness) -> None:
    doc = await sim.admin("PATCH", "/_sim/faults", {"rate_429": 1.0, "retry_after_s": 3})
    assert doc["rate_429"] == 1.0
    reply = await sim.update("s", {"profileId": "p"})
    assert reply.status == 429
    assert reply.headers["Retry-After"] == "3"
    assert reply.json["StatusCode"] == 429
    assert await sim.journal("s") == []
    stats = await sim.stats()
    assert stats["faults_injected"]["429"] == 1
    assert stats["applied"] == 0
    await sim.admin("PATCH", "/_sim/faults", {"rate_429": 0.0})
    assert (await sim.update("s", {"profileId": "p"})).status == 200


@pytest.mark.parametrize(
    ("setting", "status"), [("rate_500", 500), ("rate_502", 502), ("rate_503", 503)]
)
async def test_server_errors(sim: Harness, setting: str, status: int) -> None:
    await sim.admin("PATCH", "/_sim/faults", {setting: 1.0})
    reply = await sim.event({"type": "t", "profileId": "p"})
    assert reply.status == status
    assert ("Retry-After" in reply.headers) == (status == 503)
    assert (await sim.stats())["faults_injected"][str(status)] == 1


async def test_outage_until_switched_off(sim: Harness) -> None:
    await sim.admin("PATCH", "/_sim/faults", {"outage": True})
    for _ in range(3):
        reply = await sim.update("s", {})
        assert reply.status == 503
        assert "Retry-After" in reply.headers
    assert (await sim.stats())["faults_injected"]["outage"] == 3
    await sim.admin("PATCH", "/_sim/faults", {"outage": False})
    assert (await sim.update("s", {})).status == 200


async def test_auth_failure_switch(sim: Harness) -> None:
    await sim.admin("PATCH", "/_sim/faults", {"auth_failure": True})
    reply = await sim.update("s", {})
    assert reply.status == 401
    assert reply.json["message"] == "Unauthorized - Invalid API key"
    await sim.admin("PATCH", "/_sim/faults", {"auth_failure": False})
    assert (await sim.update("s", {})).status == 200


async def test_fail_sessions_only_hits_those_sessions(sim: Harness) -> None:
    await sim.admin("PATCH", "/_sim/faults", {"fail_sessions": ["broken/1"]})
    assert (await sim.update("broken/1", {})).status == 500
    assert (await sim.give_back("broken/1", [{"position": 0, "quantity": 1}])).status == 500
    assert (await sim.update("fine", {})).status == 200
    assert (await sim.stats())["faults_injected"]["fail_session"] == 2


async def test_hang_causes_a_client_read_timeout(sim: Harness) -> None:
    await sim.admin("PATCH", "/_sim/faults", {"rate_hang": 1.0, "hang_s": 30})
    short = aiohttp.ClientTimeout(total=None, sock_read=0.2)
    with pytest.raises(asyncio.TimeoutError):
        await sim.call("PUT", "/v2/customer_sessions/s", {"customerSession": {}}, timeout=short)
    assert (await sim.stats())["faults_injected"]["hang"] == 1
    assert await sim.journal("s") == []


async def test_hang_ends_with_504_after_hang_s(sim: Harness) -> None:
    await sim.admin("PATCH", "/_sim/faults", {"rate_hang": 1.0, "hang_s": 0.05})
    reply = await sim.update("s", {})
    assert reply.status == 504
    assert await sim.journal("s") == []


async def test_reset_drops_the_connection(sim: Harness) -> None:
    await sim.admin("PATCH", "/_sim/faults", {"rate_reset": 1.0})
    # A POST: aiohttp resends an idempotent PUT once when a reused connection drops.
    with pytest.raises(aiohttp.ClientError):
        await sim.event({"type": "t", "profileId": "p"})
    doc = await sim.admin("GET", "/_sim/journal?profile=p")
    assert doc["entries"] == []
    assert (await sim.stats())["faults_injected"]["reset"] == 1


async def test_lost_response_applies_then_times_out(sim: Harness) -> None:
    await sim.admin("PATCH", "/_sim/faults", {"rate_lost_response": 1.0, "hang_s": 30})
    short = aiohttp.ClientTimeout(total=None, sock_read=0.2)
    headers = {"Idempotency-Key": "k", "Content-Type": "application/json"}
    with pytest.raises(asyncio.TimeoutError):
        await sim.call(
            "PUT",
            "/v2/customer_sessions/s",
            {"customerSession": {}},
            headers=headers,
            timeout=short,
        )
    # The request took effect although the client never saw the answer...
    assert [e["seq"] for e in await sim.journal("s")] == [1]
    await sim.admin("PATCH", "/_sim/faults", {"rate_lost_response": 0.0})
    # ...and a retry with the same key is answered from the store, not applied again.
    retry = await sim.update("s", {}, headers={"Idempotency-Key": "k"})
    assert retry.status == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert len(await sim.journal("s")) == 1


async def test_latency_holds_the_session(make_sim: Any) -> None:
    sim: Harness = await make_sim(faults=FaultConfig(latency_ms=1000))
    injector = sim.sim.faults
    drawn = asyncio.Event()
    draw = injector.latency_s

    def latency_s() -> float:
        # Drawn right after the session is taken, before the simulated processing time.
        drawn.set()
        return draw()

    injector.latency_s = latency_s  # type: ignore[method-assign]
    first = asyncio.create_task(sim.update("s", {}))
    await drawn.wait()
    busy = await sim.update("s", {})
    assert busy.status == 409
    assert (await first).status == 200
    assert len(await sim.journal("s")) == 1


async def test_put_replaces_and_get_reads_the_configuration(sim: Harness) -> None:
    await sim.admin("PATCH", "/_sim/faults", {"rate_500": 0.5, "fail_sessions": ["x"]})
    doc = await sim.admin("PUT", "/_sim/faults", {"rate_429": 0.1, "seed": 99})
    assert doc["rate_429"] == 0.1
    assert doc["rate_500"] == 0.0
    assert doc["fail_sessions"] == []
    assert doc["seed"] == 99
    assert (await sim.admin("GET", "/_sim/faults")) == doc
    bad = await sim.call("PATCH", "/_sim/faults", {"rate_429": 2}, key=None)
    assert bad.status == 400
    assert "rate_429" in bad.json["message"]
    assert (await sim.call("PATCH", "/_sim/faults", raw=b"{", key=None)).status == 400
    assert (await sim.call("DELETE", "/_sim/faults", key=None)).status == 405


async def test_reset_clears_state_counters_and_faults(sim: Harness) -> None:
    await sim.update("s", {"profileId": "p"}, headers={"Idempotency-Key": "k"})
    await sim.admin("PATCH", "/_sim/faults", {"outage": True})
    await sim.update("s", {})
    assert (await sim.admin("POST", "/_sim/reset")) == {"status": "reset"}
    stats = await sim.stats()
    assert stats["requests"] == 0
    assert stats["faults_injected"]["outage"] == 0
    assert stats["sessions"] == 0
    assert stats["idempotency_keys"] == 0
    assert (await sim.admin("GET", "/_sim/faults"))["outage"] is False
    assert await sim.admin("GET", "/_sim/journal") == {"sessions": {}, "profiles": {}}
    assert (await sim.get("s")).status == 404
    # The key is forgotten too: the same request is applied afresh.
    again = await sim.update("s", {"profileId": "p"}, headers={"Idempotency-Key": "k"})
    assert "Idempotent-Replayed" not in again.headers


def test_token_bucket_spends_its_burst_then_refills_at_the_rate() -> None:
    clock = [0.0]
    inj = FaultInjector(FaultConfig(rate_limit_rps=10, rate_limit_burst=3), clock=lambda: clock[0])
    assert decisions(inj, 4) == [None, None, None, "rate_limit"]
    assert inj.retry_after_s("rate_limit") == 1  # 0.1 s, in whole seconds
    clock[0] = 0.1
    assert decisions(inj, 2) == [None, "rate_limit"]
    clock[0] = 10.0
    assert decisions(inj, 4) == [None, None, None, "rate_limit"]
    inj.configure(FaultConfig(rate_limit_rps=0.5, rate_limit_burst=3))
    assert inj.decide("s") == "rate_limit"
    assert inj.retry_after_s("rate_limit") == 2
    inj.configure(FaultConfig())
    assert decisions(inj, 10) == [None] * 10


async def test_rate_limit_answers_429_and_counts_early_retries(sim: Harness) -> None:
    await sim.admin("PATCH", "/_sim/faults", {"rate_limit_rps": 0.01, "rate_limit_burst": 1})
    first = {"X-Talon-Bridge-Event-Id": "e1"}
    assert (await sim.update("s", {"profileId": "p"}, headers=first)).status == 200
    reply = await sim.update("s", {"profileId": "p"}, headers={"X-Talon-Bridge-Event-Id": "e2"})
    assert reply.status == 429
    assert reply.json == {"message": "Too many requests", "StatusCode": 429}
    assert int(reply.headers["Retry-After"]) >= 1
    # Back at once: before its Retry-After.
    again = await sim.update("s", {"profileId": "p"}, headers={"X-Talon-Bridge-Event-Id": "e2"})
    assert again.status == 429
    other = await sim.update("s", {"profileId": "p"}, headers={"X-Talon-Bridge-Event-Id": "e3"})
    assert other.status == 429
    stats = await sim.stats()
    assert stats["early_retries"] == 1
    assert stats["faults_injected"]["rate_limit"] == 3
    assert stats["applied"] == 1


def test_rate_limit_settings_are_checked() -> None:
    with pytest.raises(FaultConfigError, match="rate_limit_rps"):
        FaultConfig.from_json({"rate_limit_rps": -1})
    assert FaultConfig.from_json({"rate_limit_rps": 240}).rate_limit_rps == 240
    with pytest.raises(FaultConfigError, match="rate_limit_burst"):
        FaultConfig.from_json({"rate_limit_burst": 0})
