"""Typed handlers: one per command type, turning a command into its Talon.One call.

Each builds the request model (whose validation enforces the API's documented constraints,
so a command Talon.One would reject never leaves the bridge), calls the client with the
command's Idempotency-Key, and maps the response to the records published on Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from bridge.commands import (
    Command,
    CreatedCouponRecord,
    CreatedReferralRecord,
    EffectRecord,
    ReturnCartItems,
    SessionState,
    TrackEvent,
    UpdateCustomerSession,
)
from bridge.errors import InvalidCommandError
from bridge.talon import models as m
from bridge.talon.client import ApiResult, TalonClient, idempotency_key_for

__all__ = ["Applied", "Handlers"]

# Ask for the session back so the effects record can carry the state after the call.
_SESSION_CONTENT = ["customerSession"]


@dataclass(frozen=True, slots=True)
class Applied:
    """What Talon.One decided for one command."""

    session_state: SessionState | None
    effects: list[EffectRecord]
    created_coupons: list[CreatedCouponRecord]
    created_referrals: list[CreatedReferralRecord]
    replayed: bool


def _effects(effects: list[m.Effect]) -> list[EffectRecord]:
    return [
        EffectRecord(
            campaign_id=e.campaign_id,
            ruleset_id=e.ruleset_id,
            rule_index=e.rule_index,
            rule_name=e.rule_name,
            effect_type=e.effect_type,
            props=orjson.dumps(e.props).decode() if e.props is not None else "null",
            triggered_by_coupon=e.triggered_by_coupon,
            triggered_for_catalog_item=e.triggered_for_catalog_item,
            condition_index=e.condition_index,
            evaluation_group_id=e.evaluation_group_id,
            evaluation_group_mode=e.evaluation_group_mode,
            campaign_revision_id=e.campaign_revision_id,
            campaign_revision_version_id=e.campaign_revision_version_id,
        )
        for e in effects
    ]


def _applied(result: ApiResult[m.IntegrationSummary], state: SessionState | None) -> Applied:
    body = result.value
    return Applied(
        session_state=state,
        effects=_effects(body.effects),
        created_coupons=[
            CreatedCouponRecord(id=c.id, campaign_id=c.campaign_id, value=c.value or "")
            for c in body.created_coupons
        ],
        created_referrals=[
            CreatedReferralRecord(
                id=r.id,
                campaign_id=r.campaign_id,
                code=r.code,
                advocate_profile_integration_id=r.advocate_profile_integration_id,
            )
            for r in body.created_referrals
        ],
        replayed=result.replayed,
    )


def _invalid(exc: ValidationError, root: str) -> InvalidCommandError:
    err = exc.errors()[0]
    pointer = root + "".join(f"/{p}" for p in err["loc"])
    # The message names the field and the rule, never the offending value.
    return InvalidCommandError(f"{err['type']}: {err['msg']}", pointer)


def session_request(p: UpdateCustomerSession) -> m.IntegrationRequest:
    try:
        session = m.NewCustomerSessionV2(
            profile_id=p.profile_id,
            store_integration_id=p.store_integration_id,
            coupon_codes=p.coupon_codes,
            referral_code=p.referral_code,
            loyalty_cards=p.loyalty_cards,
            state=p.state,
            cart_items=None
            if p.cart_items is None
            else [
                m.CartItem(
                    sku=i.sku,
                    quantity=i.quantity,
                    price=i.price,
                    name=i.name,
                    category=i.category,
                    attributes=i.attributes or None,
                )
                for i in p.cart_items
            ],
            additional_costs=None
            if p.additional_costs is None
            else {k: m.AdditionalCost(price=v.price) for k, v in p.additional_costs.items()},
            identifiers=p.identifiers,
            attributes=p.attributes,
        )
    except ValidationError as exc:
        raise _invalid(exc, "/customerSession") from None
    return m.IntegrationRequest(customer_session=session, response_content=_SESSION_CONTENT)


def event_request(p: TrackEvent) -> m.IntegrationEventV2Request:
    try:
        return m.IntegrationEventV2Request(
            type=p.type,
            profile_id=p.profile_id,
            store_integration_id=p.store_integration_id,
            attributes=p.attributes or None,
            loyalty_cards=p.loyalty_cards or None,
        )
    except ValidationError as exc:
        raise _invalid(exc, "") from None


def return_request(p: ReturnCartItems) -> m.ReturnIntegrationRequest:
    try:
        return m.ReturnIntegrationRequest(
            return_=m.NewReturn(
                returned_cart_items=[
                    m.ReturnedCartItem(position=i.position, quantity=i.quantity, sku=i.sku)
                    for i in p.returned_cart_items
                ]
            ),
            response_content=_SESSION_CONTENT,
        )
    except ValidationError as exc:
        raise _invalid(exc, "/return") from None


class Handlers:
    """Applies commands through one `TalonClient`."""

    def __init__(self, client: TalonClient) -> None:
        self.client = client

    async def apply(self, cmd: Command) -> Applied:
        """Apply `cmd`; raises the client's ApiError subclasses or InvalidCommandError."""
        payload = cmd.payload
        key = idempotency_key_for(cmd.event_id)
        if isinstance(payload, UpdateCustomerSession):
            result = await self.client.update_customer_session(
                cmd.session_id,
                session_request(payload),
                dry=cmd.dry,
                idempotency_key=key,
                event_id=cmd.event_id,
                model=m.IntegrationSummary,
            )
            session = result.value.customer_session
            return _applied(result, session.state if session else payload.state)
        if isinstance(payload, TrackEvent):
            event = await self.client.track_event(
                event_request(payload),
                dry=cmd.dry,
                idempotency_key=key,
                event_id=cmd.event_id,
                model=m.IntegrationSummary,
            )
            return _applied(event, None)
        ret = await self.client.return_cart_items(
            cmd.session_id,
            return_request(payload),
            dry=cmd.dry,
            idempotency_key=key,
            event_id=cmd.event_id,
            model=m.IntegrationSummary,
        )
        session = ret.value.customer_session
        return _applied(ret, session.state if session else None)
