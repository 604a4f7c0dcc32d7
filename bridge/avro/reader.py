"""A hand-written Avro reader for the bundled `Command` schema.

Every record the worker consumes is decoded once, on the event loop. fastavro walks the
schema for every value and builds dicts that are then turned into the command records; this
reader knows the layout and builds the records straight from the bytes, in less than half the
time (see docs/benchmarks.md). It is used only for records written with exactly the schema it
follows (`FINGERPRINT`). It accepts nothing fastavro would refuse: any input it does not read
cleanly to the last byte makes it raise `Unreadable`, and the codec then decodes that record
through fastavro, which reports the precise reason. A property test checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from struct import Struct
from typing import Final, TypeVar, get_args

import orjson

from bridge.commands import (
    AdditionalCost,
    CartItem,
    Command,
    JsonValue,
    Payload,
    ReturnCartItems,
    ReturnedCartItem,
    SessionState,
    TrackEvent,
    TrackEventV3,
    UpdateCustomerSession,
)
from bridge.recent import Recent

__all__ = ["FINGERPRINT", "Carts", "Unreadable", "read"]

# CRC-64-AVRO of the Parsing Canonical Form this reader follows.
FINGERPRINT: Final = 6822516617974664306

# The Avro enum's symbols are the vocabulary's values, in the same order.
_STATES: Final[tuple[SessionState, ...]] = get_args(SessionState)
_T = TypeVar("_T")

_DOUBLE: Final = Struct("<d").unpack_from
_loads = orjson.loads


class Unreadable(Exception):
    """The bytes are not a command this reader can vouch for; fastavro decides."""


def _long(b: bytes, i: int) -> tuple[int, int]:
    c = b[i]
    n = c & 0x7F
    shift = 7
    while c & 0x80:
        if shift > 63:  # a long takes at most 10 bytes; longer runs are not read bit by bit
            raise Unreadable
        i += 1
        c = b[i]
        n |= (c & 0x7F) << shift
        shift += 7
    if n >> 64:  # more than a long holds: fastavro's C reader would have wrapped it
        raise Unreadable
    return (n >> 1) ^ -(n & 1), i + 1


def _str(b: bytes, i: int) -> tuple[str, int]:
    c = b[i]
    if c < 0x80:  # lengths below 64 take one byte
        n = c >> 1
        if c & 1:
            raise Unreadable
        i += 1
    else:
        n, i = _long(b, i)
        # Past the end (up to 2**63): nothing to slice, and an offset that large would
        # overflow the index arithmetic of the fields after it.
        if n < 0 or n > len(b) - i:
            raise Unreadable
    # A one-byte length past the end gives a short slice; the final length check in `read`
    # catches it.
    j = i + n
    return b[i:j].decode(), j


def _optional(
    read: Callable[[bytes, int], tuple[_T, int]], b: bytes, i: int
) -> tuple[_T | None, int]:
    """A nullable union: branch 0 is null, branch 1 the value `read` reads."""
    c = b[i]
    if c == 0:
        return None, i + 1
    if c != 2:
        raise Unreadable
    return read(b, i + 1)


def _double(b: bytes, i: int) -> tuple[float, int]:
    return _DOUBLE(b, i)[0], i + 8


def _count(b: bytes, i: int) -> tuple[int, int]:
    """The item count of an array or map block; a negative count is followed by a size."""
    n, i = _long(b, i)
    if n < 0:
        n = -n
        _, i = _long(b, i)
    return n, i


def _array(read: Callable[[bytes, int], tuple[_T, int]], b: bytes, i: int) -> tuple[list[_T], int]:
    out: list[_T] = []
    n, i = _count(b, i)
    while n:
        for _ in range(n):
            item, i = read(b, i)
            out.append(item)
        n, i = _count(b, i)
    return out, i


def _map(
    read: Callable[[bytes, int], tuple[_T, int]], b: bytes, i: int
) -> tuple[dict[str, _T], int]:
    out: dict[str, _T] = {}
    n, i = _count(b, i)
    while n:
        for _ in range(n):
            k, i = _str(b, i)
            out[k], i = read(b, i)
        n, i = _count(b, i)
    return out, i


def _json(b: bytes, i: int) -> tuple[JsonValue, int]:
    # orjson reads the UTF-8 bytes itself, refusing what `bytes.decode` would refuse.
    c = b[i]
    if c < 0x80 and not c & 1:
        j = i + 1 + (c >> 1)
        return _loads(b[i + 1 : j]), j
    n, i = _long(b, i)
    if n < 0 or n > len(b) - i:
        raise Unreadable
    return _loads(b[i : i + n]), i + n


def _json_map(b: bytes, i: int) -> tuple[dict[str, JsonValue], int]:
    """A map of JSON documents, with the one-byte lengths of short keys and values inline."""
    out: dict[str, JsonValue] = {}
    n, i = _count(b, i)
    while n:
        for _ in range(n):
            c = b[i]
            if c < 0x80 and not c & 1:
                j = i + 1 + (c >> 1)
                k = b[i + 1 : j].decode()
            else:
                k, j = _str(b, i)
            c = b[j]
            if c < 0x80 and not c & 1:
                i = j + 1 + (c >> 1)
                out[k] = _loads(b[j + 1 : i])
            else:
                out[k], i = _json(b, j)
        n, i = _count(b, i)
    return out, i


_strings = partial(_array, _str)


# The last cart read per session: its items' bytes and the items read from them.
_Known = tuple[bytes, tuple[CartItem, ...]]


def _cart(b: bytes, i: int, known: _Known | None) -> tuple[list[CartItem], int, int]:
    """The cart, where it ends, and where its items start (-1 if it has several blocks).

    A session's update carries its whole cart again, usually one line longer. When the
    cart's first block starts with the very bytes of `known`, its items are the same and only
    the lines after them are read: reading is a pure function of the bytes, and a line's
    bytes are read up to its last one and no further.
    """
    n, i = _long(b, i)
    start = i
    if n < 0:  # a block size follows: not remembered
        n = -n
        _, i = _long(b, i)
        start = -1
    if not n:
        return [], i, start
    out: list[CartItem]
    if known is not None and start >= 0 and n >= len(known[1]) and b.startswith(known[0], i):
        out = list(known[1])
        i += len(known[0])
        n -= len(out)
    else:
        out = []
    append = out.append
    blocks = 0
    while True:
        for _ in range(n):
            c = b[i]
            if c < 0x80 and not c & 1:
                j = i + 1 + (c >> 1)
                sku = b[i + 1 : j].decode()
            else:
                sku, j = _str(b, i)
            c = b[j]
            if c < 0x80:
                quantity = (c >> 1) ^ -(c & 1)
                i = j + 1
            else:
                quantity, i = _long(b, j)
            c = b[i]
            if c == 2:
                price: float | None = _DOUBLE(b, i + 1)[0]
                i += 9
            elif c == 0:
                price = None
                i += 1
            else:
                raise Unreadable
            name, i = _optional_str(b, i)
            category, i = _optional_str(b, i)
            c = b[i]
            if c == 0:
                attributes: dict[str, JsonValue] = {}
                i += 1
            elif c == 2:
                attributes, i = _json_map(b, i + 1)
            else:
                raise Unreadable
            append(CartItem(sku, quantity, price, name, category, attributes))
        blocks += 1
        n, i = _count(b, i)
        if not n:
            return out, i, start if blocks == 1 else -1


def _optional_str(b: bytes, i: int) -> tuple[str | None, int]:
    c = b[i]
    if c == 0:
        return None, i + 1
    if c != 2:
        raise Unreadable
    c = b[i + 1]
    if c < 0x80 and not c & 1:
        j = i + 2 + (c >> 1)
        return b[i + 2 : j].decode(), j
    return _str(b, i + 1)


def _cost(b: bytes, i: int) -> tuple[AdditionalCost, int]:
    price, i = _double(b, i)
    return AdditionalCost(price), i


_costs = partial(_map, _cost)


def _track_event(b: bytes, i: int) -> tuple[TrackEvent, int]:
    type_, i = _str(b, i)
    profile_id, i = _str(b, i)
    attributes, i = _optional(_json_map, b, i)
    cards, i = _optional(_strings, b, i)
    store, i = _optional_str(b, i)
    return TrackEvent(type_, profile_id, attributes or {}, cards or [], store), i


def _track_event_v3(b: bytes, i: int) -> tuple[TrackEventV3, int]:
    event, i = _track_event(b, i)  # the same fields first, then the integrationId
    integration_id, i = _optional_str(b, i)
    return TrackEventV3(
        event.type,
        event.profile_id,
        event.attributes,
        event.loyalty_cards,
        event.store_integration_id,
        integration_id,
    ), i


def _update_session(
    b: bytes, i: int, known: _Known | None
) -> tuple[UpdateCustomerSession, int, int, int]:
    """The payload, where it ends, and where its cart's items start and end (-1 if none)."""
    profile_id, i = _optional_str(b, i)
    state, i = _long(b, i)
    if not 0 <= state < len(_STATES):
        raise Unreadable
    c = b[i]
    items: list[CartItem] | None
    if c == 0:
        items, i, start, end = None, i + 1, -1, -1
    elif c == 2:
        items, i, start = _cart(b, i + 1, known)
        end = i - 1  # before the block count 0 that ends the array
    else:
        raise Unreadable
    coupons, i = _optional(_strings, b, i)
    referral, i = _optional_str(b, i)
    cards, i = _optional(_strings, b, i)
    identifiers, i = _optional(_strings, b, i)
    costs, i = _optional(_costs, b, i)
    attributes, i = _optional(_json_map, b, i)
    store, i = _optional_str(b, i)
    payload = UpdateCustomerSession(
        profile_id,
        _STATES[state],
        items,
        coupons,
        referral,
        cards,
        identifiers,
        costs,
        attributes,
        store,
    )
    return payload, i, start, end


def _returned_item(b: bytes, i: int) -> tuple[ReturnedCartItem, int]:
    position, i = _optional(_long, b, i)
    quantity, i = _optional(_long, b, i)
    sku, i = _optional_str(b, i)
    return ReturnedCartItem(position, quantity, sku), i


def _return_items(b: bytes, i: int) -> tuple[ReturnCartItems, int]:
    items, i = _array(_returned_item, b, i)
    return ReturnCartItems(items), i


class Carts(Recent[_Known]):
    """The last cart read for each of up to `size` sessions, least recently read dropped.

    Held by whoever reads a stream of commands (the codec), so that a session's next update
    reads only its new cart lines.
    """

    __slots__ = ()


def read(b: bytes, i: int, carts: Carts | None = None) -> Command:
    """The command encoded in `b` from offset `i` to its end.

    Args:
        carts: The carts read before, by session; updated with this command's cart.

    Raises:
        Unreadable: Anything but a command that ends exactly at the end of `b`.
    """
    start = end = -1
    try:
        event_id, i = _str(b, i)
        session_id, i = _str(b, i)
        occurred_at, i = _long(b, i)
        source, i = _optional_str(b, i)
        dry = b[i]
        if dry > 1:
            raise Unreadable
        branch = b[i + 1]
        payload: Payload
        if branch == 2:
            known = carts.get(session_id) if carts is not None else None
            payload, i, start, end = _update_session(b, i + 2, known)
        elif branch == 0:
            payload, i = _track_event(b, i + 2)
        elif branch == 4:
            payload, i = _return_items(b, i + 2)
        elif branch == 6:
            payload, i = _track_event_v3(b, i + 2)
        else:
            raise Unreadable
    except Exception as exc:  # whatever the bytes make go wrong, fastavro has the last word
        raise Unreadable from exc
    if i != len(b):
        raise Unreadable
    if carts is not None and start >= 0:
        assert isinstance(payload, UpdateCustomerSession)  # noqa: S101 - branch 2 above
        assert payload.cart_items is not None  # noqa: S101 - a cart has a start
        if payload.state == "open":  # a closed or cancelled cart is not updated again
            carts.put(session_id, (b[start:end], tuple(payload.cart_items)))
    return Command(event_id, session_id, occurred_at, payload, source, dry == 1)
