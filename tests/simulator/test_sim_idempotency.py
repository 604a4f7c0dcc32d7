"""Idempotency-Key: replays, mismatches, in-flight duplicates and expiry."""

from __future__ import annotations

import asyncio

from bridge.simulator.idempotency import IdempotencyStore
from tests.support.simulator import Harness


async def test_same_key_replays_without_applying_twice(sim: Harness) -> None:
    headers = {"Idempotency-Key": "k-1", "X-Talon-Bridge-Event-Id": "e-1"}
    cs = {"profileId": "p", "cartItems": [{"sku": "A", "quantity": 1, "price": 150}]}
    first = await sim.update("s", cs, headers=headers)
    second = await sim.update("s", cs, headers=headers)

    assert first.status == second.status == 200
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.raw == first.raw
    entries = await sim.journal("s")
    assert len(entries) == 1
    assert entries[0]["idempotencyKey"] == "k-1"
    assert entries[0]["eventId"] == "e-1"
    assert (await sim.get("s")).json["customerSession"]["updateCount"] == 1
    stats = await sim.stats()
    assert stats["duplicates_suppressed"] == 1
    assert stats["idempotency_keys_reused"] == 1
    assert stats["applied"] == 1
    assert stats["applied_event_ids_repeated"] == 0


async def test_key_reused_with_another_body_is_422(sim: Harness) -> None:
    headers = {"Idempotency-Key": "k-2"}
    assert (await sim.update("s", {"profileId": "p"}, headers=headers)).status == 200
    other = await sim.update("s", {"profileId": "q"}, headers=headers)
    assert other.status == 422
    assert other.json["errors"][0]["source"] == {"parameter": "Idempotency-Key"}
    # Same body on another session is another request too.
    assert (await sim.update("t", {"profileId": "p"}, headers=headers)).status == 422
    assert len(await sim.journal("s")) == 1
    stats = await sim.stats()
    assert stats["idempotency_mismatches_422"] == 2
    assert stats["idempotency_keys_reused"] == 2


async def test_key_in_flight_is_409(sim: Harness) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(kind: str, key: str) -> None:
        entered.set()
        await release.wait()

    sim.sim.hold = hold
    headers = {"Idempotency-Key": "k-3"}
    first = asyncio.create_task(sim.update("s", {"profileId": "p"}, headers=headers))
    await entered.wait()
    dup = await sim.update("s", {"profileId": "p"}, headers=headers)
    assert dup.status == 409
    assert dup.json["StatusCode"] == 409
    assert dup.json["errors"] == []
    release.set()
    assert (await first).status == 200
    stats = await sim.stats()
    assert stats["conflicts_by_kind"]["idempotency"] == 1
    assert stats["idempotency_keys_reused"] == 1


async def test_errors_are_not_stored_under_the_key(sim: Harness) -> None:
    headers = {"Idempotency-Key": "k-4"}
    bad = await sim.call("PUT", "/v2/customer_sessions/s", {"nope": 1}, headers=headers)
    assert bad.status == 400
    # The key stays usable, even with a corrected body.
    good = await sim.update("s", {"profileId": "p"}, headers=headers)
    assert good.status == 200
    assert "Idempotent-Replayed" not in good.headers
    assert (await sim.stats())["idempotency_keys_reused"] == 0


async def test_keys_work_for_events_and_returns(sim: Harness) -> None:
    ev = {"type": "visit", "profileId": "p"}
    for _ in range(2):
        reply = await sim.event(ev, headers={"Idempotency-Key": "ev-1"})
        assert reply.status == 204
        assert reply.raw == b""
    assert len((await sim.admin("GET", "/_sim/journal?profile=p"))["entries"]) == 1

    cs = {"profileId": "p", "state": "closed", "cartItems": [{"sku": "A", "quantity": 3}]}
    assert (await sim.update("s", cs)).status == 200
    ret = [{"position": 0, "quantity": 1}]
    a = await sim.give_back("s", ret, headers={"Idempotency-Key": "ret-1"})
    b = await sim.give_back("s", ret, headers={"Idempotency-Key": "ret-1"})
    assert a.raw == b.raw
    assert b.headers["Idempotent-Replayed"] == "true"
    line = (await sim.get("s")).json["customerSession"]["cartItems"][0]
    assert line["returnedQuantity"] == 1
    assert (await sim.stats())["duplicates_suppressed"] == 2


async def test_overlong_key_is_rejected(sim: Harness) -> None:
    reply = await sim.update("s", {}, headers={"Idempotency-Key": "k" * 256})
    assert reply.status == 400
    assert reply.json["errors"][0]["source"] == {"parameter": "Idempotency-Key"}


def test_stored_responses_expire_after_the_ttl() -> None:
    now = [0.0]
    store = IdempotencyStore(ttl_s=10.0, clock=lambda: now[0])
    assert store.begin("a", "fp").outcome == "new"
    store.complete("a", 200, b"{}")
    assert store.begin("a", "fp").outcome == "replay"
    assert store.begin("a", "other").outcome == "mismatch"
    now[0] = 10.5
    assert store.begin("b", "fp").outcome == "new"
    store.complete("b", 200, b"{}")  # purges "a"
    assert len(store) == 1
    assert store.begin("a", "other").outcome == "new"
    store.abandon("a")
    assert store.begin("a", "fp").outcome == "new"


def test_oldest_keys_are_evicted_past_the_cap() -> None:
    store = IdempotencyStore(max_keys=2)
    for key in ("a", "b", "c"):
        assert store.begin(key, "fp").outcome == "new"
        store.complete(key, 200, b"{}")
    assert len(store) == 2
    assert store.evicted == 1
    assert store.begin("a", "fp").outcome == "new"
    assert store.begin("c", "fp").outcome == "replay"
