"""Request building of the handlers: wire bodies and the pointers of invalid commands."""

from __future__ import annotations

import orjson
import pytest

from bridge.commands import (
    AdditionalCost,
    CartItem,
    ReturnCartItems,
    ReturnedCartItem,
    TrackEvent,
    UpdateCustomerSession,
)
from bridge.errors import InvalidCommandError
from bridge.handlers import event_request, return_request, session_request

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
