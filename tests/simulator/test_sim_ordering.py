"""The parallel-request rule: one request per session (or per profile for events) at a time."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson

from bridge.simulator.faults import FaultConfig
from bridge.simulator.journal import Journal, JournalEntry, RequestMeta
from tests.support.simulator import Harness, sha

SESSION_409 = {
    "message": "Too many requests are updating this session at the same time",
    "errors": [],
    "StatusCode": 409,
}
PROFILE_409 = {
    "message": "Too many requests are updating this profile at the same time",
    "errors": [],
    "StatusCode": 409,
}


class Gate:
    """A hold hook that freezes the first request on one key until released."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, kind: str, key: str) -> None:
        if key == self.key and not self.entered.is_set():
            self.entered.set()
            await self.release.wait()


async def test_request_for_a_busy_session_gets_409_and_is_not_applied(sim: Harness) -> None:
    gate = Gate("s1")
    sim.sim.hold = gate
    first = asyncio.create_task(sim.update("s1", {"profileId": "p1", "cartItems": []}))
    await gate.entered.wait()

    second = await sim.update("s1", {"profileId": "p1", "attributes": {"late": 1}})
    assert second.status == 409
    assert second.json == SESSION_409
    returned = await sim.give_back("s1", [{"position": 0, "quantity": 1}])
    assert returned.status == 409
    # Another session is independent, and updates do not lock the profile: events go through.
    assert (await sim.update("s2", {"profileId": "p1"})).status == 200
    assert (await sim.event({"type": "visit", "profileId": "p1"})).status == 204

    gate.release.set()
    assert (await first).status == 200
    entries = await sim.journal("s1")
    assert [e["seq"] for e in entries] == [1]
    assert entries[0]["bodySha256"] != ""
    stats = await sim.stats()
    assert stats["conflicts_409"] == 2
    assert stats["conflicts_by_kind"]["session"] == 2
    assert stats["by_operation"]["update"]["conflicts_409"] == 1
    assert stats["by_operation"]["return"]["conflicts_409"] == 1


async def test_event_for_a_busy_profile_gets_409(sim: Harness) -> None:
    gate = Gate("p1")
    sim.sim.hold = gate
    first = asyncio.create_task(sim.event({"type": "visit", "profileId": "p1"}))
    await gate.entered.wait()
    second = await sim.event({"type": "visit", "profileId": "p1"}, silent="no")
    assert second.status == 409
    assert second.json == PROFILE_409
    # A session update of the same profile is not blocked by the event.
    assert (await sim.update("s9", {"profileId": "p1"})).status == 200
    gate.release.set()
    assert (await first).status == 204
    doc = await sim.admin("GET", "/_sim/journal?profile=p1")
    assert [e["seq"] for e in doc["entries"]] == [1]


async def test_fifty_clients_hammering_one_session(make_sim: Any) -> None:
    sim: Harness = await make_sim(faults=FaultConfig(latency_ms=1.0, latency_jitter_ms=1.0))
    saw_conflict = asyncio.Event()
    held_once = False

    async def hold(kind: str, key: str) -> None:
        # The first applied request waits until some client has been turned away, so the
        # test always exercises a conflict, whatever the scheduling.
        nonlocal held_once
        if not held_once:
            held_once = True
            await saw_conflict.wait()

    sim.sim.hold = hold
    applied: dict[str, str] = {}  # body sha -> event id
    statuses: list[int] = []

    async def client(i: int) -> None:
        for j in range(8):
            event_id = f"evt-{i}-{j}"
            cs = {"profileId": "p1", "attributes": {"client": i, "n": j}}
            body = orjson.dumps({"customerSession": cs})
            reply = await sim.call(
                "PUT",
                "/v2/customer_sessions/hot",
                raw=body,
                headers={"X-Talon-Bridge-Event-Id": event_id},
            )
            statuses.append(reply.status)
            if reply.status == 409:
                assert reply.json == SESSION_409
                saw_conflict.set()
            else:
                assert reply.status == 200, reply.raw
                applied[sha(body)] = event_id

    await asyncio.gather(*(client(i) for i in range(50)))

    assert statuses.count(409) > 0
    assert statuses.count(200) + statuses.count(409) == 400
    entries = await sim.journal("hot")
    # Contiguous sequence, one entry per 200, each entry is exactly one request's body.
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert [e["updateCount"] for e in entries] == list(range(1, len(entries) + 1))
    assert len(entries) == statuses.count(200)
    assert {e["bodySha256"]: e["eventId"] for e in entries} == applied
    # No two applied requests overlapped: each starts after the previous one was applied.
    for before, after in itertools.pairwise(entries):
        assert after["acquiredNs"] >= before["appliedNs"]
    stats = await sim.stats()
    assert stats["max_concurrency_per_key"] == 1
    assert stats["conflicts_409"] == statuses.count(409)
    assert stats["applied"] == statuses.count(200)
    assert stats["applied_event_ids_repeated"] == 0
    assert stats["in_flight"] == 0
    final = await sim.get("hot")
    last_applied = entries[-1]["eventId"]
    i, j = (int(x) for x in last_applied.split("-")[1:])
    assert final.json["customerSession"]["attributes"] == {"client": i, "n": j}


async def test_twenty_clients_hammering_one_profile(sim: Harness) -> None:
    statuses: list[int] = []

    async def client(i: int) -> None:
        for j in range(5):
            reply = await sim.event(
                {"type": "visit", "profileId": "hot", "attributes": {"i": i, "j": j}},
                headers={"X-Talon-Bridge-Event-Id": f"e{i}-{j}"},
            )
            statuses.append(reply.status)
            if reply.status == 409:
                assert reply.json == PROFILE_409

    await asyncio.gather(*(client(i) for i in range(20)))
    doc = await sim.admin("GET", "/_sim/journal?profile=hot")
    entries = doc["entries"]
    assert len(entries) == statuses.count(204)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert len({e["eventId"] for e in entries}) == len(entries)
    for before, after in itertools.pairwise(entries):
        assert after["acquiredNs"] >= before["appliedNs"]
    assert (await sim.stats())["max_concurrency_per_key"] == 1


async def test_repeated_event_ids_are_counted(sim: Harness) -> None:
    for _ in range(3):
        reply = await sim.update("s", {"profileId": "p"}, headers={"X-Talon-Bridge-Event-Id": "e1"})
        assert reply.status == 200
    await sim.update("s", {"profileId": "p"}, headers={"X-Talon-Bridge-Event-Id": "e2"})
    stats = await sim.stats()
    assert stats["applied_event_ids_repeated"] == 1
    assert stats["repeated_event_ids"] == {"e1": 3}
    assert [e["eventId"] for e in await sim.journal("s")] == ["e1", "e1", "e1", "e2"]


def test_journal_keeps_at_most_its_limit() -> None:
    journal = Journal(limit=3)
    for key in ("a", "a", "b", "a"):
        entry = JournalEntry(
            seq=journal.next_seq("session", key),
            operation="update",
            meta=RequestMeta(),
            applied_ns=0,
            time="t",
            effect_types=(),
        )
        journal.append("session", key, entry)
    assert len(journal) == 3
    assert journal.dropped == 1
    assert [e["seq"] for e in journal.entries("session", "a")] == [2, 3]
    assert [e["seq"] for e in journal.entries("session", "b")] == [1]
    assert set(journal.dump()) == {"sessions", "profiles"}
