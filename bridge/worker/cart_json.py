"""The request JSON of each session's last cart, so that an update serialises only new lines.

A session update carries its whole cart again, usually one line longer, and checking and
serialising every line again made a command's cost grow with its cart. A line's JSON is a pure
function of the line, so the lines equal to the ones sent before keep their JSON, and only the
others are checked against the request model and serialised.
"""

from __future__ import annotations

from typing import Any

from bridge.commands import CartItem
from bridge.recent import Recent
from bridge.talon import models as m
from bridge.talon.bodies import serialised

__all__ = ["CartJson", "line_body"]


def line_body(item: CartItem) -> dict[str, Any]:
    """A cart line's request body (wire names; None fields are left out when serialised)."""
    return {
        "sku": item.sku,
        "quantity": item.quantity,
        "price": item.price,
        "name": item.name,
        "category": item.category,
        "attributes": item.attributes or None,
    }


class CartJson:
    """The last cart lines and their JSON for each of up to `size` sessions, least recently
    used dropped."""

    __slots__ = ("_known",)

    def __init__(self, size: int = 8192) -> None:
        # Tuples of untracked objects, which the garbage collector stops scanning.
        self._known: Recent[tuple[tuple[CartItem, ...], tuple[bytes, ...]]] = Recent(size)

    def json(self, session_id: str, items: list[CartItem], keep: bool = True) -> bytes | None:
        """The JSON array of `items`, or None when a line needs the request model to tell
        (the caller then checks the whole body through it, for the error naming the line).
        With `keep` False (a closed or cancelled cart) the session's lines are dropped."""
        known = self._known.get(session_id)
        if known is not None and tuple(items[: len(known[0])]) == known[0]:
            parts = list(known[1])
        else:
            parts = []
        for item in items[len(parts) :]:
            part = serialised(m.CartItem, line_body(item))
            if part is None:
                return None
            parts.append(part)
        if keep:
            self._known.put(session_id, (tuple(items), tuple(parts)))
        return b"[%b]" % b",".join(parts)

    def __len__(self) -> int:
        return len(self._known)
