"""Contract tests against the official Talon.One SDK (talon-one-sdk 26.2, import `talon_one`).

Requests: every body our models produce is accepted by the SDK's own models and comes back
unchanged from the SDK's `to_dict()`, so no field is lost or renamed. Responses: bodies built
with the SDK's models, including the props models of the common effect types, parse into ours
without losing what we model.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import talon_one.models as sdk
from pydantic import BaseModel

from bridge.commands import EffectRecord
from bridge.talon.models import (
    AdditionalCost,
    CartItem,
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
from bridge.talon.summary import IntegrationSummary

CREATED = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
UPDATED = datetime(2026, 1, 10, 9, 5, tzinfo=UTC)

REQUESTS: list[tuple[str, BaseModel]] = [
    (
        "IntegrationRequest",
        IntegrationRequest(
            customer_session=NewCustomerSessionV2(
                profile_id="cust-42",
                store_integration_id="store-7",
                evaluable_campaign_ids=[12, 13],
                coupon_codes=["XMAS-20"],
                referral_code="REF-1234",
                loyalty_cards=["card-1"],
                state="closed",
                cart_items=[
                    CartItem(
                        name="Shoes",
                        sku="SKU-1",
                        quantity=1,
                        price=60,
                        category="footwear",
                        weight=800,
                        height=120,
                        width=300,
                        length=200,
                        product={"name": "Runner"},
                        attributes={"color": "red", "sizes": [42, 43]},
                        additional_costs={"wrapping": AdditionalCost(price=2.5)},
                    ),
                    CartItem(sku="SKU-2", quantity=2, price=19.99),
                ],
                additional_costs={"shipping": AdditionalCost(price=5)},
                identifiers=["6f1ed002ab5595859014ebf0951522d9"],
                attributes={"ShippingCity": "Berlin", "Nested": {"a": [1, None, True]}},
            ),
            response_content=[
                "customerSession",
                "customerProfile",
                "coupons",
                "triggeredCampaigns",
                "referral",
                "loyalty",
                "event",
                "awardedGiveaways",
                "ruleFailureReasons",
                "previousReturns",
            ],
        ),
    ),
    ("IntegrationRequest", IntegrationRequest(customer_session=NewCustomerSessionV2())),
    (
        "IntegrationRequest",
        IntegrationRequest(
            customer_session=NewCustomerSessionV2(
                profile_id="", coupon_codes=[], cart_items=[], referral_code="", attributes={}
            )
        ),
    ),
    (
        "IntegrationRequest",
        IntegrationRequest(customer_session=NewCustomerSessionV2(state="cancelled")),
    ),
    (
        "IntegrationEventV2Request",
        IntegrationEventV2Request(
            type="newsletter_signup",
            profile_id="cust-42",
            store_integration_id="store-7",
            evaluable_campaign_ids=[3],
            attributes={"SubscriptionType": "weekly"},
            loyalty_cards=["card-1"],
            response_content=[
                "customerProfile",
                "triggeredCampaigns",
                "loyalty",
                "event",
                "awardedGiveaways",
                "ruleFailureReasons",
            ],
        ),
    ),
    (
        "IntegrationEventV2Request",
        IntegrationEventV2Request(type="page_view", profile_id="guest-1"),
    ),
    (
        "ReturnIntegrationRequest",
        ReturnIntegrationRequest(
            return_=NewReturn(
                returned_cart_items=[
                    ReturnedCartItem(position=1, quantity=1),
                    ReturnedCartItem(sku="SKU-2", quantity=2),
                ]
            ),
            response_content=["customerSession", "previousReturns"],
        ),
    ),
    (
        "ReturnIntegrationRequest",
        ReturnIntegrationRequest(return_=NewReturn(returned_cart_items=[])),
    ),
]

# Request fields the SDK has and we deliberately do not send: the server computes them.
SERVER_COMPUTED = {
    "CartItem": {
        "returnedQuantity",
        "remainingQuantity",
        "position",
        "catalogItemID",
        "selectedPriceType",
        "adjustmentReferenceId",
        "adjustmentEffectiveFrom",
        "adjustmentEffectiveUntil",
        "prices",
    }
}


def wire_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def sdk_json(model: Any) -> str:
    """The SDK's own `to_json()`, plus the datetime handling it lacks (json.dumps of to_dict)."""
    return json.dumps(model.to_dict(), default=lambda value: value.isoformat())


def assert_kept(ours: Any, theirs: Any, where: str = "$") -> None:
    """Every value we model equals the SDK's (ours may drop fields the bridge does not use)."""
    if isinstance(ours, dict):
        assert isinstance(theirs, dict), where
        for key, value in ours.items():
            assert key in theirs, f"{where}.{key} is not in the SDK's data"
            assert_kept(value, theirs[key], f"{where}.{key}")
    elif isinstance(ours, list):
        assert isinstance(theirs, list), where
        assert len(ours) == len(theirs), where
        for index, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
            assert_kept(mine, other, f"{where}[{index}]")
    else:
        if isinstance(theirs, datetime) and isinstance(ours, str):
            ours = datetime.fromisoformat(ours)  # a pass-through entity keeps the wire text
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


# ---------------------------------------------------------------- requests


@pytest.mark.parametrize(("sdk_name", "ours"), REQUESTS)
def test_sdk_accepts_our_request_bodies_without_loss(sdk_name: str, ours: BaseModel) -> None:
    text = ours.to_json().decode()  # type: ignore[attr-defined]
    parsed = getattr(sdk, sdk_name).from_json(text)
    assert parsed is not None
    assert parsed.to_dict() == orjson.loads(text)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (IntegrationRequest, sdk.IntegrationRequest),
        (NewCustomerSessionV2, sdk.NewCustomerSessionV2),
        (CartItem, sdk.CartItem),
        (AdditionalCost, sdk.AdditionalCost),
        (IntegrationEventV2Request, sdk.IntegrationEventV2Request),
        (ReturnIntegrationRequest, sdk.ReturnIntegrationRequest),
        (NewReturn, sdk.NewReturn),
        (ReturnedCartItem, sdk.ReturnedCartItem),
    ],
)
def test_request_models_cover_exactly_the_sdk_fields(
    ours: type[BaseModel], theirs: type[BaseModel]
) -> None:
    # No field the SDK would drop, and nothing settable left out.
    assert wire_names(ours) == wire_names(theirs) - SERVER_COMPUTED.get(theirs.__name__, set())


def test_sdk_default_state_is_what_we_send() -> None:
    ours = orjson.loads(IntegrationRequest(customer_session=NewCustomerSessionV2()).to_json())
    assert sdk.NewCustomerSessionV2().to_dict() == ours["customerSession"]


# ---------------------------------------------------------------- responses

EFFECT_PROPS: dict[str, Any] = {
    "acceptCoupon": sdk.AcceptCouponEffectProps(value="XMAS-20"),
    "rejectCoupon": sdk.RejectCouponEffectProps(
        value="COUP-XYZ789",
        rejection_reason="CouponExpired",
        condition_index=0,
        effect_index=1,
        details="expired on 2026-01-01",
        campaign_exclusion_reason="CampaignGaveLowerDiscount",
    ),
    "setDiscount": sdk.SetDiscountEffectProps(
        name="20% off", value=20, scope="sessionTotal", desired_value=21.5
    ),
    "setDiscountPerItem": sdk.SetDiscountPerItemEffectProps(
        name="5off#1",
        value=5,
        position=1,
        sub_position=0,
        desired_value=5,
        scope="price",
        total_discount=5,
        desired_total_discount=5,
        bundle_index=0,
        bundle_name="bundle",
        targeted_item_position=1,
        targeted_item_sub_position=0,
    ),
    "addLoyaltyPoints": sdk.AddLoyaltyPointsEffectProps(
        name="10 points",
        program_id=4,
        sub_ledger_id="",
        value=10,
        recipient_integration_id="cust-42",
        transaction_uuid="a3b6a7c8-8d9e-4f00-9a1b-2c3d4e5f6a7b",
        desired_value=10,
        start_date=CREATED,
        expiry_date=UPDATED,
        cart_item_position=0,
        cart_item_sub_position=0,
        card_identifier="card-1",
        awaits_activation=False,
    ),
    "deductLoyaltyPoints": sdk.DeductLoyaltyPointsEffectProps(
        rule_title="redeem",
        program_id=4,
        sub_ledger_id="",
        value=5,
        transaction_uuid="b3b6a7c8-8d9e-4f00-9a1b-2c3d4e5f6a7b",
        name="redeem 5",
        card_identifier="card-1",
    ),
    "couponCreated": sdk.CouponCreatedEffectProps(value="WELCOME-1", profile_id="cust-42"),
    "rollbackDiscount": sdk.RollbackDiscountEffectProps(
        name="5off#1",
        value=5,
        cart_item_position=1,
        cart_item_sub_position=0,
        additional_cost_id=2,
        additional_cost="shipping",
        scope="price",
    ),
    "customEffect": sdk.CustomEffectProps(
        effect_id=7,
        name="banner",
        payload={"text": "Hello", "nested": {"list": [1, 2]}},
        cart_item_position=0,
        cart_item_sub_position=0,
        bundle_index=0,
        bundle_name="bundle",
    ),
    "addFreeItem": sdk.AddFreeItemEffectProps(sku="GIFT-1", name="free gift", desired_quantity=1),
    "showNotification": sdk.ShowNotificationEffectProps(
        notification_type="Offer", title="Almost there", body="Add 10 EUR for free shipping"
    ),
    "updateAttribute": sdk.UpdateAttributeEffectProps(
        path="Session.Attributes.Segment", value={"tier": "gold"}
    ),
}


def sdk_effect(effect_type: str, props: Any, index: int = 0) -> Any:
    return sdk.Effect(
        campaign_id=12,
        ruleset_id=34,
        rule_index=index,
        rule_name=f"rule {effect_type}",
        effect_type=effect_type,
        triggered_by_coupon=991,
        triggered_for_catalog_item=5,
        condition_index=0,
        evaluation_group_id=3,
        evaluation_group_mode="stackable",
        campaign_revision_id=8,
        campaign_revision_version_id=9,
        selected_price_type="member",
        selected_price=59.5,
        props=None if props is None else json.loads(sdk_json(props)),
    )


def sdk_session(**changes: Any) -> Any:
    fields: dict[str, Any] = {
        "id": 4821,
        "created": CREATED,
        "integration_id": "order-1001",
        "application_id": 7,
        "profile_id": "cust-42",
        "store_integration_id": "store-7",
        "coupon_codes": ["XMAS-20"],
        "referral_code": "REF-1234",
        "loyalty_cards": ["card-1"],
        "state": "closed",
        "cart_items": [
            sdk.CartItem(
                name="Shoes", sku="SKU-1", quantity=1, price=60, position=0, remaining_quantity=1
            ),
            sdk.CartItem(
                name="Shirt",
                sku="SKU-2",
                quantity=2,
                price=20,
                position=1,
                returned_quantity=1,
                remaining_quantity=1,
                attributes={"color": "blue"},
            ),
        ],
        "additional_costs": {"shipping": sdk.AdditionalCost(price=5)},
        "identifiers": ["hash"],
        "attributes": {"ShippingCity": "Berlin"},
        "first_session": False,
        "update_count": 3,
        "total": 105,
        "cart_item_total": 100,
        "additional_cost_total": 5,
        "updated": UPDATED,
    }
    return sdk.CustomerSessionV2(**{**fields, **changes})


def sdk_return(return_id: int) -> Any:
    return sdk.ModelReturn(
        id=return_id,
        created=UPDATED,
        application_id=7,
        account_id=1,
        returned_cart_items=[sdk.ReturnedCartItem(position=1, quantity=1)],
        event_id=9001,
        session_id=4821,
        session_integration_id="order-1001",
        profile_id=55,
        profile_integration_id="cust-42",
        created_by=2,
    )


CREATED_COUPON = sdk.Coupon(
    id=1,
    created=CREATED,
    campaign_id=12,
    value="WELCOME-1",
    usage_limit=1,
    usage_counter=0,
    recipient_integration_id="cust-42",
    expiry_date=UPDATED,
    attributes={"source": "effect"},
)
CREATED_REFERRAL = sdk.Referral(
    id=2,
    created=CREATED,
    campaign_id=12,
    advocate_profile_integration_id="cust-42",
    code="REF-1234",
    usage_counter=0,
    usage_limit=5,
)


@pytest.mark.parametrize("effect_type", sorted(EFFECT_PROPS))
def test_each_common_effect_type_parses_without_loss(effect_type: str) -> None:
    effect = sdk_effect(effect_type, EFFECT_PROPS[effect_type])
    ours = Effect.model_validate_json(sdk_json(effect))
    assert ours.effect_type == effect_type
    # Effects are republished as they are: nothing may be dropped, props stay wire-shaped.
    assert ours.model_dump(by_alias=True, exclude_none=True) == effect.to_dict()
    assert ours.props == json.loads(sdk_json(EFFECT_PROPS[effect_type]))


def test_effect_with_null_props() -> None:
    effect = sdk_effect("customEffect", None)
    assert Effect.model_validate_json(sdk_json(effect)).props is None


def test_update_and_return_response_built_by_the_sdk() -> None:
    effects = [sdk_effect(name, props, i) for i, (name, props) in enumerate(EFFECT_PROPS.items())]
    state = sdk.IntegrationStateV2(
        customer_session=sdk_session(state="partially_returned"),
        effects=effects,
        created_coupons=[CREATED_COUPON],
        created_referrals=[CREATED_REFERRAL],
        var_return=sdk_return(77),
        previous_returns=[sdk_return(76), sdk_return(77)],
    )
    text = sdk_json(state)
    assert sdk.IntegrationStateV2.from_json(text) is not None  # the SDK reads its own output
    ours = IntegrationStateV2.model_validate_json(text)
    theirs = state.to_dict()
    assert ours.customer_session is not None
    assert ours.customer_session.state == "partially_returned"
    # Session and effects keep everything; the rest keeps every field we model.
    assert (
        ours.customer_session.model_dump(by_alias=True, exclude_none=True)
        == (theirs["customerSession"])
    )
    assert [e.model_dump(by_alias=True, exclude_none=True) for e in ours.effects] == (
        theirs["effects"]
    )
    assert_kept(ours.model_dump(by_alias=True, exclude_none=True), theirs)
    assert ours.return_ is not None
    assert ours.return_.id == 77
    assert [r.id for r in ours.previous_returns or []] == [76, 77]
    assert ours.created_coupons[0].value == "WELCOME-1"
    assert ours.created_referrals[0].code == "REF-1234"
    assert_summary_matches(text, ours)


def assert_summary_matches(text: str, full: IntegrationStateV2 | TrackEventV2Response) -> None:
    """The lean reading carries exactly what the full model says the bridge republishes."""
    summary = IntegrationSummary.from_json(text.encode())
    assert [effect_view(e) for e in summary.effects] == [effect_view(e) for e in full.effects]
    assert [(c.id, c.campaign_id, c.value) for c in summary.created_coupons] == [
        (c.id, c.campaign_id, c.value) for c in full.created_coupons
    ]
    assert [(r.id, r.campaign_id, r.code) for r in summary.created_referrals] == [
        (r.id, r.campaign_id, r.code) for r in full.created_referrals
    ]
    session = getattr(full, "customer_session", None)
    if session is None:
        assert summary.customer_session is None
    else:
        assert summary.customer_session is not None
        assert summary.customer_session.state == session.state


_EFFECT_FIELDS = (
    "campaign_id",
    "ruleset_id",
    "rule_index",
    "rule_name",
    "effect_type",
    "triggered_by_coupon",
    "triggered_for_catalog_item",
    "condition_index",
    "evaluation_group_id",
    "evaluation_group_mode",
    "campaign_revision_id",
    "campaign_revision_version_id",
)


def effect_view(effect: Effect | EffectRecord) -> dict[str, Any]:
    """The fields of an effect that the effects record carries, props parsed."""
    view = {name: getattr(effect, name) for name in _EFFECT_FIELDS}
    view["props"] = orjson.loads(effect.props) if isinstance(effect, EffectRecord) else effect.props
    return view


def test_minimal_sdk_response() -> None:
    state = sdk.IntegrationStateV2(effects=[], created_coupons=[], created_referrals=[])
    ours = IntegrationStateV2.model_validate_json(sdk_json(state))
    assert (ours.effects, ours.created_coupons, ours.created_referrals) == ([], [], [])
    assert_summary_matches(sdk_json(state), ours)


def test_track_event_response_built_by_the_sdk() -> None:
    profile = sdk.CustomerProfile(
        id=55,
        created=CREATED,
        integration_id="cust-42",
        attributes={"Tier": "gold"},
        account_id=1,
        closed_sessions=3,
        total_sales=250.5,
        last_activity=UPDATED,
    )
    response = sdk.TrackEventV2Response(
        customer_profile=profile,
        effects=[sdk_effect("couponCreated", EFFECT_PROPS["couponCreated"])],
        created_coupons=[CREATED_COUPON],
        created_referrals=[],
    )
    text = sdk_json(response)
    ours = TrackEventV2Response.model_validate_json(text)
    assert ours.customer_profile == json.loads(text)["customerProfile"]
    assert_kept(ours.model_dump(by_alias=True, exclude_none=True), response.to_dict())
    assert_summary_matches(text, ours)


def test_error_bodies_built_by_the_sdk() -> None:
    error = sdk.ErrorResponse(
        message="The submitted data was invalid",
        errors=[
            sdk.APIError(
                title="Unknown",
                details='The attribute "MyAttribute" is not defined.',
                source=sdk.ErrorSource(pointer="/attributes/MyAttribute"),
            ),
            sdk.APIError(title="enum", source=sdk.ErrorSource(parameter="dry", line="N/A")),
        ],
    )
    ours = ErrorResponse.model_validate_json(sdk_json(error))
    assert ours.model_dump(by_alias=True, exclude_none=True) == error.to_dict()

    with_status = sdk.ErrorResponseWithStatus(
        message="Unauthorized - Invalid API key", errors=[], status_code=401
    )
    parsed = ErrorResponseWithStatus.model_validate_json(sdk_json(with_status))
    assert parsed.model_dump(by_alias=True, exclude_none=True) == with_status.to_dict()

    conflict = sdk.UpdateCustomerSessionV2409Response(
        message="Too many requests are updating this session at the same time",
        errors=[],
        status_code=409,
    )
    parsed = ErrorResponseWithStatus.model_validate_json(sdk_json(conflict))
    assert parsed.status_code == 409
    assert parsed.message == conflict.message
