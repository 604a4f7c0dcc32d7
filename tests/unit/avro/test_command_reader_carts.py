"""The command reader's memory of carts: a session's next update reads only its new lines,
and reads exactly what fastavro reads, whatever the bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.avro import reader as command_reader
from bridge.commands import CartItem, Command, UpdateCustomerSession
from tests.support.codec_samples import PROPERTY, cart_items, fastavro_body, fastavro_read


def _update(session: str, cart: list[CartItem] | None, step: int = 0) -> Command:
    payload = UpdateCustomerSession(profile_id="p-1", state="open", cart_items=cart)
    return Command(f"evt-{step}", session, 0, payload)


# A session's carts over time: lines added, kept, changed, dropped, or the cart left out.
_edits = st.lists(
    st.tuples(
        st.sampled_from(["add", "same", "change", "drop", "none", "other-session"]),
        cart_items,
        st.integers(0, 50),
    ),
    min_size=1,
    max_size=12,
)


@PROPERTY
@given(first=st.lists(cart_items, max_size=5), edits=_edits)
def test_property_remembered_carts_read_as_fastavro_reads(
    first: list[CartItem], edits: list[tuple[str, CartItem, int]]
) -> None:
    carts = command_reader.Carts()
    cart: list[CartItem] | None = first
    for step, (edit, item, at) in enumerate(edits):
        session = "s-1"
        current = cart or []
        if edit == "add":
            cart = [*current, item]
        elif edit == "change" and current:
            cart = [*current]
            cart[at % len(cart)] = item
        elif edit == "drop" and current:
            cart = [c for i, c in enumerate(current) if i != at % len(current)]
        elif edit == "none":
            cart = None
        elif edit == "other-session":
            session = "s-2"
        cmd = _update(session, cart, step)
        body = fastavro_body(cmd)
        assert command_reader.read(body, 0, carts) == fastavro_read(body) == cmd


@PROPERTY
@given(before=st.lists(cart_items, max_size=4), extra=cart_items, data=st.data())
def test_property_remembered_carts_accept_nothing_fastavro_refuses(
    before: list[CartItem], extra: CartItem, data: st.DataObject
) -> None:
    carts = command_reader.Carts()
    command_reader.read(fastavro_body(_update("s-1", before)), 0, carts)
    body = bytearray(fastavro_body(_update("s-1", [*before, extra], 1)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body)))
        edit = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if edit == "flip" and at < len(body):
            body[at] = data.draw(st.integers(0, 255))
        elif edit == "cut":
            del body[at:]
        else:
            body[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        fast = command_reader.read(bytes(body), 0, carts)
    except command_reader.Unreadable:
        return
    assert fastavro_read(bytes(body)) == fast


def _line(n: int) -> CartItem:
    return CartItem(
        sku=f"SKU-{n}" * (1 + n % 9),  # some lengths past one byte
        quantity=1 + n * 37,
        price=None if n % 5 == 0 else n * 1.25,
        name=None if n % 3 == 0 else f"Item {n}",
        category="apparel",
        attributes={} if n % 4 == 0 else {"color": "red", "sizes": [n, {"eu": n + 30}]},
    )


def test_a_long_cart_growing_line_by_line_reads_the_same() -> None:
    carts = command_reader.Carts()
    cart: list[CartItem] = []
    for n in range(300):
        cart = [*cart, _line(n)]
        cmd = _update("s-1", cart, n)
        assert command_reader.read(fastavro_body(cmd), 0, carts) == cmd
    assert len(carts) == 1


def _varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _blocked(lines: list[CartItem], blocks: list[int], negative: bool) -> bytes:
    """An update whose cart comes in `blocks` (item counts), with block sizes if `negative`."""
    empty = fastavro_body(_update("s-1", []))
    head, tail = empty.split(b"\x02\x00", 1)  # the cart branch, then its count 0
    out = bytearray(head + b"\x02")
    at = 0
    for count in blocks:
        # Each one-line body is head + branch + count 1 + the line + end + tail.
        items = b"".join(
            fastavro_body(_update("s-1", [x]))[len(head) + 2 : -len(tail) - 1]
            for x in lines[at : at + count]
        )
        out += _varint(-count) + _varint(len(items)) if negative else _varint(count)
        out += items
        at += count
    return bytes(out + b"\x00" + tail)


def test_carts_in_several_blocks_are_read_and_not_remembered() -> None:
    lines = [_line(n) for n in range(5)]
    for blocks, negative in (([5], True), ([2, 3], False), ([1, 1, 3], True)):
        carts = command_reader.Carts()
        command_reader.read(fastavro_body(_update("s-1", lines[:2])), 0, carts)
        body = _blocked(lines, blocks, negative)
        assert command_reader.read(body, 0, carts) == fastavro_read(body) == _update("s-1", lines)
        assert len(carts) == 0
        # Nothing remembered: a plain update of a different cart still reads right.
        other = _update("s-1", [_line(9), *lines], 1)
        assert command_reader.read(fastavro_body(other), 0, carts) == other


def test_carts_keep_the_most_recently_read_sessions() -> None:
    carts = command_reader.Carts(size=2)
    for session in ("a", "b", "a", "c"):
        command_reader.read(fastavro_body(_update(session, [_line(1)])), 0, carts)
    assert len(carts) == 2
    assert carts.get("b") is None
    assert carts.get("a") is not None


def test_an_unreadable_update_is_not_remembered() -> None:
    carts = command_reader.Carts()
    body = fastavro_body(_update("s-1", [_line(1)]))
    try:
        command_reader.read(body + b"\x00", 0, carts)
    except command_reader.Unreadable:
        pass
    assert len(carts) == 0


def test_a_closed_or_cancelled_cart_is_not_remembered() -> None:
    carts = command_reader.Carts()
    lines = [CartItem("SKU-1", 1)]
    for state in ("closed", "cancelled"):
        payload = UpdateCustomerSession(profile_id="p-1", state=state, cart_items=lines)
        command_reader.read(fastavro_body(Command("e", "s-1", 0, payload)), 0, carts)
        assert len(carts) == 0
    command_reader.read(fastavro_body(_update("s-1", lines)), 0, carts)
    assert len(carts) == 1
