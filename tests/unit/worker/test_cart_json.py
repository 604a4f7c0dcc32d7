"""A session's cart JSON kept between updates: the same bodies and errors as without it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bridge.commands import CartItem, UpdateCustomerSession
from bridge.errors import InvalidCommandError
from bridge.talon import bodies
from bridge.worker import cart_json
from bridge.worker.cart_json import CartJson
from bridge.worker.handlers import session_request

lines = st.builds(
    CartItem,
    sku=st.sampled_from(["", "SKU-1", "SKU-2"]),
    quantity=st.integers(min_value=0, max_value=2),
    price=st.none() | st.floats(),
    name=st.none() | st.text(max_size=3),
    attributes=st.dictionaries(st.text(max_size=2), st.integers() | st.floats(), max_size=2),
)
# A session's carts over time: each one the last plus some lines, or a cart of its own.
steps = st.lists(st.tuples(st.booleans(), st.lists(lines, max_size=3)), min_size=1, max_size=6)


def _outcome(payload: UpdateCustomerSession, carts: CartJson | None) -> tuple[str, Any]:
    try:
        body = session_request(payload, carts, "session-1")
    except InvalidCommandError as exc:
        return "invalid", (exc.message, exc.pointer)
    return "sent", body.to_json()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
def test_property_kept_cart_json_changes_no_body_and_no_error(
    steps: list[tuple[bool, list[CartItem]]],
) -> None:
    carts = CartJson()
    cart: list[CartItem] = []
    for extend, new in steps:
        cart = [*cart, *new] if extend else new
        payload = UpdateCustomerSession(cart_items=list(cart))
        # Byte for byte; the bodies without it match the models (test_handlers' property).
        assert _outcome(payload, carts) == _outcome(payload, None)


def test_only_new_lines_are_serialised(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    real = bodies.serialised

    def counting(model: type[BaseModel], body: dict[str, Any]) -> bytes | None:
        seen.append(body)
        out: bytes | None = real(model, body)
        return out

    monkeypatch.setattr(cart_json, "serialised", counting)
    carts = CartJson()
    first = [CartItem("a", 1), CartItem("b", 2)]
    carts.json("s", first)
    assert carts.json("s", [*first, CartItem("c", 1)]) == (
        b'[{"sku":"a","quantity":1},{"sku":"b","quantity":2},{"sku":"c","quantity":1}]'
    )
    assert [b["sku"] for b in seen] == ["a", "b", "c"]
    # A changed line starts over; so does another session.
    carts.json("s", [CartItem("a", 3)])
    carts.json("t", [CartItem("a", 3)])
    assert [b["sku"] for b in seen] == ["a", "b", "c", "a", "a"]


def test_a_refused_line_leaves_the_error_to_the_model() -> None:
    carts = CartJson()
    assert carts.json("s", [CartItem("a", 1), CartItem("b", 0)]) is None
    with pytest.raises(InvalidCommandError) as caught:
        session_request(
            UpdateCustomerSession(cart_items=[CartItem("a", 1), CartItem("b", 0)]), carts, "s"
        )
    assert caught.value.pointer == "/customerSession/cartItems/1/quantity"


def test_sessions_kept_are_bounded() -> None:
    carts = CartJson(size=2)
    for session in ("a", "b", "c", "a"):
        carts.json(session, [CartItem("x", 1)])
    assert len(carts) == 2


def test_a_closed_cart_is_not_kept() -> None:
    carts = CartJson()
    carts.json("s", [CartItem("a", 1)])
    assert carts.json("s", [CartItem("a", 1)], keep=False) == b'[{"sku":"a","quantity":1}]'
    assert len(carts) == 0
