"""Customer sessions: the entity, its state machine and how an update changes it.

Pure functions over `Session` values; `bridge.simulator.state` decides when they apply, and
`bridge.simulator.returns` handles returnCartItems.

State machine (updateCustomerSessionV2 unless noted)::

    (new) --> open | closed
    open --> open | closed | cancelled
    closed --> cancelled
    closed --> partially_returned          returnCartItems only
    partially_returned --> cancelled
    partially_returned --> partially_returned   returnCartItems only

Any other requested transition is a 400 ErrorResponse whose error points at
``/customerSession/state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from bridge.simulator.rules import Effect, Ledger, cart_total, money
from bridge.simulator.validation import ApiFailure, api_error, invalid

__all__ = [
    "APPLICATION_ID",
    "Session",
    "check_transition",
    "merge",
    "rfc3339",
]

APPLICATION_ID: Final = 1

_ALLOWED: Final[dict[str, frozenset[str]]] = {
    "open": frozenset({"open", "closed", "cancelled"}),
    "closed": frozenset({"cancelled"}),
    "partially_returned": frozenset({"cancelled"}),
    "cancelled": frozenset(),
}
# Read-only cart item fields: the server computes them, whatever the client sends.
_SERVER_ITEM_FIELDS: Final = ("position", "returnedQuantity", "remainingQuantity")


def rfc3339(dt: datetime) -> str:
    """UTC timestamp with milliseconds and a ``Z`` suffix, as Talon.One sends them."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Session:
    """One customer session, keyed by its integration id."""

    internal_id: int
    integration_id: str
    created: str
    updated: str
    profile_id: str
    state: str
    first_session: bool
    update_count: int
    cart_items: list[dict[str, Any]] = field(default_factory=list)
    coupon_codes: list[str] = field(default_factory=list)
    referral_code: str | None = None
    loyalty_cards: list[str] = field(default_factory=list)
    identifiers: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    additional_costs: dict[str, Any] = field(default_factory=dict)
    store_integration_id: str | None = None
    cart_item_total: float = 0.0
    additional_cost_total: float = 0.0
    item_additional_cost_total: float = 0.0
    effects: list[Effect] = field(default_factory=list)
    ledger: Ledger | None = None
    returns: list[dict[str, Any]] = field(default_factory=list)
    counted_as_closed: bool = False

    def copy(self) -> Session:
        """A shallow copy (cheaper than dataclasses.replace on the hot path)."""
        return Session(
            internal_id=self.internal_id,
            integration_id=self.integration_id,
            created=self.created,
            updated=self.updated,
            profile_id=self.profile_id,
            state=self.state,
            first_session=self.first_session,
            update_count=self.update_count,
            cart_items=self.cart_items,
            coupon_codes=self.coupon_codes,
            referral_code=self.referral_code,
            loyalty_cards=self.loyalty_cards,
            identifiers=self.identifiers,
            attributes=self.attributes,
            additional_costs=self.additional_costs,
            store_integration_id=self.store_integration_id,
            cart_item_total=self.cart_item_total,
            additional_cost_total=self.additional_cost_total,
            item_additional_cost_total=self.item_additional_cost_total,
            effects=self.effects,
            ledger=self.ledger,
            returns=self.returns,
            counted_as_closed=self.counted_as_closed,
        )

    def touched(self, now: str) -> Session:
        """A copy one update later."""
        out = self.copy()
        out.updated = now
        out.update_count += 1
        return out

    def render(self) -> dict[str, Any]:
        """The CustomerSessionV2 JSON object."""
        out: dict[str, Any] = {
            "id": self.internal_id,
            "created": self.created,
            "integrationId": self.integration_id,
            "applicationId": APPLICATION_ID,
            "profileId": self.profile_id,
            "couponCodes": self.coupon_codes,
            "loyaltyCards": self.loyalty_cards,
            "state": self.state,
            "cartItems": self.cart_items,
            "additionalCosts": self.additional_costs,
            "identifiers": self.identifiers,
            "attributes": self.attributes,
            "firstSession": self.first_session,
            "updateCount": self.update_count,
            "total": money(
                self.cart_item_total + self.additional_cost_total + self.item_additional_cost_total
            ),
            "cartItemTotal": money(self.cart_item_total),
            "additionalCostTotal": money(self.additional_cost_total),
            "cartItemAdditionalCostTotal": money(self.item_additional_cost_total),
            "updated": self.updated,
        }
        if self.referral_code:
            out["referralCode"] = self.referral_code
        if self.store_integration_id:
            out["storeIntegrationId"] = self.store_integration_id
        return out


def check_transition(before: str | None, requested: str) -> None:
    if before is None:
        if requested in ("open", "closed"):
            return
        raise _transition_error(
            "Invalid state transition",
            f"a customer session can only be created as open or closed, not {requested}",
        )
    if requested in _ALLOWED[before]:
        return
    if requested == before:
        raise _transition_error(
            "Session cannot be modified",
            f"the customer session is {before} and cannot be modified anymore",
        )
    hint = ""
    if requested == "partially_returned":
        hint = "; use returnCartItems"
    elif before == "closed" and requested == "open":
        hint = "; use reopenCustomerSession"
    raise _transition_error(
        "Invalid state transition",
        f"cannot change the state of a customer session from {before} to {requested}{hint}",
    )


def _transition_error(title: str, details: str) -> ApiFailure:
    return invalid([api_error(title, details, pointer="/customerSession/state")])


def _normalise_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for pos, item in enumerate(items):
        line = {k: v for k, v in item.items() if k not in _SERVER_ITEM_FIELDS}
        line["position"] = pos
        line["returnedQuantity"] = 0
        line["remainingQuantity"] = item["quantity"]
        out.append(line)
    return out


def _sum_costs(costs: dict[str, Any]) -> float:
    return float(sum(c["price"] for c in costs.values()))


def merge(base: Session, cs: dict[str, Any], now: str) -> Session:
    """A new Session: `base` plus the fields present in the request (PUT that builds up)."""
    s = base.touched(now)
    if "profileId" in cs:
        s.profile_id = cs["profileId"] or ""
    if "storeIntegrationId" in cs:
        s.store_integration_id = cs["storeIntegrationId"] or None
    if "couponCodes" in cs:
        s.coupon_codes = list(cs["couponCodes"])
    if "referralCode" in cs:
        s.referral_code = cs["referralCode"] or None
    if "loyaltyCards" in cs:
        s.loyalty_cards = list(cs["loyaltyCards"])
    if "identifiers" in cs:
        s.identifiers = list(cs["identifiers"])
    if "attributes" in cs:
        s.attributes = {**base.attributes, **cs["attributes"]}
    if "additionalCosts" in cs:
        s.additional_costs = dict(cs["additionalCosts"])
        s.additional_cost_total = _sum_costs(s.additional_costs)
    if "cartItems" in cs:
        # Items sent on an update replace the stored list wholesale.
        s.cart_items = _normalise_items(cs["cartItems"])
        s.cart_item_total = cart_total(s.cart_items)
        s.item_additional_cost_total = sum(
            _sum_costs(i["additionalCosts"]) * i["quantity"]
            for i in s.cart_items
            if isinstance(i.get("additionalCosts"), dict)
        )
    return s
