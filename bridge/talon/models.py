"""Wire models of the Talon.One Integration API calls the bridge makes.

Owns the request bodies of updateCustomerSessionV2, trackEventV2 and returnCartItems, the
response bodies they return, and the error bodies Talon.One sends with 4xx answers. Field
names are snake_case in Python and camelCase on the wire (`by_alias`); both spellings are
accepted when building a model.

Requests are strict: unknown keyword arguments are rejected, the constraints the official SDK
checks client-side are checked here too, and `to_json()` leaves out unset (None) fields while
keeping empty lists and maps, because `couponCodes: []` means "discard the stored coupons" to
Talon.One. `NewCustomerSessionV2.state` is never None, so it is always sent.

Responses are lenient: unknown fields never fail parsing. The session and the effects keep them
(`model_extra`), since those are what the bridge republishes; elsewhere they are dropped.
Entities the bridge only passes through (customer profile, loyalty, triggered campaigns, ...)
are kept as plain JSON objects instead of being modelled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from bridge.commands import SessionState

__all__ = [
    "APIError",
    "AdditionalCost",
    "CartItem",
    "Coupon",
    "CustomerSessionV2",
    "Effect",
    "ErrorResponse",
    "ErrorResponseWithStatus",
    "ErrorSource",
    "EventV3",
    "IntegrationEventV2Request",
    "IntegrationEventV3Request",
    "IntegrationEventV3Response",
    "IntegrationRequest",
    "IntegrationStateV2",
    "ModelReturn",
    "NewCustomerSessionV2",
    "NewReturn",
    "Referral",
    "ReturnIntegrationRequest",
    "ReturnedCartItem",
    "SessionCartItem",
    "SessionState",
    "TrackEventV2Response",
]

JsonObject: TypeAlias = dict[str, Any]

_Code = Annotated[str, StringConstraints(max_length=100)]
_StoreId = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
_NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class _Wire(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown response fields are dropped."""

    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel, extra="ignore")


class _Request(_Wire):
    """A request body: unknown fields are a programming error, not something to send."""

    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> bytes:
        """Serialize with wire names, leaving out None fields but keeping empty lists."""
        # The serializer's own bytes, without model_dump_json's round trip through str.
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude_none=True)


# ---------------------------------------------------------------- shared pieces


class AdditionalCost(_Wire):
    """The price of one additional cost (shipping, wrapping, ...)."""

    price: float


class ReturnedCartItem(_Wire):
    """Units of one cart line to return, by `position` (cart index) and/or `sku`."""

    position: int | None = None
    quantity: int | None = None
    sku: _NonEmpty | None = None


# ---------------------------------------------------------------- requests


class CartItem(_Request):
    """A cart line as sent in a session update."""

    sku: _NonEmpty
    quantity: Annotated[int, Field(ge=1)]
    name: str | None = None
    price: float | None = None
    category: str | None = None
    weight: float | None = None
    height: float | None = None
    width: float | None = None
    length: float | None = None
    product: JsonObject | None = None
    attributes: JsonObject | None = None
    additional_costs: dict[str, AdditionalCost] | None = None


class NewCustomerSessionV2(_Request):
    """The session part of an updateCustomerSessionV2 request.

    `state` defaults to ``"open"`` and is always sent. An empty `coupon_codes` list (or an
    empty `referral_code`) discards the stored value on a non-dry request; None leaves it as is.
    """

    profile_id: str | None = None
    store_integration_id: _StoreId | None = None
    evaluable_campaign_ids: list[int] | None = None
    coupon_codes: list[_Code] | None = None
    referral_code: _Code | None = None
    loyalty_cards: Annotated[list[str], Field(max_length=1)] | None = None
    state: SessionState = "open"
    cart_items: list[CartItem] | None = None
    additional_costs: dict[str, AdditionalCost] | None = None
    identifiers: Annotated[list[str], Field(max_length=5)] | None = None
    attributes: JsonObject | None = None


class IntegrationRequest(_Request):
    """Body of updateCustomerSessionV2: the session and which extra entities to return."""

    customer_session: NewCustomerSessionV2
    response_content: list[str] | None = None


class IntegrationEventV2Request(_Request):
    """Body of trackEventV2.

    `profile_id` is required: Talon.One rejects events without one although its schema marks
    the field optional.
    """

    type: _NonEmpty
    profile_id: str
    store_integration_id: _StoreId | None = None
    evaluable_campaign_ids: list[int] | None = None
    attributes: JsonObject | None = None
    loyalty_cards: Annotated[list[str], Field(max_length=1)] | None = None
    response_content: list[str] | None = None


class IntegrationEventV3Request(IntegrationEventV2Request):
    """Body of trackEventV3: trackEventV2's body plus the event's unique `integration_id`.

    Talon.One registers one event per integrationId and refuses a second one with a 409.
    """

    integration_id: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    connected_session_id: str | None = None
    previous_event_id: str | None = None


class NewReturn(_Request):
    """The `return` object of a returnCartItems request."""

    returned_cart_items: list[ReturnedCartItem]


class ReturnIntegrationRequest(_Request):
    """Body of returnCartItems. The wire name of `return_` is ``return``."""

    return_: NewReturn = Field(alias="return")
    response_content: list[str] | None = None


# ---------------------------------------------------------------- responses


class SessionCartItem(_Wire):
    """A cart line as Talon.One returns it, with the fields it computes (`position`, ...)."""

    model_config = ConfigDict(extra="allow")

    sku: str
    quantity: int
    name: str | None = None
    price: float | None = None
    category: str | None = None
    weight: float | None = None
    height: float | None = None
    width: float | None = None
    length: float | None = None
    product: JsonObject | None = None
    attributes: JsonObject | None = None
    additional_costs: dict[str, AdditionalCost] | None = None
    position: int | float | None = None
    returned_quantity: int | None = None
    remaining_quantity: int | None = None
    catalog_item_id: int | None = Field(default=None, alias="catalogItemID")
    selected_price_type: str | None = None


class CustomerSessionV2(_Wire):
    """A customer session as stored by Talon.One. Unknown fields are kept in `model_extra`.

    `state` is None only if Talon.One left it out; unlike the official SDK it is not
    silently assumed to be ``"open"``.
    """

    model_config = ConfigDict(extra="allow")

    id: int
    created: datetime
    integration_id: str
    application_id: int
    profile_id: str | None = None
    store_integration_id: str | None = None
    evaluable_campaign_ids: list[int] | None = None
    coupon_codes: list[str] | None = None
    referral_code: str | None = None
    loyalty_cards: list[str] | None = None
    state: SessionState | None = None
    cart_items: list[SessionCartItem] | None = None
    additional_costs: dict[str, AdditionalCost] | None = None
    identifiers: list[str] | None = None
    attributes: JsonObject | None = None
    first_session: bool
    update_count: int
    total: float
    cart_item_total: float
    additional_cost_total: float
    updated: datetime


class Effect(_Wire):
    """One effect of a rule. `props` depends on `effect_type`; unknown fields are kept."""

    model_config = ConfigDict(extra="allow")

    campaign_id: int
    ruleset_id: int
    rule_index: int
    rule_name: str
    effect_type: str
    props: JsonObject | None = None
    triggered_by_coupon: int | None = None
    triggered_for_catalog_item: int | None = None
    condition_index: int | None = None
    evaluation_group_id: int | None = Field(default=None, alias="evaluationGroupID")
    evaluation_group_mode: str | None = None
    campaign_revision_id: int | None = None
    campaign_revision_version_id: int | None = None
    selected_price_type: str | None = None
    selected_price: float | None = None
    adjustment_reference_id: str | None = None


class Coupon(_Wire):
    """A coupon, as listed in `createdCoupons`."""

    id: int
    created: datetime
    campaign_id: int
    value: str | None = None
    usage_limit: int | None = None
    usage_counter: int
    start_date: datetime | None = None
    expiry_date: datetime | None = None
    recipient_integration_id: str | None = None
    referral_id: int | None = None
    batch_id: str | None = None
    attributes: JsonObject | None = None


class Referral(_Wire):
    """A referral code, as listed in `createdReferrals`."""

    id: int
    created: datetime
    campaign_id: int
    advocate_profile_integration_id: str
    friend_profile_integration_id: str | None = None
    code: str
    usage_counter: int
    usage_limit: int | None = None
    start_date: datetime | None = None
    expiry_date: datetime | None = None
    batch_id: str | None = None
    attributes: JsonObject | None = None


class ModelReturn(_Wire):
    """A stored return of cart items (`return` and `previousReturns` in a response)."""

    id: int
    created: datetime
    application_id: int
    account_id: int
    returned_cart_items: list[ReturnedCartItem]
    event_id: int
    session_id: int
    session_integration_id: str
    profile_id: int | None = None
    profile_integration_id: str | None = None
    created_by: int | None = None


class IntegrationStateV2(_Wire):
    """Response of updateCustomerSessionV2 and returnCartItems.

    `effects`, `created_coupons` and `created_referrals` are always present (possibly empty).
    The optional entities appear when asked for in `responseContent`.
    """

    customer_session: CustomerSessionV2 | None = None
    customer_profile: JsonObject | None = None
    event: JsonObject | None = None
    loyalty: JsonObject | None = None
    referral: JsonObject | None = None
    coupons: list[JsonObject] | None = None
    triggered_campaigns: list[JsonObject] | None = None
    effects: list[Effect]
    rule_failure_reasons: list[JsonObject] | None = None
    created_coupons: list[Coupon]
    created_referrals: list[Referral]
    awarded_giveaways: list[JsonObject] | None = None
    return_: ModelReturn | None = Field(default=None, alias="return")
    previous_returns: list[ModelReturn] | None = None


class TrackEventV2Response(_Wire):
    """Response of trackEventV2 with ``silent=no``."""

    customer_profile: JsonObject | None = None
    event: JsonObject | None = None
    loyalty: JsonObject | None = None
    triggered_campaigns: list[JsonObject] | None = None
    rule_failure_reasons: list[JsonObject] | None = None
    awarded_giveaways: list[JsonObject] | None = None
    effects: list[Effect]
    created_coupons: list[Coupon]
    created_referrals: list[Referral]


class EventV3(_Wire):
    """An event registered through trackEventV3, as getEventV3 returns it."""

    id: int
    created: datetime
    application_id: int
    profile_id: str | None = None
    store_integration_id: str | None = None
    type: str
    attributes: JsonObject
    integration_id: str | None = None
    connected_session_id: str | None = None
    effects: list[Effect]


class IntegrationEventV3Response(TrackEventV2Response):
    """Response of trackEventV3 with ``silent=no``: trackEventV2's, with an EventV3 event."""


# ---------------------------------------------------------------- errors


class ErrorSource(_Wire):
    """Where an error comes from; normally exactly one of pointer, parameter or line is set."""

    pointer: str | None = None
    parameter: str | None = None
    line: str | None = None
    resource: str | None = None


class APIError(_Wire):
    """One problem found in a request, e.g. an unknown attribute at ``/attributes/x``."""

    title: str
    details: str | None = None
    source: ErrorSource


class ErrorResponse(_Wire):
    """Error body with a required message (400 on session updates and returns)."""

    message: str
    errors: list[APIError] | None = None


class ErrorResponseWithStatus(_Wire):
    """Error body carrying its status code (401, 409, and 400 on events)."""

    message: str | None = None
    errors: list[APIError] | None = None
    status_code: int | None = Field(default=None, alias="StatusCode")
