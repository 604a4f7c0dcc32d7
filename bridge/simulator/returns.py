"""returnCartItems: which session may return, which cart lines a return takes, its record."""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from bridge.simulator.profiles import ACCOUNT_ID, Profile
from bridge.simulator.rules import ReturnedUnits
from bridge.simulator.sessions import APPLICATION_ID, Session
from bridge.simulator.validation import api_error, invalid

__all__ = ["check_returnable", "resolve_returns", "return_record", "take_units"]

_RETURNABLE: Final = frozenset({"closed", "partially_returned"})


def check_returnable(session: Session) -> None:
    """400 unless the session is closed or partially returned."""
    if session.state not in _RETURNABLE:
        raise invalid(
            [
                api_error(
                    "Invalid state transition",
                    "cart items can only be returned from a closed or partially_returned "
                    f"session; this session is {session.state}",
                    parameter="customerSessionId",
                )
            ]
        )


def take_units(session: Session, resolved: list[tuple[int, int]]) -> list[ReturnedUnits]:
    """Move the resolved units of `session`'s (copied) cart lines from remaining to returned."""
    units: list[ReturnedUnits] = []
    for pos, qty in resolved:
        line = session.cart_items[pos]
        units.append(
            ReturnedUnits(pos, line["returnedQuantity"], qty, float(line.get("price") or 0))
        )
        line["returnedQuantity"] += qty
        line["remainingQuantity"] -= qty
    return units


def return_record(
    session: Session,
    resolved: list[tuple[int, int]],
    now: str,
    *,
    return_id: int,
    event_id: int,
    profile: Profile | None,
) -> dict[str, Any]:
    """The ReturnV2 object of one return."""
    record: dict[str, Any] = {
        "id": return_id,
        "created": now,
        "applicationId": APPLICATION_ID,
        "accountId": ACCOUNT_ID,
        "returnedCartItems": [
            {"position": pos, "quantity": qty, "sku": session.cart_items[pos]["sku"]}
            for pos, qty in resolved
        ],
        "eventId": event_id,
        "sessionId": session.internal_id,
        "sessionIntegrationId": session.integration_id,
    }
    if profile is not None:
        record["profileId"] = profile.internal_id
        record["profileIntegrationId"] = profile.integration_id
    return record


def _locate(
    cart: list[dict[str, Any]], item: dict[str, Any], taken: Counter[int], base: str
) -> int | dict[str, Any]:
    """The cart position a returned item refers to, or the APIError saying why not."""
    qty: int = item["quantity"]
    pos: int | None = item.get("position")
    sku = item.get("sku")
    if pos is None:
        for p, line in enumerate(cart):
            if line["sku"] == sku and line["remainingQuantity"] - taken[p] >= qty:
                return p
        return api_error(
            "Not found", f"no cart item with sku {sku!r} has enough units", pointer=f"{base}/sku"
        )
    if pos >= len(cart):
        return api_error(
            "Not found",
            f"the session has no cart item at position {pos}",
            pointer=f"{base}/position",
        )
    if sku is not None and cart[pos]["sku"] != sku:
        return api_error(
            "Invalid value",
            f"the cart item at position {pos} has another sku",
            pointer=f"{base}/sku",
        )
    remaining = cart[pos]["remainingQuantity"] - taken[pos]
    if qty > remaining:
        return api_error(
            "Invalid value",
            f"cannot return {qty} unit(s) of position {pos}; {remaining} remaining",
            pointer=f"{base}/quantity",
        )
    return pos


def resolve_returns(
    cart: list[dict[str, Any]], items: list[dict[str, Any]]
) -> list[tuple[int, int]]:
    """Map returned items to (position, quantity); 400 on unknown lines or over-returns."""
    errors: list[dict[str, Any]] = []
    taken: Counter[int] = Counter()
    resolved: list[tuple[int, int]] = []
    for i, item in enumerate(items):
        found = _locate(cart, item, taken, f"/return/returnedCartItems/{i}")
        if isinstance(found, dict):
            errors.append(found)
            continue
        taken[found] += item["quantity"]
        resolved.append((found, item["quantity"]))
    if errors:
        raise invalid(errors)
    return resolved
