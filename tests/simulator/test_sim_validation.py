"""Request validation, auth, routing on the raw path, and the silent/dry flags."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.simulator import Harness, sid_path

INVALID = "The submitted data was invalid"


def item(**over: Any) -> dict[str, Any]:
    return {"sku": "A", "quantity": 1, "price": 1.0, **over}


UPDATE_CASES: list[tuple[str, Any, str]] = [
    ("missing customerSession", {}, "/customerSession"),
    ("customerSession not an object", {"customerSession": []}, "/customerSession"),
    ("state enum", {"customerSession": {"state": "paid"}}, "/customerSession/state"),
    (
        "quantity zero",
        {"customerSession": {"cartItems": [item(), item(), item(), item(quantity=0)]}},
        "/customerSession/cartItems/3/quantity",
    ),
    (
        "quantity float",
        {"customerSession": {"cartItems": [item(quantity=1.5)]}},
        "/customerSession/cartItems/0/quantity",
    ),
    (
        "quantity bool",
        {"customerSession": {"cartItems": [item(quantity=True)]}},
        "/customerSession/cartItems/0/quantity",
    ),
    (
        "quantity string",
        {"customerSession": {"cartItems": [item(quantity="1")]}},
        "/customerSession/cartItems/0/quantity",
    ),
    (
        "sku empty",
        {"customerSession": {"cartItems": [item(sku="")]}},
        "/customerSession/cartItems/0/sku",
    ),
    (
        "sku missing",
        {"customerSession": {"cartItems": [{"quantity": 1}]}},
        "/customerSession/cartItems/0/sku",
    ),
    (
        "price not a number",
        {"customerSession": {"cartItems": [item(price="9")]}},
        "/customerSession/cartItems/0/price",
    ),
    (
        "too many items",
        {"customerSession": {"cartItems": [item()] * 1001}},
        "/customerSession/cartItems",
    ),
    (
        "total quantity above 10000",
        {"customerSession": {"cartItems": [item(quantity=5000), item(quantity=5001)]}},
        "/customerSession/cartItems",
    ),
    (
        "identifiers above 5",
        {"customerSession": {"identifiers": ["a", "b", "c", "d", "e", "f"]}},
        "/customerSession/identifiers",
    ),
    (
        "two loyalty cards",
        {"customerSession": {"loyaltyCards": ["a", "b"]}},
        "/customerSession/loyaltyCards",
    ),
    (
        "coupon code too long",
        {"customerSession": {"couponCodes": ["OK", "X" * 101]}},
        "/customerSession/couponCodes/1",
    ),
    (
        "unknown attribute",
        {"customerSession": {"attributes": {"x-undefined-tier": "gold"}}},
        "/attributes/x-undefined-tier",
    ),
    (
        "unknown cart item attribute",
        {"customerSession": {"cartItems": [item(attributes={"x-undefined-a": 1})]}},
        "/cartItems/0/attributes/x-undefined-a",
    ),
    (
        "additional cost without price",
        {"customerSession": {"additionalCosts": {"shipping": {}}}},
        "/customerSession/additionalCosts/shipping/price",
    ),
    (
        "responseContent enum",
        {"customerSession": {}, "responseContent": ["everything"]},
        "/responseContent/0",
    ),
    ("body not an object", [1, 2], ""),
]


@pytest.mark.parametrize(
    ("case", "body", "pointer"), UPDATE_CASES, ids=[c[0] for c in UPDATE_CASES]
)
async def test_update_validation_points_at_the_field(
    sim: Harness, case: str, body: Any, pointer: str
) -> None:
    reply = await sim.call("PUT", sid_path("s"), body)
    assert reply.status == 400, case
    assert reply.json["message"] == INVALID
    assert pointer in [e["source"].get("pointer") for e in reply.json["errors"]]
    for error in reply.json["errors"]:
        assert set(error) == {"title", "details", "source"}
    assert (await sim.get("s")).status == 404


async def test_limits_at_the_boundary_are_accepted(sim: Harness) -> None:
    cs = {
        "cartItems": [item(quantity=10)] * 1000,
        "identifiers": ["a"] * 5,
        "loyaltyCards": ["c"],
        "couponCodes": ["X" * 100],
    }
    assert (await sim.update("s", cs)).status == 200


async def test_malformed_json(sim: Harness) -> None:
    reply = await sim.call("PUT", sid_path("s"), raw=b'{"customerSession": ')
    assert reply.status == 400
    assert reply.json["errors"][0]["title"] == "Malformed JSON"
    ev = await sim.call("POST", "/v2/events", raw=b"nope")
    assert ev.status == 400
    assert ev.json["StatusCode"] == 400


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"profileId": "p"}, "/type"),
        ({"type": "", "profileId": "p"}, "/type"),
        ({"type": "visit"}, "/profileId"),
        ({"type": "visit", "profileId": ""}, "/profileId"),
        ({"type": "visit", "profileId": "p", "loyaltyCards": ["a", "b"]}, "/loyaltyCards"),
        (
            {"type": "visit", "profileId": "p", "attributes": {"x-undefined": 1}},
            "/attributes/x-undefined",
        ),
    ],
)
async def test_event_validation(sim: Harness, body: dict[str, Any], pointer: str) -> None:
    reply = await sim.event(body)
    assert reply.status == 400
    assert reply.json["StatusCode"] == 400
    assert pointer in [e["source"]["pointer"] for e in reply.json["errors"]]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "/return"),
        ({"return": {}}, "/return/returnedCartItems"),
        ({"return": {"returnedCartItems": []}}, "/return/returnedCartItems"),
        (
            {"return": {"returnedCartItems": [{"position": 0}]}},
            "/return/returnedCartItems/0/quantity",
        ),
        (
            {"return": {"returnedCartItems": [{"quantity": 1}]}},
            "/return/returnedCartItems/0/position",
        ),
        (
            {"return": {"returnedCartItems": [{"position": -1, "quantity": 1}]}},
            "/return/returnedCartItems/0/position",
        ),
    ],
)
async def test_return_validation(sim: Harness, body: dict[str, Any], pointer: str) -> None:
    reply = await sim.call("POST", sid_path("s") + "/returns", body)
    assert reply.status == 400
    assert pointer in [e["source"]["pointer"] for e in reply.json["errors"]]


async def test_reject_attributes_switch_at_runtime(sim: Harness) -> None:
    cs = {"attributes": {"Tier": "gold"}}
    assert (await sim.update("s", cs)).status == 200
    await sim.admin("PATCH", "/_sim/faults", {"reject_attributes": ["Tier"]})
    reply = await sim.update("s", cs)
    assert reply.status == 400
    (error,) = reply.json["errors"]
    assert error == {
        "title": "Unknown",
        "details": 'The attribute "Tier" is not defined on CustomerSession entities.',
        "source": {"pointer": "/attributes/Tier"},
    }
    await sim.admin(
        "PATCH", "/_sim/faults", {"reject_attributes": [], "reject_attribute_prefixes": []}
    )
    assert (await sim.update("s", cs)).status == 200
    assert (await sim.update("s", {"attributes": {"x-undefined-a": 1}})).status == 200


@pytest.mark.parametrize("key", [None, "wrong", ""])
async def test_bad_api_key_is_401(sim: Harness, key: str | None) -> None:
    reply = await sim.call("PUT", sid_path("s"), {"customerSession": {}}, key=key)
    assert reply.status == 401
    assert reply.json == {"message": "Unauthorized - Invalid API key", "StatusCode": 401}
    ev = await sim.call("POST", "/v2/events", {"type": "t", "profileId": "p"}, key=key)
    assert ev.status == 401
    assert (await sim.stats())["applied"] == 0


async def test_wrong_auth_scheme_is_401(sim: Harness) -> None:
    headers = {"Authorization": "ManagementKey-v1 test-key"}
    reply = await sim.call("GET", sid_path("s"), key=None, headers=headers)
    assert reply.status == 401


async def test_silent_flag(sim: Harness) -> None:
    default = await sim.event({"type": "visit", "profileId": "p"})
    assert default.status == 204
    assert default.raw == b""
    assert "Content-Type" not in default.headers
    assert (await sim.event({"type": "visit", "profileId": "p"}, silent="yes")).status == 204
    loud = await sim.event({"type": "visit", "profileId": "p"}, silent="no")
    assert loud.status == 200
    assert loud.json["customerProfile"]["integrationId"] == "p"
    assert loud.json["effects"] == []
    bad = await sim.event({"type": "visit", "profileId": "p"}, silent="maybe")
    assert bad.status == 400
    assert bad.json["errors"][0]["source"] == {"parameter": "silent"}


async def test_dry_flag_parsing(sim: Harness) -> None:
    assert (await sim.call("PUT", sid_path("s") + "?dry=1", {"customerSession": {}})).status == 200
    assert (await sim.get("s")).status == 404
    bad = await sim.call("PUT", sid_path("s") + "?dry=maybe", {"customerSession": {}})
    assert bad.status == 400
    assert bad.json["errors"][0]["source"] == {"parameter": "dry"}
    now = await sim.call(
        "PUT", sid_path("s") + "?now=2030-01-01T00:00:00Z", {"customerSession": {}}
    )
    assert now.status == 400


@pytest.mark.parametrize("session_id", ["a/b", "sess 1/ä", "100%", "x?y#z", "a%2Fb"])
async def test_session_ids_route_on_the_raw_path(sim: Harness, session_id: str) -> None:
    created = await sim.update(session_id, {"profileId": "p"})
    assert created.status == 200
    assert created.json["customerSession"]["integrationId"] == session_id
    got = await sim.get(session_id)
    assert got.json["customerSession"]["integrationId"] == session_id
    assert [e["seq"] for e in await sim.journal(session_id)] == [1]


async def test_unknown_routes_and_methods(sim: Harness) -> None:
    assert (await sim.call("GET", "/v2/nothing")).status == 404
    assert (await sim.call("GET", "/v2/customer_sessions/s/other")).status == 404
    assert (await sim.call("DELETE", sid_path("s"))).status == 405
    assert (await sim.call("GET", "/v2/events")).status == 405
    assert (await sim.call("GET", sid_path("s") + "/returns")).status == 405
    assert (await sim.call("GET", "/elsewhere")).status == 404
    assert (await sim.call("GET", "/_sim/nothing", key=None)).status == 404
