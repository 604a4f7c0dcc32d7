"""Session states: every documented transition, every illegal one, returns and dry runs."""

from __future__ import annotations

import pytest

from tests.support.simulator import Harness

CART = [
    {"sku": "SHOE-1", "quantity": 2, "price": 60.0, "category": "shoes"},
    {"sku": "TEE-1", "quantity": 3, "price": 10.0},
]
STATES = ("open", "closed", "partially_returned", "cancelled")

# (current state or None for a new session, requested state) -> allowed?
ALLOWED = {
    (None, "open"),
    (None, "closed"),
    ("open", "open"),
    ("open", "closed"),
    ("open", "cancelled"),
    ("closed", "cancelled"),
    ("partially_returned", "cancelled"),
}
TABLE = [
    (current, requested, (current, requested) in ALLOWED)
    for current in (None, *STATES)
    for requested in STATES
]


async def bring_to(sim: Harness, sid: str, state: str | None) -> None:
    """Drive session `sid` into `state` through legal requests only."""
    if state is None:
        return
    assert (await sim.update(sid, {"profileId": "p1", "cartItems": CART})).status == 200
    if state in ("closed", "partially_returned", "cancelled"):
        assert (await sim.update(sid, {"state": "closed"})).status == 200
    if state == "partially_returned":
        assert (await sim.give_back(sid, [{"position": 1, "quantity": 1}])).status == 200
    if state == "cancelled":
        assert (await sim.update(sid, {"state": "cancelled"})).status == 200
    assert (await sim.get(sid)).json["customerSession"]["state"] == state


@pytest.mark.parametrize(("current", "requested", "allowed"), TABLE)
async def test_update_transitions(
    sim: Harness, current: str | None, requested: str, allowed: bool
) -> None:
    sid = f"s-{current}-{requested}"
    await bring_to(sim, sid, current)
    before = await sim.get(sid)
    journal_before = len(await sim.journal(sid))

    reply = await sim.update(sid, {"profileId": "p1", "state": requested})

    if allowed:
        assert reply.status == 200, reply.raw
        session = reply.json["customerSession"]
        assert session["state"] == requested
        assert (await sim.get(sid)).json["customerSession"]["state"] == requested
        assert len(await sim.journal(sid)) == journal_before + 1
        return
    assert reply.status == 400
    assert reply.json["message"] == "The submitted data was invalid"
    (error,) = reply.json["errors"]
    assert error["source"] == {"pointer": "/customerSession/state"}
    if current is not None and current == requested:
        assert error["title"] == "Session cannot be modified"
    else:
        assert error["title"] == "Invalid state transition"
    # Nothing changed.
    assert len(await sim.journal(sid)) == journal_before
    after = await sim.get(sid)
    assert after.status == before.status
    if current is not None:
        assert after.json == before.json


@pytest.mark.parametrize(
    ("current", "expected"),
    [(None, 404), ("open", 400), ("closed", 200), ("partially_returned", 200), ("cancelled", 400)],
)
async def test_returns_only_from_closed_or_partially_returned(
    sim: Harness, current: str | None, expected: int
) -> None:
    sid = f"r-{current}"
    await bring_to(sim, sid, current)
    reply = await sim.give_back(sid, [{"position": 0, "quantity": 1}])
    assert reply.status == expected, reply.raw
    if expected == 200:
        assert reply.json["customerSession"]["state"] == "partially_returned"
    elif expected == 400:
        assert reply.json["errors"][0]["title"] == "Invalid state transition"


LEGAL_DRY = [(c, r) for c, r in sorted(ALLOWED, key=str) if c is not None] + [
    (None, "open"),
    (None, "closed"),
]


@pytest.mark.parametrize(("current", "requested"), LEGAL_DRY)
async def test_dry_updates_never_change_state(
    sim: Harness, current: str | None, requested: str
) -> None:
    sid = f"d-{current}-{requested}"
    await bring_to(sim, sid, current)
    before = await sim.get(sid)
    stats_before = await sim.stats()

    cs = {"profileId": "p1", "state": requested, "cartItems": [CART[0]], "couponCodes": ["SAVE5"]}
    reply = await sim.update(sid, cs, dry=True)

    assert reply.status == 200, reply.raw
    assert reply.json["customerSession"]["state"] == requested
    after = await sim.get(sid)
    assert after.status == before.status
    assert after.json == before.json
    stats = await sim.stats()
    assert stats["applied"] == stats_before["applied"]
    assert stats["dry"] == stats_before["dry"] + 1
    assert stats["profiles"] == stats_before["profiles"]


async def test_dry_return_and_dry_event_change_nothing(sim: Harness) -> None:
    await bring_to(sim, "s", "closed")
    before = await sim.get("s")
    reply = await sim.give_back("s", [{"position": 0, "quantity": 2}], dry=True)
    assert reply.status == 200
    assert reply.json["customerSession"]["state"] == "partially_returned"
    assert (await sim.get("s")).json == before.json
    assert (await sim.event({"type": "t", "profileId": "new"}, dry=True)).status == 204
    stats = await sim.stats()
    assert stats["profiles"] == 1
    doc = await sim.admin("GET", "/_sim/journal?profile=new")
    assert doc["entries"] == []


async def test_update_count_and_merge_rules(sim: Harness) -> None:
    r1 = await sim.update("m", {"profileId": "p", "couponCodes": ["SAVE10"], "cartItems": CART})
    assert r1.json["customerSession"]["updateCount"] == 1
    assert r1.json["customerSession"]["firstSession"] is True
    # Omitted fields keep their values.
    r2 = await sim.update("m", {"attributes": {"a": 1}})
    s2 = r2.json["customerSession"]
    assert s2["updateCount"] == 2
    assert s2["couponCodes"] == ["SAVE10"]
    assert [i["sku"] for i in s2["cartItems"]] == ["SHOE-1", "TEE-1"]
    # cartItems replace the stored list; an empty couponCodes clears the coupons.
    r3 = await sim.update("m", {"cartItems": [{"sku": "X", "quantity": 1}], "couponCodes": []})
    s3 = r3.json["customerSession"]
    assert s3["updateCount"] == 3
    assert s3["couponCodes"] == []
    assert s3["cartItems"] == [
        {"sku": "X", "quantity": 1, "position": 0, "returnedQuantity": 0, "remainingQuantity": 1}
    ]
    assert s3["attributes"] == {"a": 1}
    # dry does not count.
    await sim.update("m", {"attributes": {"b": 2}}, dry=True)
    assert (await sim.get("m")).json["customerSession"]["updateCount"] == 3
    # A second session of the same profile is not its first.
    r4 = await sim.update("m2", {"profileId": "p"})
    assert r4.json["customerSession"]["firstSession"] is False


async def test_partial_returns_accumulate_and_over_returns_are_rejected(sim: Harness) -> None:
    await bring_to(sim, "s", "closed")
    first = await sim.give_back("s", [{"position": 1, "quantity": 2}])
    assert first.status == 200
    line = first.json["customerSession"]["cartItems"][1]
    assert (line["returnedQuantity"], line["remainingQuantity"]) == (2, 1)
    assert first.json["previousReturns"] == []
    assert first.json["return"]["returnedCartItems"] == [
        {"position": 1, "quantity": 2, "sku": "TEE-1"}
    ]

    over = await sim.give_back("s", [{"position": 1, "quantity": 2}])
    assert over.status == 400
    assert over.json["errors"][0]["source"] == {"pointer": "/return/returnedCartItems/0/quantity"}
    unknown = await sim.give_back("s", [{"position": 7, "quantity": 1}])
    assert unknown.status == 400
    assert unknown.json["errors"][0]["source"] == {
        "pointer": "/return/returnedCartItems/0/position"
    }
    wrong_sku = await sim.give_back("s", [{"position": 0, "sku": "TEE-1", "quantity": 1}])
    assert wrong_sku.status == 400

    # Returning every remaining unit (one of them by sku) keeps partially_returned.
    last = await sim.give_back(
        "s", [{"sku": "TEE-1", "quantity": 1}, {"position": 0, "quantity": 2}]
    )
    assert last.status == 200, last.raw
    session = last.json["customerSession"]
    assert session["state"] == "partially_returned"
    assert [i["remainingQuantity"] for i in session["cartItems"]] == [0, 0]
    assert [r["id"] for r in last.json["previousReturns"]] == [first.json["return"]["id"]]
    ops = [(e["operation"], e["state"]) for e in await sim.journal("s")]
    assert ops == [
        ("update", "open"),
        ("update", "closed"),
        ("return", "partially_returned"),
        ("return", "partially_returned"),
    ]


async def test_closed_session_can_be_cancelled_but_not_edited(sim: Harness) -> None:
    await bring_to(sim, "c", "closed")
    # The SDK sends state "open" by default: that is a closed -> open request.
    reopen = await sim.update("c", {"profileId": "p1", "cartItems": []})
    assert reopen.status == 400
    assert "reopen" in reopen.json["errors"][0]["details"]
    cancel = await sim.update("c", {"state": "cancelled", "cartItems": []})
    assert cancel.status == 200
    # A cancel of a closed session changes only the state, not the cart.
    assert len(cancel.json["customerSession"]["cartItems"]) == 2


async def test_nulls_mean_not_sent_and_profiles_follow_the_session(sim: Harness) -> None:
    first = await sim.update("n", {"profileId": "p1", "couponCodes": ["SAVE5"], "state": None})
    assert first.status == 200
    assert first.json["customerSession"]["state"] == "open"
    moved = await sim.update(
        "n", {"profileId": "p2", "couponCodes": None}, content=["customerProfile"]
    )
    assert moved.json["customerSession"]["couponCodes"] == ["SAVE5"]
    assert moved.json["customerProfile"]["integrationId"] == "p2"
    closed = await sim.update("n", {"state": "closed"}, content=["customerProfile"])
    assert closed.json["customerProfile"]["closedSessions"] == 1
    assert (await sim.stats())["profiles"] == 2
