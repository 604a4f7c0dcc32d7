"""The documented limits of a command, checked before any request body is built.

A record of a megabyte can hold over 160,000 cart lines. Building and validating a request
body of that size, with pydantic collecting an error for every line, took the process past
half a gigabyte. These checks cost a `len()` or a short loop and refuse such a command first,
so that what is built afterwards is bounded by the limits of the Talon.One Integration API:

* a cart of at most 1000 lines holding at most 10,000 units (``cartItems``), and so a return
  of at most 10,000 entries, each of which returns at least one unit;
* at most 5 session identifiers and 1 loyalty card, and coupon codes of at most 100
  characters (a list of any length, so each is looked at here; single strings are left to
  the request models, which report one error for each);
* an ``eventId`` of 1 to 255 characters (the Command schema's limit; an empty one would give
  every such command the same Idempotency-Key).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Final

from bridge.commands import ReturnCartItems, TrackEvent, TrackEventV3, UpdateCustomerSession
from bridge.errors import InvalidCommandError

__all__ = [
    "MAX_CART_ITEMS",
    "MAX_CODE_LENGTH",
    "MAX_EVENT_ID_LENGTH",
    "MAX_IDENTIFIERS",
    "MAX_LOYALTY_CARDS",
    "MAX_TOTAL_QUANTITY",
    "check_event",
    "check_event_id",
    "check_return",
    "check_session",
]

MAX_CART_ITEMS: Final = 1000
MAX_TOTAL_QUANTITY: Final = 10_000
MAX_IDENTIFIERS: Final = 5
MAX_LOYALTY_CARDS: Final = 1
MAX_CODE_LENGTH: Final = 100
MAX_EVENT_ID_LENGTH: Final = 255
_QUANTITY: Final = attrgetter("quantity")


def _too_long(pointer: str, limit: int, what: str) -> InvalidCommandError:
    return InvalidCommandError(f"too_long: at most {limit} {what}", pointer)


def check_event_id(event_id: str) -> None:
    """Refuse an empty or over-long eventId.

    Raises:
        InvalidCommandError: The id breaks the limit (it is not part of a request body).
    """
    if not 0 < len(event_id) <= MAX_EVENT_ID_LENGTH:
        raise InvalidCommandError(
            f"eventId must have 1 to {MAX_EVENT_ID_LENGTH} characters, not {len(event_id)}"
        )


def check_session(p: UpdateCustomerSession) -> None:
    """The size limits of a session update (see the module docstring).

    Raises:
        InvalidCommandError: A limit is broken; `pointer` names the field.
    """
    base = "/customerSession"
    items = p.cart_items
    if items is not None:
        if len(items) > MAX_CART_ITEMS:
            raise _too_long(f"{base}/cartItems", MAX_CART_ITEMS, "cart items")
        if sum(map(_QUANTITY, items)) > MAX_TOTAL_QUANTITY:
            raise InvalidCommandError(
                f"too_large: the cart's total quantity is above {MAX_TOTAL_QUANTITY}",
                f"{base}/cartItems",
            )
    if p.identifiers is not None and len(p.identifiers) > MAX_IDENTIFIERS:
        raise _too_long(f"{base}/identifiers", MAX_IDENTIFIERS, "identifiers")
    if p.loyalty_cards is not None and len(p.loyalty_cards) > MAX_LOYALTY_CARDS:
        raise _too_long(f"{base}/loyaltyCards", MAX_LOYALTY_CARDS, "loyalty card")
    for n, code in enumerate(p.coupon_codes or ()):
        if len(code) > MAX_CODE_LENGTH:
            raise _too_long(f"{base}/couponCodes/{n}", MAX_CODE_LENGTH, "characters")


def check_event(p: TrackEvent | TrackEventV3) -> None:
    """The size limits of an event (see the module docstring)."""
    if len(p.loyalty_cards) > MAX_LOYALTY_CARDS:
        raise _too_long("/loyaltyCards", MAX_LOYALTY_CARDS, "loyalty card")


def check_return(p: ReturnCartItems) -> None:
    """The size limits of a return (see the module docstring)."""
    if len(p.returned_cart_items) > MAX_TOTAL_QUANTITY:
        raise _too_long("/return/returnedCartItems", MAX_TOTAL_QUANTITY, "returned items")
