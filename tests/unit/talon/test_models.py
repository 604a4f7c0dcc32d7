"""Wire models: request serialization rules and parsing of realistic Talon.One responses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from bridge.talon.models import (
    AdditionalCost,
    CartItem,
    CustomerSessionV2,
    Effect,
    ErrorResponse,
    ErrorResponseWithStatus,
    IntegrationEventV2Request,
    IntegrationRequest,
    IntegrationStateV2,
    NewCustomerSessionV2,
    NewReturn,
    ReturnedCartItem,
    ReturnIntegrationRequest,
    TrackEventV2Response,
)

SESSION = {
    "id": 4821,
    "created": "2026-01-10T09:00:00Z",
    "integrationId": "order-1001",
    "applicationId": 7,
    "profileId": "cust-42",
    "state": "closed",
    "couponCodes": ["XMAS-20"],
    "cartItems": [
        {"name": "Shoes", "sku": "SKU-1", "quantity": 1, "price": 60, "position": 0},
        {"name": "Shirt", "sku": "SKU-2", "quantity": 2, "price": 20, "position": 1},
    ],
    "additionalCosts": {"shipping": {"price": 5}},
    "attributes": {},
    "firstSession": False,
    "updateCount": 3,
    "total": 105,
    "cartItemTotal": 100,
    "additionalCostTotal": 5,
    "updated": "2026-01-10T09:05:00Z",
}

UPDATE_RESPONSE: dict[str, Any] = {
    "customerSession": SESSION,
    "effects": [
        {
            "campaignId": 12,
            "rulesetId": 34,
            "ruleIndex": 0,
            "ruleName": "XMAS coupon",
            "effectType": "acceptCoupon",
            "triggeredByCoupon": 991,
            "props": {"value": "XMAS-20"},
        },
        {
            "campaignId": 12,
            "rulesetId": 34,
            "ruleIndex": 0,
            "ruleName": "XMAS coupon",
            "effectType": "setDiscount",
            "triggeredByCoupon": 991,
            "props": {"name": "20% off", "value": 20, "scope": "sessionTotal"},
        },
        {
            "campaignId": 13,
            "rulesetId": 35,
            "ruleIndex": 1,
            "ruleName": "5 off per item",
            "effectType": "setDiscountPerItem",
            "props": {"name": "5off#1", "value": 5, "position": 1, "subPosition": 0},
        },
    ],
    "createdCoupons": [],
    "createdReferrals": [],
}

RETURN_RESPONSE: dict[str, Any] = {
    "customerSession": {**SESSION, "state": "partially_returned", "updateCount": 4},
    "effects": [
        {
            "campaignId": 13,
            "rulesetId": 35,
            "ruleIndex": 1,
            "ruleName": "5 off per item",
            "effectType": "rollbackDiscount",
            "props": {
                "name": "5off#1",
                "value": 5,
                "cartItemPosition": 1,
                "cartItemSubPosition": 0,
                "scope": "price",
            },
        }
    ],
    "createdCoupons": [],
    "createdReferrals": [],
    "return": {
        "id": 77,
        "created": "2026-01-12T10:00:00Z",
        "applicationId": 7,
        "accountId": 1,
        "returnedCartItems": [{"position": 1, "quantity": 1}],
        "eventId": 9001,
        "sessionId": 4821,
        "sessionIntegrationId": "order-1001",
    },
}


def wire(model: Any) -> Any:
    return orjson.loads(model.to_json())


# ---------------------------------------------------------------- requests


def test_session_update_uses_wire_names_and_drops_none() -> None:
    body = IntegrationRequest(
        customer_session=NewCustomerSessionV2(
            profile_id="cust-42",
            store_integration_id="store-1",
            evaluable_campaign_ids=[1, 2],
            coupon_codes=["XMAS-20"],
            loyalty_cards=["card-1"],
            cart_items=[
                CartItem(name="Shoes", sku="SKU-1", quantity=1, price=60),
                CartItem(sku="SKU-2", quantity=2, price=20, attributes={"color": "red"}),
            ],
            additional_costs={"shipping": AdditionalCost(price=5)},
            identifiers=["hash"],
            attributes={"ShippingCity": "Berlin"},
        ),
        response_content=["customerSession", "customerProfile"],
    )
    assert wire(body) == {
        "customerSession": {
            "profileId": "cust-42",
            "storeIntegrationId": "store-1",
            "evaluableCampaignIds": [1, 2],
            "couponCodes": ["XMAS-20"],
            "loyaltyCards": ["card-1"],
            "state": "open",
            "cartItems": [
                {"sku": "SKU-1", "quantity": 1, "name": "Shoes", "price": 60.0},
                {"sku": "SKU-2", "quantity": 2, "price": 20.0, "attributes": {"color": "red"}},
            ],
            "additionalCosts": {"shipping": {"price": 5.0}},
            "identifiers": ["hash"],
            "attributes": {"ShippingCity": "Berlin"},
        },
        "responseContent": ["customerSession", "customerProfile"],
    }


def test_minimal_session_update_still_sends_state() -> None:
    assert wire(IntegrationRequest(customer_session=NewCustomerSessionV2())) == {
        "customerSession": {"state": "open"}
    }


@pytest.mark.parametrize("state", ["open", "closed", "partially_returned", "cancelled"])
def test_explicit_state_is_sent(state: str) -> None:
    body = IntegrationRequest.model_validate({"customerSession": {"state": state}})
    assert wire(body)["customerSession"]["state"] == state


def test_empty_lists_and_maps_are_kept_because_they_clear_stored_values() -> None:
    session = NewCustomerSessionV2(
        profile_id="p", coupon_codes=[], cart_items=[], attributes={}, referral_code=""
    )
    assert wire(IntegrationRequest(customer_session=session))["customerSession"] == {
        "profileId": "p",
        "couponCodes": [],
        "referralCode": "",
        "state": "open",
        "cartItems": [],
        "attributes": {},
    }


def test_requests_accept_wire_names_and_python_names() -> None:
    by_alias = NewCustomerSessionV2.model_validate({"profileId": "p", "couponCodes": ["A"]})
    by_name = NewCustomerSessionV2(profile_id="p", coupon_codes=["A"])
    assert by_alias == by_name


def test_unknown_request_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        NewCustomerSessionV2.model_validate({"profileID": "typo"})
    with pytest.raises(ValidationError):
        CartItem.model_validate({"sku": "A", "quantity": 1, "prize": 3})


@pytest.mark.parametrize(
    "session",
    [
        {"cartItems": [{"sku": "", "quantity": 1}]},
        {"cartItems": [{"sku": "A", "quantity": 0}]},
        {"loyaltyCards": ["a", "b"]},
        {"identifiers": ["1", "2", "3", "4", "5", "6"]},
        {"couponCodes": ["X" * 101]},
        {"referralCode": "X" * 101},
        {"storeIntegrationId": ""},
        {"state": "reopened"},
    ],
)
def test_request_constraints_match_the_official_sdk(session: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        NewCustomerSessionV2.model_validate(session)


def test_event_requires_type_and_profile_id() -> None:
    event = IntegrationEventV2Request(
        type="newsletter_signup",
        profile_id="cust-42",
        attributes={"SubscriptionType": "weekly"},
        response_content=["customerProfile", "triggeredCampaigns"],
    )
    assert wire(event) == {
        "type": "newsletter_signup",
        "profileId": "cust-42",
        "attributes": {"SubscriptionType": "weekly"},
        "responseContent": ["customerProfile", "triggeredCampaigns"],
    }
    with pytest.raises(ValidationError):
        IntegrationEventV2Request.model_validate({"type": "x"})
    with pytest.raises(ValidationError):
        IntegrationEventV2Request.model_validate({"type": "", "profileId": "p"})


def test_return_request_uses_the_return_keyword_on_the_wire() -> None:
    body = ReturnIntegrationRequest(
        return_=NewReturn(returned_cart_items=[ReturnedCartItem(position=1, quantity=1)]),
        response_content=["customerSession", "previousReturns"],
    )
    assert wire(body) == {
        "return": {"returnedCartItems": [{"position": 1, "quantity": 1}]},
        "responseContent": ["customerSession", "previousReturns"],
    }
    parsed = ReturnIntegrationRequest.model_validate(
        {"return": {"returnedCartItems": [{"sku": "SKU-2", "quantity": 2}]}}
    )
    assert parsed.return_.returned_cart_items == [ReturnedCartItem(sku="SKU-2", quantity=2)]
    assert wire(parsed) == {"return": {"returnedCartItems": [{"quantity": 2, "sku": "SKU-2"}]}}


def test_to_json_is_bytes() -> None:
    assert isinstance(IntegrationRequest(customer_session=NewCustomerSessionV2()).to_json(), bytes)


# ---------------------------------------------------------------- responses


def test_update_response_parses() -> None:
    state = IntegrationStateV2.model_validate_json(orjson.dumps(UPDATE_RESPONSE))
    session = state.customer_session
    assert session is not None
    assert session.id == 4821
    assert session.integration_id == "order-1001"
    assert session.state == "closed"
    assert session.created == datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
    assert session.cart_items is not None
    assert [(item.sku, item.position) for item in session.cart_items] == [
        ("SKU-1", 0),
        ("SKU-2", 1),
    ]
    assert session.additional_costs == {"shipping": AdditionalCost(price=5)}
    assert [effect.effect_type for effect in state.effects] == [
        "acceptCoupon",
        "setDiscount",
        "setDiscountPerItem",
    ]
    first = state.effects[0]
    assert (first.campaign_id, first.ruleset_id, first.rule_index, first.rule_name) == (
        12,
        34,
        0,
        "XMAS coupon",
    )
    assert first.triggered_by_coupon == 991
    assert first.props == {"value": "XMAS-20"}
    assert state.effects[2].props == {"name": "5off#1", "value": 5, "position": 1, "subPosition": 0}
    assert state.created_coupons == []
    assert state.created_referrals == []
    assert state.return_ is None


def test_return_response_parses() -> None:
    state = IntegrationStateV2.model_validate_json(orjson.dumps(RETURN_RESPONSE))
    assert state.customer_session is not None
    assert state.customer_session.state == "partially_returned"
    assert state.return_ is not None
    assert state.return_.returned_cart_items == [ReturnedCartItem(position=1, quantity=1)]
    assert state.return_.session_integration_id == "order-1001"
    assert state.effects[0].props is not None
    assert state.effects[0].props["cartItemSubPosition"] == 0


def test_minimal_response_parses() -> None:
    state = IntegrationStateV2.model_validate_json(
        b'{"effects":[],"createdCoupons":[],"createdReferrals":[]}'
    )
    assert state.customer_session is None
    assert state.effects == []


def test_missing_required_lists_are_rejected() -> None:
    with pytest.raises(ValidationError):
        IntegrationStateV2.model_validate_json(b'{"effects":[]}')


def test_unknown_fields_never_fail_and_are_kept_on_session_and_effects() -> None:
    payload = {
        **UPDATE_RESPONSE,
        "campaignEligibility": {"new": "top-level field"},
        "customerSession": {
            **SESSION,
            "experimentVariantAllocations": [{"experimentID": 1, "variantID": 2}],
            "cartItems": [{"sku": "A", "quantity": 1, "prices": {"member": {"price": 1}}}],
        },
        "effects": [{**UPDATE_RESPONSE["effects"][0], "experimentId": 5, "newFlag": True}],
        "createdCoupons": [
            {
                "id": 1,
                "created": "2026-01-10T09:00:00Z",
                "campaignId": 12,
                "value": "NEW-CODE",
                "usageCounter": 0,
                "somethingNew": 1,
            }
        ],
    }
    state = IntegrationStateV2.model_validate_json(orjson.dumps(payload))
    assert state.customer_session is not None
    assert state.customer_session.model_extra == {
        "experimentVariantAllocations": [{"experimentID": 1, "variantID": 2}]
    }
    assert state.customer_session.cart_items is not None
    assert state.customer_session.cart_items[0].model_extra == {"prices": {"member": {"price": 1}}}
    assert state.effects[0].model_extra == {"experimentId": 5, "newFlag": True}
    assert state.created_coupons[0].value == "NEW-CODE"


@pytest.mark.parametrize("props", [None, "absent"])
def test_effect_props_may_be_null_or_missing(props: str | None) -> None:
    effect: dict[str, Any] = {
        "campaignId": 1,
        "rulesetId": 2,
        "ruleIndex": 0,
        "ruleName": "r",
        "effectType": "customEffect",
    }
    if props is None:
        effect["props"] = None
    assert Effect.model_validate(effect).props is None


def test_session_state_is_not_invented_when_missing_and_checked_when_present() -> None:
    without = {key: value for key, value in SESSION.items() if key != "state"}
    assert CustomerSessionV2.model_validate(without).state is None
    with pytest.raises(ValidationError):
        CustomerSessionV2.model_validate({**SESSION, "state": "reopened"})


def test_track_event_response_with_profile_and_created_entities() -> None:
    payload = {
        "customerProfile": {"id": 1, "integrationId": "cust-42", "attributes": {}},
        "event": {"id": 9, "type": "newsletter_signup", "attributes": {}, "effects": []},
        "effects": [
            {
                "campaignId": 3,
                "rulesetId": 4,
                "ruleIndex": 0,
                "ruleName": "welcome",
                "effectType": "couponCreated",
                "props": {"value": "WELCOME-1", "profileId": "cust-42"},
            }
        ],
        "createdCoupons": [
            {
                "id": 11,
                "created": "2026-01-10T09:00:00Z",
                "campaignId": 3,
                "value": "WELCOME-1",
                "usageLimit": 1,
                "usageCounter": 0,
                "recipientIntegrationId": "cust-42",
            }
        ],
        "createdReferrals": [
            {
                "id": 12,
                "created": "2026-01-10T09:00:00Z",
                "campaignId": 3,
                "advocateProfileIntegrationId": "cust-42",
                "code": "REF-1234",
                "usageCounter": 0,
            }
        ],
    }
    response = TrackEventV2Response.model_validate_json(orjson.dumps(payload))
    assert response.customer_profile == payload["customerProfile"]
    assert response.created_coupons[0].recipient_integration_id == "cust-42"
    assert response.created_referrals[0].code == "REF-1234"
    assert response.created_referrals[0].advocate_profile_integration_id == "cust-42"


# ---------------------------------------------------------------- errors


def test_validation_error_body_exposes_title_details_and_pointer() -> None:
    body = ErrorResponse.model_validate_json(
        orjson.dumps(
            {
                "message": "The submitted data was invalid",
                "errors": [
                    {
                        "title": "Unknown",
                        "details": 'The attribute "MyAttribute" is not defined.',
                        "source": {"pointer": "/attributes/MyAttribute"},
                    }
                ],
            }
        )
    )
    assert body.message == "The submitted data was invalid"
    assert body.errors is not None
    assert body.errors[0].title == "Unknown"
    assert body.errors[0].source.pointer == "/attributes/MyAttribute"
    assert body.errors[0].source.parameter is None


def test_error_with_status_parses_conflict_body() -> None:
    body = ErrorResponseWithStatus.model_validate_json(
        b'{"message": "Too many requests are updating this session at the same time",'
        b' "errors": [], "StatusCode": 409}'
    )
    assert body.status_code == 409
    assert body.errors == []
    assert ErrorResponseWithStatus.model_validate_json(b"{}").message is None
