"""Typed commands read from Kafka and the effects record written back.

Field names mirror the Avro contracts in `schemas/avro/`, which in turn use the Talon.One wire
names (camelCase on the wire, snake_case here). Free-form attribute values are kept as decoded
JSON values (`JsonValue`); on the wire each one is a JSON document in an Avro string, see
`schemas/avro/README.md` for why.
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypeAlias

import msgspec

from bridge.types import CommandType

__all__ = [
    "AdditionalCost",
    "CartItem",
    "Command",
    "CommandType",
    "CreatedCouponRecord",
    "CreatedReferralRecord",
    "EffectRecord",
    "EffectsEmitted",
    "JsonValue",
    "Payload",
    "ReturnCartItems",
    "ReturnedCartItem",
    "SessionState",
    "TrackEvent",
    "TrackEventV3",
    "UpdateCustomerSession",
]

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
# A customer session's state, as Talon.One names it and the Avro contracts carry it.
SessionState: TypeAlias = Literal["open", "closed", "partially_returned", "cancelled"]


class _Value(msgspec.Struct, frozen=True, gc=False):
    """Immutable records built per command: msgspec builds them in C, several times faster
    than frozen dataclasses, and `gc=False` keeps them out of the garbage collector's scans
    (they never form cycles)."""


class TrackEvent(_Value, frozen=True):
    """trackEventV2: a custom event for a customer profile."""

    type: str
    profile_id: str
    attributes: dict[str, JsonValue] = msgspec.field(default_factory=dict)
    loyalty_cards: list[str] = msgspec.field(default_factory=list)
    store_integration_id: str | None = None

    command_type: ClassVar[CommandType] = "track_event"


class TrackEventV3(_Value, frozen=True):
    """trackEventV3: an event Talon.One registers once per `integration_id`.

    Without an `integration_id` the command's `eventId` is used (`event_integration_id`), so
    a command sent again (a redelivery, a replay) names the same event.
    """

    type: str
    profile_id: str
    attributes: dict[str, JsonValue] = msgspec.field(default_factory=dict)
    loyalty_cards: list[str] = msgspec.field(default_factory=list)
    store_integration_id: str | None = None
    integration_id: str | None = None

    command_type: ClassVar[CommandType] = "track_event_v3"


class CartItem(_Value, frozen=True):
    """A cart line as the command carries it (Avro record ``CartItem``). Talon.One's own cart
    line, with the API's constraints, is the request model `bridge.talon.models.CartItem`."""

    sku: str
    quantity: int
    price: float | None = None
    name: str | None = None
    category: str | None = None
    attributes: dict[str, JsonValue] = msgspec.field(default_factory=dict)


class AdditionalCost(_Value, frozen=True):
    """Avro record ``AdditionalCost``; its wire form is `bridge.talon.models.AdditionalCost`."""

    price: float


class UpdateCustomerSession(_Value, frozen=True):
    """updateCustomerSessionV2: create or update a session (cart, coupons, state)."""

    profile_id: str | None = None
    state: SessionState = "open"
    cart_items: list[CartItem] | None = None
    coupon_codes: list[str] | None = None
    referral_code: str | None = None
    loyalty_cards: list[str] | None = None
    identifiers: list[str] | None = None
    additional_costs: dict[str, AdditionalCost] | None = None
    attributes: dict[str, JsonValue] | None = None
    store_integration_id: str | None = None

    command_type: ClassVar[CommandType] = "update_customer_session"


class ReturnedCartItem(_Value, frozen=True):
    """Avro record ``ReturnedCartItem``; its wire form, which refuses an empty `sku`, is
    `bridge.talon.models.ReturnedCartItem`."""

    position: int | None = None
    quantity: int | None = None
    sku: str | None = None


class ReturnCartItems(_Value, frozen=True):
    """returnCartItems: return units of a closed session's cart."""

    returned_cart_items: list[ReturnedCartItem]

    command_type: ClassVar[CommandType] = "return_cart_items"


Payload: TypeAlias = TrackEvent | UpdateCustomerSession | ReturnCartItems | TrackEventV3


class Command(_Value, frozen=True):
    """The input envelope: one command for one customer session."""

    event_id: str
    session_id: str
    occurred_at_ms: int
    payload: Payload
    source: str | None = None
    dry: bool = False

    @property
    def command_type(self) -> CommandType:
        return self.payload.command_type

    @property
    def profile_id(self) -> str | None:
        return self.payload.profile_id if not isinstance(self.payload, ReturnCartItems) else None

    @property
    def event_integration_id(self) -> str:
        """The integrationId an event sent through trackEventV3 carries: the payload's own,
        else the command's `event_id`."""
        p = self.payload
        own = p.integration_id if isinstance(p, TrackEventV3) else None
        return own or self.event_id


class EffectRecord(_Value, frozen=True):
    """One Talon.One effect; `props` is the effect's props as JSON text."""

    campaign_id: int
    ruleset_id: int
    rule_index: int
    rule_name: str
    effect_type: str
    props: str
    triggered_by_coupon: int | None = None
    triggered_for_catalog_item: int | None = None
    condition_index: int | None = None
    evaluation_group_id: int | None = None
    evaluation_group_mode: str | None = None
    campaign_revision_id: int | None = None
    campaign_revision_version_id: int | None = None


class CreatedCouponRecord(_Value, frozen=True):
    id: int
    campaign_id: int
    value: str


class CreatedReferralRecord(_Value, frozen=True):
    id: int
    campaign_id: int
    code: str
    advocate_profile_integration_id: str


class EffectsEmitted(_Value, frozen=True):
    """The output record: what Talon.One decided for one applied command."""

    event_id: str
    session_id: str
    profile_id: str | None
    command_type: CommandType
    source_topic: str
    source_partition: int
    source_offset: int
    processed_at_ms: int
    session_state: SessionState | None
    effects: list[EffectRecord]
    created_coupons: list[CreatedCouponRecord] = msgspec.field(default_factory=list)
    created_referrals: list[CreatedReferralRecord] = msgspec.field(default_factory=list)
    dry: bool = False
