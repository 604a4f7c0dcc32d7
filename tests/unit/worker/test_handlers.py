"""Request building of the handlers: wire bodies, the pointers of invalid commands, and the
fast body checks agreeing with the request models."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Annotated, Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, StringConstraints, ValidationError

from bridge.commands import (
    AdditionalCost,
    CartItem,
    Command,
    ReturnCartItems,
    ReturnedCartItem,
    TrackEvent,
    UpdateCustomerSession,
)
from bridge.errors import InvalidCommandError
from bridge.talon import models
from bridge.talon.bodies import Prepared, prepare
from bridge.worker import handlers
from bridge.worker.handlers import event_request, return_request, session_request

SECRET_SKU = "sku-4111111111111111"


def test_session_request_body() -> None:
    body = session_request(
        UpdateCustomerSession(
            profile_id="cust-42",
            state="closed",
            cart_items=[CartItem("SKU-1", 2, 9.5, "Socks", "apparel", {"color": "red"})],
            coupon_codes=[],
            additional_costs={"shipping": AdditionalCost(4.9)},
            attributes={"Channel": "web"},
        )
    )
    assert orjson.loads(body.to_json()) == {
        "customerSession": {
            "profileId": "cust-42",
            "couponCodes": [],  # kept: an empty list discards the stored coupons
            "state": "closed",
            "cartItems": [
                {
                    "sku": "SKU-1",
                    "quantity": 2,
                    "price": 9.5,
                    "name": "Socks",
                    "category": "apparel",
                    "attributes": {"color": "red"},
                }
            ],
            "additionalCosts": {"shipping": {"price": 4.9}},
            "attributes": {"Channel": "web"},
        },
        "responseContent": ["customerSession"],
    }


def test_event_and_return_bodies() -> None:
    event = event_request(TrackEvent("newsletter_signup", "cust-42", {"Source": "footer"}))
    assert orjson.loads(event.to_json()) == {
        "type": "newsletter_signup",
        "profileId": "cust-42",
        "attributes": {"Source": "footer"},
    }
    ret = return_request(ReturnCartItems([ReturnedCartItem(position=1, quantity=1)]))
    assert orjson.loads(ret.to_json()) == {
        "return": {"returnedCartItems": [{"position": 1, "quantity": 1}]},
        "responseContent": ["customerSession"],
    }


@pytest.mark.parametrize(
    ("build", "pointer"),
    [
        (
            lambda: session_request(
                UpdateCustomerSession(
                    cart_items=[CartItem("SKU-1", 1), CartItem(SECRET_SKU, 0)],
                )
            ),
            "/customerSession/cartItems/1/quantity",
        ),
        (
            lambda: session_request(UpdateCustomerSession(identifiers=["i"] * 6)),
            "/customerSession/identifiers",
        ),
        (
            lambda: session_request(UpdateCustomerSession(loyalty_cards=["a", "b"])),
            "/customerSession/loyaltyCards",
        ),
        (lambda: event_request(TrackEvent("", "cust-42")), "/type"),
        (
            lambda: return_request(ReturnCartItems([ReturnedCartItem(quantity=1, sku="")])),
            "/return/returnedCartItems/0/sku",
        ),
    ],
)
def test_invalid_commands_name_the_field_not_the_value(build: object, pointer: str) -> None:
    with pytest.raises(InvalidCommandError) as caught:
        build()  # type: ignore[operator]
    assert caught.value.pointer == pointer
    assert SECRET_SKU not in caught.value.message
    assert "[" not in caught.value.message  # no echoed input lists


# --- bodies checked by the derived msgspec types agree with the pydantic models -------------

short = st.text(max_size=6)
# Values at and around each documented limit, so that both sides of every constraint come up.
codes = st.text(min_size=99, max_size=101) | short
store_ids = st.none() | st.sampled_from(["", "s", "s" * 1000, "s" * 1001])
json_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)
attributes = st.dictionaries(st.text(max_size=4), json_values, max_size=3)
cart_items = st.builds(
    CartItem,
    sku=st.sampled_from(["", "SKU-1"]),
    quantity=st.integers(min_value=-1, max_value=2),
    price=st.none() | st.floats(),
    name=st.none() | short,
    category=st.none() | short,
    attributes=attributes,
)
payloads = st.one_of(
    st.builds(
        UpdateCustomerSession,
        profile_id=st.none() | short,
        state=st.sampled_from(["open", "closed", "partially_returned", "cancelled"]),
        cart_items=st.none() | st.lists(cart_items, max_size=3),
        coupon_codes=st.none() | st.lists(codes, max_size=2),
        referral_code=st.none() | codes,
        loyalty_cards=st.none() | st.lists(short, max_size=2),
        identifiers=st.none() | st.lists(short, min_size=4, max_size=6),
        additional_costs=st.none()
        | st.dictionaries(short, st.builds(AdditionalCost, st.floats()), max_size=2),
        attributes=st.none() | attributes,
        store_integration_id=store_ids,
    ),
    st.builds(
        TrackEvent,
        type=st.sampled_from(["", "signup"]),
        profile_id=short,
        attributes=attributes,
        loyalty_cards=st.lists(short, max_size=2),
        store_integration_id=store_ids,
    ),
    st.builds(
        ReturnCartItems,
        st.lists(
            st.builds(
                ReturnedCartItem,
                position=st.none() | st.integers(-1, 3),
                quantity=st.none() | st.integers(-1, 3),
                sku=st.none() | st.sampled_from(["", "SKU-1"]),
            ),
            max_size=3,
        ),
    ),
)
BUILDERS: dict[type, Callable[[Any], Any]] = {
    UpdateCustomerSession: session_request,
    TrackEvent: event_request,
    ReturnCartItems: return_request,
}


def _pydantic_only(model: type[BaseModel], body: dict[str, Any]) -> BaseModel:
    return model.model_validate(body)


def _outcome(payload: Any) -> tuple[str, Any]:
    try:
        body = BUILDERS[type(payload)](payload)
    except InvalidCommandError as exc:
        return "invalid", (exc.message, exc.pointer)
    return "sent", orjson.loads(body.to_json())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads)
def test_property_bodies_match_the_pydantic_models(payload: Any) -> None:
    fast = _outcome(payload)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(handlers, "prepare", _pydantic_only)
        reference = _outcome(payload)
    assert fast == reference


def test_bodies_the_derived_types_refuse_are_left_to_the_model() -> None:
    # pydantic is laxer about types: a numeric string is a quantity to it.
    body = {"sku": "SKU-1", "quantity": "3"}
    out = prepare(models.CartItem, body)
    assert isinstance(out, models.CartItem)
    assert out.quantity == 3


def test_bodies_the_derived_types_accept_are_serialised_by_them() -> None:
    out = prepare(models.CartItem, {"sku": "SKU-1", "quantity": 3, "price": None})
    assert isinstance(out, Prepared)
    assert out.to_json() == models.CartItem(sku="SKU-1", quantity=3).to_json()


def test_constraints_without_a_msgspec_equivalent_fail_loudly() -> None:
    class Shouting(BaseModel):
        name: Annotated[str, StringConstraints(to_upper=True)]

    with pytest.raises(TypeError, match="to_upper"):
        prepare(Shouting, {"name": "a"})


def test_unknown_fields_are_refused_or_dropped_as_the_model_says() -> None:
    with pytest.raises(ValidationError):
        prepare(models.CartItem, {"sku": "SKU-1", "quantity": 1, "colour": "red"})
    # AdditionalCost ignores unknown fields, so the prepared body leaves them out, as it does.
    body = {"price": 4.9, "currency": "EUR"}
    out = prepare(models.AdditionalCost, body)
    assert isinstance(out, Prepared)
    assert out.to_json() == models.AdditionalCost.model_validate(body).model_dump_json().encode()
    with pytest.raises(TypeError, match="unknown fields"):
        prepare(models.SessionCartItem, {"sku": "SKU-1", "quantity": 1})


# --- documented limits, checked before a body is built --------------------------------------


@pytest.mark.parametrize(
    ("build", "pointer"),
    [
        (
            lambda: session_request(UpdateCustomerSession(cart_items=[CartItem("s", 1)] * 1001)),
            "/customerSession/cartItems",
        ),
        (
            lambda: session_request(
                UpdateCustomerSession(cart_items=[CartItem("s", 5000), CartItem("t", 5001)])
            ),
            "/customerSession/cartItems",
        ),
        (
            lambda: session_request(UpdateCustomerSession(coupon_codes=["ok", "c" * 101])),
            "/customerSession/couponCodes/1",
        ),
        (lambda: event_request(TrackEvent("t", "p", loyalty_cards=["a", "b"])), "/loyaltyCards"),
        (
            lambda: return_request(ReturnCartItems([ReturnedCartItem(position=0)] * 10_001)),
            "/return/returnedCartItems",
        ),
    ],
)
def test_commands_beyond_the_documented_limits_are_invalid(build: object, pointer: str) -> None:
    with pytest.raises(InvalidCommandError) as caught:
        build()  # type: ignore[operator]
    assert caught.value.pointer == pointer


def test_carts_at_the_limits_are_sent() -> None:
    items = [CartItem(f"s{n}", 10) for n in range(1000)]
    body = orjson.loads(session_request(UpdateCustomerSession(cart_items=items)).to_json())
    assert len(body["customerSession"]["cartItems"]) == 1000


def test_an_oversized_cart_is_refused_before_its_body_is_built() -> None:
    # A megabyte-sized record holds ~166k cart lines; validated whole, with an error collected
    # for each, they took half a gigabyte.
    payload = UpdateCustomerSession(cart_items=[CartItem("", 0)] * 166_000)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidCommandError):
            session_request(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_the_error_report_names_the_first_errors_and_counts_the_rest() -> None:
    with pytest.raises(InvalidCommandError) as caught:
        session_request(UpdateCustomerSession(cart_items=[CartItem("", 0)] * 1000))
    assert caught.value.pointer == "/customerSession/cartItems/0/sku"
    assert caught.value.message.endswith(
        "also /customerSession/cartItems/0/quantity, /customerSession/cartItems/1/sku and 1997 more"
    )


@pytest.mark.parametrize("event_id", ["", "e" * 256])
async def test_an_empty_or_overlong_event_id_is_invalid(event_id: str) -> None:
    never_called: Any = None
    with pytest.raises(InvalidCommandError, match="eventId"):
        await handlers.Handlers(never_called).apply(
            Command(event_id, "s-1", 1, TrackEvent("t", "p"))
        )
