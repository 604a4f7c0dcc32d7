"""Shared pieces of the TalonClient tests: bodies, answers and a recording mock transport."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bridge.talon import (
    ApiResult,
    IntegrationEventV2Request,
    IntegrationRequest,
    NewCustomerSessionV2,
    NewReturn,
    ReturnedCartItem,
    ReturnIntegrationRequest,
    TalonClient,
)
from bridge.talon.transports import Answer, MockTransport, Request, answer

API_KEY = "s3cr3t-api-key-0123456789"
BASE = "https://acme.europe-west1.talon.one"
EMPTY_STATE = {"effects": [], "createdCoupons": [], "createdReferrals": []}
SESSION_BODY = IntegrationRequest(
    customer_session=NewCustomerSessionV2(profile_id="cust-42", coupon_codes=[]),
)
EVENT_BODY = IntegrationEventV2Request(type="newsletter_signup", profile_id="cust-42")
RETURN_BODY = ReturnIntegrationRequest(
    return_=NewReturn(returned_cart_items=[ReturnedCartItem(position=1, quantity=1)])
)
VALIDATION_ERROR = {
    "message": "The submitted data was invalid",
    "errors": [
        {
            "title": "Unknown",
            "details": 'The attribute "MyAttribute" is not defined on CustomerSession entities.',
            "source": {"pointer": "/attributes/MyAttribute"},
        }
    ],
}
SESSION_CONFLICT = {
    "message": "Too many requests are updating this session at the same time",
    "StatusCode": 409,
}
UNAUTHORIZED = {"message": "Unauthorized - Invalid API key", "StatusCode": 401}
PROFILE_CONFLICT = {
    "message": "Too many requests are updating this profile at the same time",
    "errors": [],
    "StatusCode": 409,
}

Handler = Callable[[Request], Answer]
Call = Callable[[TalonClient], Awaitable[ApiResult[Any]]]


class Recorder:
    """A MockTransport handler that records requests and answers from a fixed response."""

    def __init__(self, response: Answer | Exception | None = None) -> None:
        self.requests: list[Request] = []
        self.response = response if response is not None else answer(200, json=EMPTY_STATE)

    def __call__(self, request: Request) -> Answer:
        self.requests.append(request)
        if isinstance(self.response, Exception):
            raise self.response
        return self.response

    @property
    def last(self) -> Request:
        return self.requests[-1]

    @property
    def headers(self) -> httpx.Headers:
        """The last request's headers, looked up case-insensitively."""
        return httpx.Headers(list(self.last.headers))

    @property
    def path(self) -> str:
        """The last request's URL without the base URL: path and query."""
        return self.last.url.removeprefix(BASE)


def make_client(
    handler: Handler, *, base_url: str = BASE, **kwargs: Any
) -> tuple[TalonClient, list[tuple[str, str, float]]]:
    calls: list[tuple[str, str, float]] = []
    client = TalonClient(
        base_url,
        API_KEY,
        transport=MockTransport(handler),
        observer=lambda op, outcome, seconds: calls.append((op, outcome, seconds)),
        **kwargs,
    )
    return client, calls


async def update(client: TalonClient) -> ApiResult[Any]:
    return await client.update_customer_session("order-1001", SESSION_BODY)


async def track(client: TalonClient) -> ApiResult[Any]:
    return await client.track_event(EVENT_BODY)


async def give_back(client: TalonClient) -> ApiResult[Any]:
    return await client.return_cart_items("order-1001", RETURN_BODY)


OPERATIONS: list[tuple[str, Call]] = [
    ("update_customer_session", update),
    ("track_event", track),
    ("return_cart_items", give_back),
]


STATE_WITH_EFFECT = {
    **EMPTY_STATE,
    "effects": [
        {
            "campaignId": 12,
            "rulesetId": 34,
            "ruleIndex": 0,
            "ruleName": "XMAS coupon",
            "effectType": "acceptCoupon",
            "props": {"value": "XMAS-20"},
        }
    ],
}
