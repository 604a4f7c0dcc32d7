"""Typed handlers: one per command type, turning a command into its Talon.One call.

Each builds the request body and checks it against its request model (whose constraints are
the API's documented ones, so a command Talon.One would reject never leaves the bridge),
calls the client with the command's Idempotency-Key, and maps the response to the records
published on Kafka.

Events go through trackEventV3 when the command is a `TrackEventV3`, or when the handlers
are told to send plain `TrackEvent` commands there too (``BRIDGE_TALON_EVENTS_API=v3``). Its
"already exists" 409 is a success: the event was registered by an earlier delivery of the
same command, so its stored effects (getEventV3) are published, and the deduplication is
reported through `on_deduplicated`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from pydantic import BaseModel, ValidationError

from bridge.commands import (
    Command,
    CreatedCouponRecord,
    CreatedReferralRecord,
    EffectRecord,
    EffectsEmitted,
    ReturnCartItems,
    SessionState,
    TrackEvent,
    TrackEventV3,
    UpdateCustomerSession,
)
from bridge.errors import EventExistsError, InvalidCommandError
from bridge.kafka.records import InputRecord
from bridge.limits import check_event, check_event_id, check_return, check_session
from bridge.talon import models as m
from bridge.talon.bodies import Prepared, prepare, prepare_with
from bridge.talon.client import ApiResult, TalonClient, idempotency_key_for
from bridge.talon.summary import EventSummary, IntegrationSummary
from bridge.types import EventsApi
from bridge.worker.cart_json import CartJson, line_body

__all__ = ["Applied", "Handlers"]

_R = TypeVar("_R", bound=BaseModel)

# Ask for the session back so the effects record can carry the state after the call.
_SESSION_CONTENT = ["customerSession"]
# Where a session update's cart sits in the request model.
_CART_PATH = ("customer_session", "cart_items")


class Applied(msgspec.Struct, frozen=True, gc=False):
    """What Talon.One decided for one command."""

    session_state: SessionState | None
    effects: list[EffectRecord]
    created_coupons: list[CreatedCouponRecord]
    created_referrals: list[CreatedReferralRecord]
    replayed: bool
    status: int = 200  # the HTTP status of the answer

    def record(self, cmd: Command, rec: InputRecord, processed_at_ms: int) -> EffectsEmitted:
        """The effects record published for `cmd`, read from `rec`."""
        return EffectsEmitted(
            event_id=cmd.event_id,
            session_id=cmd.session_id,
            profile_id=cmd.profile_id,
            command_type=cmd.command_type,
            source_topic=rec.topic,
            source_partition=rec.partition,
            source_offset=rec.offset,
            processed_at_ms=processed_at_ms,
            session_state=self.session_state,
            effects=self.effects,
            created_coupons=self.created_coupons,
            created_referrals=self.created_referrals,
            dry=cmd.dry,
        )


def _applied(result: ApiResult[IntegrationSummary], state: SessionState | None) -> Applied:
    body = result.value
    return Applied(
        session_state=state,
        effects=body.effects,
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
        status=result.status,
    )


# Errors named in a dead letter; the others are only counted.
_REPORTED_ERRORS = 3


def _invalid(exc: ValidationError) -> InvalidCommandError:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    # Bodies are validated under their wire names, so `loc` is the JSON pointer.
    pointers = ["".join(f"/{p}" for p in e["loc"]) for e in errors[:_REPORTED_ERRORS]]
    first = errors[0]
    # The message names the fields and the rule, never the offending value.
    message = f"{first['type']}: {first['msg']}"
    if len(errors) > 1:
        named = ", ".join(pointers[1:])
        more = len(errors) - len(pointers)
        message += f"; also {named}" + (f" and {more} more" if more else "")
    return InvalidCommandError(message, pointers[0])


def _validated(model: type[_R], body: dict[str, Any]) -> _R | Prepared[_R]:
    # One check of the whole document, against msgspec types derived from the model (pydantic
    # only where those refuse it), so that errors carry their full location.
    try:
        return prepare(model, body)
    except ValidationError as exc:
        raise _invalid(exc) from None


def session_request(
    p: UpdateCustomerSession, carts: CartJson | None = None, session_id: str = ""
) -> m.IntegrationRequest | Prepared[m.IntegrationRequest]:
    """The body of `p`'s updateCustomerSessionV2; its cart's JSON from `carts` when given."""
    check_session(p)
    items = p.cart_items
    costs = p.additional_costs
    session: dict[str, Any] = {
        "profileId": p.profile_id,
        "storeIntegrationId": p.store_integration_id,
        "couponCodes": p.coupon_codes,
        "referralCode": p.referral_code,
        "loyaltyCards": p.loyalty_cards,
        "state": p.state,
        "cartItems": None,
        "additionalCosts": None
        if costs is None
        else {k: {"price": v.price} for k, v in costs.items()},
        "identifiers": p.identifiers,
        "attributes": p.attributes,
    }
    body = {"customerSession": session, "responseContent": _SESSION_CONTENT}
    if items is not None and carts is not None:
        cart = carts.json(session_id, items, keep=p.state == "open")
        if cart is not None:
            prepared = prepare_with(m.IntegrationRequest, body, _CART_PATH, cart)
            if prepared is not None:
                return prepared
    if items is not None:
        session["cartItems"] = [line_body(i) for i in items]
    return _validated(m.IntegrationRequest, body)


def event_request(
    p: TrackEvent,
) -> m.IntegrationEventV2Request | Prepared[m.IntegrationEventV2Request]:
    check_event(p)
    return _validated(
        m.IntegrationEventV2Request,
        {
            "type": p.type,
            "profileId": p.profile_id,
            "storeIntegrationId": p.store_integration_id,
            "attributes": p.attributes or None,
            "loyaltyCards": p.loyalty_cards or None,
        },
    )


def event_v3_request(
    p: TrackEvent | TrackEventV3, integration_id: str
) -> m.IntegrationEventV3Request | Prepared[m.IntegrationEventV3Request]:
    check_event(p)
    return _validated(
        m.IntegrationEventV3Request,
        {
            "type": p.type,
            "profileId": p.profile_id,
            "integrationId": integration_id,
            "storeIntegrationId": p.store_integration_id,
            "attributes": p.attributes or None,
            "loyaltyCards": p.loyalty_cards or None,
        },
    )


def return_request(
    p: ReturnCartItems,
) -> m.ReturnIntegrationRequest | Prepared[m.ReturnIntegrationRequest]:
    check_return(p)
    items = [
        {"position": i.position, "quantity": i.quantity, "sku": i.sku}
        for i in p.returned_cart_items
    ]
    return _validated(
        m.ReturnIntegrationRequest,
        {"return": {"returnedCartItems": items}, "responseContent": _SESSION_CONTENT},
    )


class Handlers:
    """Applies commands through one `TalonClient`.

    Args:
        client: The Talon.One client.
        events_api: Where plain `TrackEvent` commands go: ``v2`` (trackEventV2) or ``v3``.
        on_deduplicated: Called once per event trackEventV3 found registered already.
    """

    def __init__(
        self,
        client: TalonClient,
        *,
        events_api: EventsApi = "v2",
        on_deduplicated: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.events_api = events_api
        self.on_deduplicated = on_deduplicated
        self._carts = CartJson()

    async def _event_v3(self, cmd: Command, payload: TrackEvent | TrackEventV3) -> Applied:
        integration_id = cmd.event_integration_id
        try:
            event = await self.client.track_event_v3(
                event_v3_request(payload, integration_id),
                dry=cmd.dry,
                idempotency_key=idempotency_key_for(cmd.event_id),
                event_id=cmd.event_id,
                model=IntegrationSummary,
            )
        except EventExistsError:
            # Registered by an earlier delivery of this command: publish what it decided then.
            stored = await self.client.get_event_v3(
                integration_id, event_id=cmd.event_id, model=EventSummary
            )
            if self.on_deduplicated is not None:
                self.on_deduplicated()
            return Applied(None, stored.value.effects, [], [], replayed=False)
        return _applied(event, None)

    async def apply(self, cmd: Command) -> Applied:
        """Apply `cmd`; raises the client's ApiError subclasses or InvalidCommandError."""
        check_event_id(cmd.event_id)  # an empty one would fail the key below as a ValueError
        payload = cmd.payload
        key = idempotency_key_for(cmd.event_id)
        if isinstance(payload, UpdateCustomerSession):
            result = await self.client.update_customer_session(
                cmd.session_id,
                session_request(payload, self._carts, cmd.session_id),
                dry=cmd.dry,
                idempotency_key=key,
                event_id=cmd.event_id,
                model=IntegrationSummary,
            )
            session = result.value.customer_session
            return _applied(result, session.state if session else payload.state)
        if isinstance(payload, TrackEventV3) or (
            isinstance(payload, TrackEvent) and self.events_api == "v3"
        ):
            return await self._event_v3(cmd, payload)
        if isinstance(payload, TrackEvent):
            event = await self.client.track_event(
                event_request(payload),
                dry=cmd.dry,
                idempotency_key=key,
                event_id=cmd.event_id,
                model=IntegrationSummary,
            )
            return _applied(event, None)
        ret = await self.client.return_cart_items(
            cmd.session_id,
            return_request(payload),
            dry=cmd.dry,
            idempotency_key=key,
            event_id=cmd.event_id,
            model=IntegrationSummary,
        )
        session = ret.value.customer_session
        return _applied(ret, session.state if session else None)
