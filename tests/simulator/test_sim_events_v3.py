"""trackEventV3 and getEventV3: an event is registered once per integrationId."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from bridge.simulator.rules import RuleConfig
from bridge.simulator.validation import EVENT_EXISTS
from tests.support.simulator import Harness

PROFILE_409 = {
    "message": "Too many requests are updating this profile at the same time",
    "errors": [],
    "StatusCode": 409,
}


def _event(integration_id: str, profile: str = "p1", **more: Any) -> dict[str, Any]:
    return {"type": "shipped", "profileId": profile, "integrationId": integration_id, **more}


async def _track(sim: Harness, body: dict[str, Any], query: str = "silent=no") -> Any:
    return await sim.call(
        "POST",
        f"/v3/events?{query}",
        body,
        headers={"X-Talon-Bridge-Event-Id": body.get("integrationId", "")},
    )


async def _profile_journal(sim: Harness, profile: str) -> list[dict[str, Any]]:
    doc = await sim.admin("GET", f"/_sim/journal?profile={profile}")
    entries: list[dict[str, Any]] = doc["entries"]
    return entries


async def test_an_event_is_registered_once_and_a_second_one_is_the_exists_409(
    make_sim: Any,
) -> None:
    sim: Harness = await make_sim(rules=RuleConfig(event_effect_types=frozenset({"shipped"})))
    first = await _track(sim, _event("order-1/shipped"))
    assert first.status == 200
    effects = first.json["effects"]
    assert [e["effectType"] for e in effects] == ["customEffect"]

    again = await _track(sim, _event("order-1/shipped", attributes={"late": True}))
    assert again.status == 409
    assert again.json == EVENT_EXISTS
    assert (await sim.stats())["events_v3_already_registered"] == 1
    assert "already exists" in again.json["message"]
    # Nothing applied twice: one journal entry, one event on the profile.
    entries = await _profile_journal(sim, "p1")
    assert [(e["operation"], e["integrationId"]) for e in entries] == [
        ("event_v3", "order-1/shipped")
    ]

    stored = await sim.call("GET", "/v3/events/" + quote("order-1/shipped", safe=""))
    assert stored.status == 200
    assert stored.json["integrationId"] == "order-1/shipped"
    assert stored.json["effects"] == effects
    assert (await sim.call("GET", "/v3/events/unknown")).status == 404


async def test_silent_is_a_204_and_dry_registers_nothing(sim: Harness) -> None:
    dry = await _track(sim, _event("e-dry"), "silent=no&dry=true")
    assert dry.status == 200
    assert (await sim.call("GET", "/v3/events/e-dry")).status == 404
    assert (await _track(sim, _event("e-dry"), "")).status == 204
    assert (await _track(sim, _event("e-dry"), "")).status == 409


async def test_a_parallel_event_for_the_profile_is_the_busy_409(sim: Harness) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(kind: str, key: str) -> None:
        if key == "hot" and not entered.is_set():
            entered.set()
            await release.wait()

    sim.sim.hold = hold
    first = asyncio.create_task(_track(sim, _event("a", "hot")))
    await entered.wait()
    busy = await _track(sim, _event("b", "hot"))
    assert busy.status == 409
    assert busy.json == PROFILE_409
    release.set()
    assert (await first).status == 200
    # The busy one was not registered: sent again, it goes through.
    assert (await _track(sim, _event("b", "hot"))).status == 200
    assert [e["integrationId"] for e in await _profile_journal(sim, "hot")] == ["a", "b"]


async def test_integration_id_is_required(sim: Harness) -> None:
    missing = await _track(sim, {"type": "shipped", "profileId": "p1"})
    assert missing.status == 400
    assert missing.json["StatusCode"] == 400
    assert [e["source"]["pointer"] for e in missing.json["errors"]] == ["/integrationId"]
    both = await _track(sim, {"type": "", "profileId": "p1"})
    assert [e["source"]["pointer"] for e in both.json["errors"]] == ["/type", "/integrationId"]
    assert (await sim.call("GET", "/v3/events")).status == 405
