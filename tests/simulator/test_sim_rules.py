"""The rule engine's effects, and every response body parsed by the official SDK."""

from __future__ import annotations

from typing import Any

import pytest
from talon_one import models as t1

from bridge.simulator.rules import ReturnedUnits, RuleConfig, RuleEngine
from tests.support.simulator import Harness

CART = [
    {"sku": "SHOE-1", "quantity": 2, "price": 60, "category": "shoes"},
    {"sku": "TEE-1", "quantity": 1, "price": 20, "category": "shirts"},
]

PROPS_MODEL: dict[str, Any] = {
    "acceptCoupon": t1.AcceptCouponEffectProps,
    "rejectCoupon": t1.RejectCouponEffectProps,
    "setDiscount": t1.SetDiscountEffectProps,
    "setDiscountPerItem": t1.SetDiscountPerItemEffectProps,
    "addLoyaltyPoints": t1.AddLoyaltyPointsEffectProps,
    "rollbackDiscount": t1.RollbackDiscountEffectProps,
    "rollbackCoupon": t1.RollbackCouponEffectProps,
    "rollbackAddedLoyaltyPoints": t1.RollbackAddedLoyaltyPointsEffectProps,
    "customEffect": t1.CustomEffectProps,
}


def types(effects: list[dict[str, Any]]) -> list[str]:
    return [e["effectType"] for e in effects]


def check_with_sdk(model: Any, raw: bytes) -> Any:
    """Parse with the SDK model, then each effect's props with its typed props model."""
    parsed = model.from_json(raw.decode())
    assert parsed is not None
    for effect in parsed.effects:
        props_model = PROPS_MODEL[effect.effect_type]
        assert props_model.from_dict(effect.props) is not None, effect.effect_type
    return parsed


def test_coupons_are_accepted_by_prefix_and_rejected_otherwise() -> None:
    engine = RuleEngine()
    effects = engine.evaluate_session([], ["SAVE15", "xmas-20", "NOPE"])
    assert types(effects) == [
        "acceptCoupon",
        "setDiscount",
        "acceptCoupon",
        "setDiscount",
        "rejectCoupon",
    ]
    assert effects[0]["triggeredByCoupon"] == effects[1]["triggeredByCoupon"]
    assert effects[4]["props"] == {"value": "NOPE", "rejectionReason": "CouponNotFound"}
    assert "triggeredByCoupon" not in effects[4]
    assert engine.coupon_percent("SAVE15") == 15
    assert engine.coupon_percent("XMAS-20") == 20
    assert engine.coupon_percent("SAVE") == 10


def test_threshold_and_per_item_discounts() -> None:
    engine = RuleEngine()
    effects = engine.evaluate_session(CART, [])
    assert types(effects) == ["setDiscount", "setDiscountPerItem", "setDiscountPerItem"]
    assert effects[0]["props"] == {"name": "10% off over 100", "value": 14, "scope": "sessionTotal"}
    assert [(e["props"]["position"], e["props"]["subPosition"]) for e in effects[1:]] == [
        (0, 0),
        (0, 1),
    ]
    small = engine.evaluate_session([{"sku": "TEE", "quantity": 1, "price": 99.99}], [])
    assert small == []


def test_closing_effects_are_deterministic() -> None:
    engine = RuleEngine()
    a = engine.closing_effects("s/1", "p1", 140.7)
    b = engine.closing_effects("s/1", "p1", 140.7)
    assert a == b
    (points,) = a
    assert points["effectType"] == "addLoyaltyPoints"
    assert points["props"]["value"] == 140
    assert points["props"]["subLedgerId"] == ""
    assert points["props"]["recipientIntegrationId"] == "p1"
    assert engine.closing_effects("s/1", "", 140) == []


def test_returns_roll_back_exactly_what_was_granted() -> None:
    engine = RuleEngine()
    effects = engine.evaluate_session(CART, ["SAVE10"])
    effects += engine.closing_effects("s/1", "p1", 140)
    ledger = engine.build_ledger(effects, 140)

    first = engine.return_rollbacks(ledger, [ReturnedUnits(0, 0, 1, 60)])
    assert types(first) == [
        "rollbackDiscount",
        "rollbackDiscount",
        "rollbackDiscount",
        "rollbackAddedLoyaltyPoints",
    ]
    assert first[0]["props"]["cartItemPosition"] == 0
    assert first[0]["props"]["cartItemSubPosition"] == 0
    assert first[-1]["props"]["value"] == 60

    rest = engine.return_rollbacks(ledger, [ReturnedUnits(0, 1, 1, 60), ReturnedUnits(1, 0, 1, 20)])
    session_rollbacks = [
        e["props"]["value"] for e in first + rest if e["props"].get("scope") == "sessionTotal"
    ]
    # Coupon 10% of 140 plus threshold 10% of 140, rolled back in full across both returns.
    assert sum(session_rollbacks) == pytest.approx(28)
    points = [e["props"]["value"] for e in first + rest if "programId" in e["props"]]
    assert sum(points) == 140
    assert engine.cancel_rollbacks(ledger) == [
        {
            "campaignId": 101,
            "rulesetId": 201,
            "ruleIndex": 0,
            "ruleName": "Coupon discount",
            "effectType": "rollbackCoupon",
            "props": {"value": "SAVE10"},
            "triggeredByCoupon": effects[0]["triggeredByCoupon"],
        }
    ]


def test_custom_effect_only_for_configured_event_types() -> None:
    engine = RuleEngine(RuleConfig(event_effect_types=frozenset({"signup"})))
    (effect,) = engine.event_effects("signup", "p1", {"a": 1})
    assert effect["effectType"] == "customEffect"
    assert effect["props"]["name"] == "signup"
    assert isinstance(effect["props"]["effectId"], int)
    assert engine.event_effects("visit", "p1", {}) == []


async def test_full_lifecycle_parses_with_the_official_sdk(make_sim: Any) -> None:
    sim: Harness = await make_sim(rules=RuleConfig(event_effect_types=frozenset({"signup"})))
    content = ["customerSession", "customerProfile", "loyalty", "event", "coupons"]
    cs = {"profileId": "p1", "couponCodes": ["XMAS-20", "BAD"], "cartItems": CART}
    opened = await sim.update("o/1", cs, content=content)
    state = check_with_sdk(t1.IntegrationStateV2, opened.raw)
    assert state.customer_session.integration_id == "o/1"
    assert state.customer_session.update_count == 1
    assert state.customer_profile.integration_id == "p1"
    assert set(types(opened.json["effects"])) == {
        "acceptCoupon",
        "rejectCoupon",
        "setDiscount",
        "setDiscountPerItem",
    }

    closed = await sim.update("o/1", {"state": "closed"})
    state = check_with_sdk(t1.IntegrationStateV2, closed.raw)
    assert state.customer_session.state == "closed"
    assert "addLoyaltyPoints" in types(closed.json["effects"])

    returned = await sim.give_back("o/1", [{"position": 0, "quantity": 1}])
    state = check_with_sdk(t1.IntegrationStateV2, returned.raw)
    assert state.var_return.session_integration_id == "o/1"
    assert state.previous_returns == []
    assert state.customer_session.cart_items[0].returned_quantity == 1
    assert set(types(returned.json["effects"])) == {
        "rollbackDiscount",
        "rollbackAddedLoyaltyPoints",
    }

    cancelled = await sim.update("o/1", {"state": "cancelled"})
    check_with_sdk(t1.IntegrationStateV2, cancelled.raw)
    assert set(types(cancelled.json["effects"])) == {
        "rollbackCoupon",
        "rollbackDiscount",
        "rollbackAddedLoyaltyPoints",
    }

    got = await sim.get("o/1")
    parsed = t1.IntegrationCustomerSessionResponse.from_json(got.raw.decode())
    assert parsed.customer_session.state == "cancelled"

    event = await sim.event(
        {"type": "signup", "profileId": "p1", "responseContent": ["event", "customerProfile"]},
        silent="no",
    )
    response = check_with_sdk(t1.TrackEventV2Response, event.raw)
    assert response.event.type == "signup"
    assert types(event.json["effects"]) == ["customEffect"]


async def test_raw_body_types_are_strict(sim: Harness) -> None:
    reply = await sim.update("s", {"profileId": "p", "cartItems": CART})
    session = reply.json["customerSession"]
    for key in ("id", "applicationId", "updateCount"):
        assert type(session[key]) is int
    for line in session["cartItems"]:
        assert type(line["position"]) is int
    assert session["created"].endswith("Z")
    assert session["updated"].endswith("Z")
    assert session["state"] == "open"
    assert session["cartItemAdditionalCostTotal"] == 0
    assert session["total"] == 140


async def test_sdk_parses_error_bodies(sim: Harness) -> None:
    bad = await sim.update("s", {"state": "nope"})
    assert t1.ErrorResponse.from_json(bad.raw.decode()).errors[0].source.pointer == (
        "/customerSession/state"
    )
    unauthorized = await sim.call("GET", "/v2/customer_sessions/s", key="wrong")
    assert t1.ErrorResponseWithStatus.from_json(unauthorized.raw.decode()).status_code == 401
