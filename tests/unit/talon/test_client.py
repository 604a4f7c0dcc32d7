"""TalonClient: addressing, headers, the status/exception mapping, observer and result flags.

Most tests plug a `MockTransport` into the client, which runs the client's production code
path. The last section runs both real transports end to end against an HTTP server on
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gzip
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import httpx
import multidict
import orjson
import pytest
import yarl
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from pyreqwest import exceptions as rq

from bridge import __version__
from bridge.dlq import H_ERROR_BODY, DeadLetter, dead_letter_headers
from bridge.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    ConflictError,
    FatalApiError,
    PermanentApiError,
    RateLimitedError,
    RetryableApiError,
    ServerError,
)
from bridge.talon import (
    EVENT_ID_HEADER,
    AiohttpTransport,
    ApiResult,
    ErrorResponse,
    ErrorResponseWithStatus,
    IntegrationEventV2Request,
    IntegrationRequest,
    IntegrationStateV2,
    IntegrationSummary,
    NewCustomerSessionV2,
    NewReturn,
    ReturnedCartItem,
    ReturnIntegrationRequest,
    TalonClient,
    TrackEventV2Response,
    idempotency_key_for,
    parse_retry_after,
)
from bridge.talon.client import IDEMPOTENCY_NAMESPACE, HttpEngine
from bridge.talon.transports import (
    Answer,
    MockTransport,
    PooledTransport,
    Request,
    ReqwestTransport,
    Timeouts,
    answer,
    decoded_content,
)
from bridge.talon.transports.aiohttp import _Slots, _translate
from bridge.talon.transports.reqwest import _translate as _translate_reqwest
from bridge.tools.ports import free_port

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


# ---------------------------------------------------------------- addressing and headers


async def test_each_call_can_read_only_the_summary() -> None:
    recorder = Recorder(answer(200, json=STATE_WITH_EFFECT))
    client, _ = make_client(recorder)
    async with client:
        session = await client.update_customer_session("s", SESSION_BODY, model=IntegrationSummary)
        event = await client.track_event(EVENT_BODY, model=IntegrationSummary)
        returned = await client.return_cart_items("s", RETURN_BODY, model=IntegrationSummary)
        full = await client.update_customer_session("s", SESSION_BODY)
    for result in (session, event, returned):
        assert isinstance(result.value, IntegrationSummary)
        assert [(e.effect_type, orjson.loads(e.props_json)) for e in result.value.effects] == [
            (e.effect_type, e.props) for e in full.value.effects
        ]
    summary_session, full_session = session.value.customer_session, full.value.customer_session
    assert (summary_session and summary_session.state) == (full_session and full_session.state)


async def test_update_customer_session_request() -> None:
    recorder = Recorder()
    client, _ = make_client(recorder)
    async with client:
        result = await client.update_customer_session("sess 1/ä", SESSION_BODY)
    request = recorder.last
    assert request.method == "PUT"
    assert request.url == f"{BASE}/v2/customer_sessions/sess%201%2F%C3%A4?dry=false"
    assert request.body == SESSION_BODY.to_json()
    assert orjson.loads(request.body)["customerSession"]["couponCodes"] == []
    assert isinstance(result.value, IntegrationStateV2)
    assert (result.status, result.replayed) == (200, False)
    assert result.duration >= 0


async def test_track_event_request_asks_for_effects() -> None:
    recorder = Recorder()
    client, _ = make_client(recorder)
    async with client:
        result = await client.track_event(EVENT_BODY, dry=True)
    assert recorder.last.method == "POST"
    assert recorder.path == "/v2/events?silent=no&dry=true"
    assert recorder.last.body == EVENT_BODY.to_json()
    assert isinstance(result.value, TrackEventV2Response)


async def test_return_cart_items_request() -> None:
    recorder = Recorder()
    client, _ = make_client(recorder)
    async with client:
        await client.return_cart_items("a/b", RETURN_BODY, dry=True)
    assert recorder.last.method == "POST"
    assert recorder.path == "/v2/customer_sessions/a%2Fb/returns?dry=true"
    assert orjson.loads(recorder.last.body) == {
        "return": {"returnedCartItems": [{"position": 1, "quantity": 1}]}
    }


@pytest.mark.parametrize(("dry", "query"), [(False, "dry=false"), (True, "dry=true")])
async def test_dry_flag_is_sent_lowercase(dry: bool, query: str) -> None:
    recorder = Recorder()
    client, _ = make_client(recorder)
    async with client:
        await client.update_customer_session("s", SESSION_BODY, dry=dry)
    assert recorder.path.endswith(f"?{query}")


@pytest.mark.parametrize(
    ("session_id", "encoded"),
    [
        ("order-1001", "order-1001"),
        ("a/b", "a%2Fb"),
        ("with space", "with%20space"),
        ("ünïcødé", "%C3%BCn%C3%AFc%C3%B8d%C3%A9"),
        ("q?x#y&z=1", "q%3Fx%23y%26z%3D1"),
        ("50%", "50%25"),
        ("..", "%2E%2E"),
        (".", "%2E"),
    ],
)
async def test_session_ids_are_percent_encoded_as_one_segment(
    session_id: str, encoded: str
) -> None:
    recorder = Recorder()
    client, _ = make_client(recorder)
    async with client:
        await client.update_customer_session(session_id, SESSION_BODY)
    assert recorder.path == f"/v2/customer_sessions/{encoded}?dry=false"


@pytest.mark.parametrize(
    ("base_url", "path"),
    [
        ("https://x.talon.one", "/v2/events"),
        ("https://x.talon.one/", "/v2/events"),
        ("https://x.talon.one//", "/v2/events"),
        ("https://proxy.internal/talon/", "/talon/v2/events"),
        ("http://127.0.0.1:8080", "/v2/events"),
    ],
)
async def test_base_url_is_joined_without_doubled_slashes(base_url: str, path: str) -> None:
    recorder = Recorder()
    client, _ = make_client(recorder, base_url=base_url)
    async with client:
        await client.track_event(EVENT_BODY)
    assert httpx.URL(recorder.last.url).raw_path == f"{path}?silent=no&dry=false".encode()
    assert recorder.last.url.startswith(base_url.rstrip("/") + "/v2/")


async def test_standard_headers() -> None:
    recorder = Recorder()
    client, _ = make_client(recorder)
    async with client:
        await update(client)
    headers = recorder.headers
    assert headers["Authorization"] == f"ApiKey-v1 {API_KEY}"
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json"
    assert headers["Accept-Encoding"] == "identity"
    assert headers["User-Agent"] == f"talon-bridge/{__version__}"
    # Derived by the transports from the URL and the body.
    assert "Host" not in headers
    assert "Content-Length" not in headers
    assert "Idempotency-Key" not in headers


@pytest.mark.parametrize("session_id", ["order-1001", "sess 1/ä?#%", "..", "a b/c"])
async def test_urls_are_sent_in_the_form_httpx_would_normalise_them_to(session_id: str) -> None:
    # Transports send the URL exactly as given, so it must already be in normal form.
    recorder = Recorder()
    client, _ = make_client(recorder)
    async with client:
        await client.update_customer_session(session_id, SESSION_BODY)
        await client.return_cart_items(session_id, RETURN_BODY)
        await client.track_event(EVENT_BODY)
    for request in recorder.requests:
        assert str(httpx.URL(request.url)) == request.url


async def test_timeouts_travel_with_each_request() -> None:
    recorder = Recorder()
    client, _ = make_client(
        recorder, connect_timeout=1.5, read_timeout=4.0, pool_timeout=3.0, call_timeout=9.0
    )
    async with client:
        await update(client)
        await track(client)
    assert recorder.requests[0].timeouts == Timeouts(connect=1.5, read=4.0, pool=3.0, total=9.0)
    assert recorder.requests[1].timeouts is recorder.requests[0].timeouts


@pytest.mark.parametrize(("_name", "call"), OPERATIONS)
async def test_idempotency_key_header_is_sent_when_given(_name: str, call: Call) -> None:
    recorder = Recorder()
    client, _ = make_client(recorder)
    key = idempotency_key_for("evt-1")

    async def keyed(client: TalonClient) -> None:
        if call is update:
            await client.update_customer_session("s", SESSION_BODY, idempotency_key=key)
        elif call is track:
            await client.track_event(EVENT_BODY, idempotency_key=key)
        else:
            await client.return_cart_items("s", RETURN_BODY, idempotency_key=key)

    async with client:
        await keyed(client)
    assert recorder.headers["Idempotency-Key"] == key


@pytest.mark.parametrize(
    ("event_id", "sent"),
    [
        ("evt-1", "evt-1"),
        ("0b9e7c1e-2c55-4b8e-9d7e-0f3f2a1b4c5d", "0b9e7c1e-2c55-4b8e-9d7e-0f3f2a1b4c5d"),
        ("line\nbreak", "line%0Abreak"),
        ("ünï", "%C3%BCn%C3%AF"),
    ],
)
async def test_event_id_travels_in_a_tracing_header(event_id: str, sent: str) -> None:
    recorder = Recorder()
    client, _ = make_client(recorder)
    async with client:
        await client.update_customer_session("s", SESSION_BODY, event_id=event_id)
        await client.track_event(EVENT_BODY, event_id=event_id)
        await client.return_cart_items("s", RETURN_BODY, event_id=event_id)
        await client.update_customer_session("s", SESSION_BODY)
    assert [dict(r.headers).get(EVENT_ID_HEADER) for r in recorder.requests] == [
        sent,
        sent,
        sent,
        None,
    ]


async def test_idempotency_keys_can_be_switched_off() -> None:
    recorder = Recorder()
    client, _ = make_client(recorder, idempotency_keys=False)
    async with client:
        await client.update_customer_session("s", SESSION_BODY, idempotency_key="k-1")
    assert "Idempotency-Key" not in recorder.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "bad\nkey", "ключ"])
async def test_invalid_idempotency_keys_are_refused(key: str) -> None:
    recorder = Recorder()
    client, _ = make_client(recorder)
    async with client:
        with pytest.raises(ValueError, match="idempotency_key"):
            await client.update_customer_session("s", SESSION_BODY, idempotency_key=key)
    assert recorder.requests == []


def test_idempotency_key_for_is_a_stable_uuid5() -> None:
    key = idempotency_key_for("evt-1")
    assert key == "d1cd52a6-fe78-59ef-aa12-b9d718861a49"
    assert key == idempotency_key_for("evt-1")
    assert key != idempotency_key_for("evt-2")
    assert uuid.UUID(key).version == 5


@given(st.text(min_size=1))
def test_idempotency_key_for_equals_uuid5(event_id: str) -> None:
    assert idempotency_key_for(event_id) == str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, event_id))
    assert len(idempotency_key_for("e" * 10_000)) == 36
    with pytest.raises(ValueError, match="event_id"):
        idempotency_key_for("")


async def test_empty_session_id_is_a_permanent_error_without_a_request() -> None:
    recorder = Recorder()
    client, calls = make_client(recorder)
    async with client:
        with pytest.raises(PermanentApiError):
            await client.update_customer_session("", SESSION_BODY)
    assert recorder.requests == []
    assert calls == []


@pytest.mark.parametrize(
    "base_url", ["acme.talon.one", "ftp://acme.talon.one", "https://acme.talon.one/?x=1", ""]
)
def test_bad_base_urls_are_refused(base_url: str) -> None:
    with pytest.raises((ValueError, httpx.InvalidURL)):
        TalonClient(base_url, API_KEY, transport=MockTransport(Recorder()))


@pytest.mark.parametrize("api_key", ["", " padded ", "two\nlines", "ключ-1"])
def test_bad_api_keys_are_refused_without_echoing_them(api_key: str) -> None:
    with pytest.raises(ValueError, match="api_key") as caught:
        TalonClient(BASE, api_key, transport=MockTransport(Recorder()))
    if api_key.strip():
        assert api_key.strip() not in str(caught.value)


# ---------------------------------------------------------------- results


async def test_replayed_flag_follows_the_idempotent_replayed_header() -> None:
    recorder = Recorder(answer(200, json=EMPTY_STATE, headers={"Idempotent-Replayed": "true"}))
    client, _ = make_client(recorder)
    async with client:
        replayed = await client.update_customer_session("s", SESSION_BODY, idempotency_key="k")
        unkeyed = await client.update_customer_session("s", SESSION_BODY)
        recorder.response = answer(200, json=EMPTY_STATE)
        fresh = await client.update_customer_session("s", SESSION_BODY, idempotency_key="k")
    assert replayed.replayed is True
    assert unkeyed.replayed is False  # nothing can be replayed for a request without a key
    assert fresh.replayed is False


async def test_no_content_is_an_empty_success() -> None:
    client, calls = make_client(Recorder(answer(204)))
    async with client:
        result = await track(client)
    assert result.status == 204
    assert result.value == TrackEventV2Response(
        effects=[], created_coupons=[], created_referrals=[]
    )
    assert calls[0][:2] == ("track_event", "2xx")


def test_api_result_is_frozen() -> None:
    result = ApiResult(value=1, status=200, replayed=False, duration=0.1)
    with pytest.raises(AttributeError):
        result.status = 500  # type: ignore[misc]


@pytest.mark.parametrize("model", [IntegrationStateV2, IntegrationSummary])
@pytest.mark.parametrize(
    "body",
    [b"<html>OK</html>", b'{"effects": "nope"}', b'{"effects": []}', b"[]"],
    ids=["html", "wrong-type", "missing-lists", "array"],
)
async def test_unparsable_success_body_is_permanent(body: bytes, model: type[Any]) -> None:
    client, calls = make_client(Recorder(answer(200, content=body)))
    async with client:
        with pytest.raises(PermanentApiError) as caught:
            await client.update_customer_session("order-1001", SESSION_BODY, model=model)
    assert caught.value.status == 200
    assert f"is not a valid {model.__name__} (" in str(caught.value)
    assert caught.value.__cause__ is not None
    assert calls[0][1] == "2xx"


async def test_summary_names_where_an_answer_is_wrong_but_not_the_value() -> None:
    effect = {**STATE_WITH_EFFECT["effects"][0], "campaignId": "secret-ish"}
    wrong = answer(200, json={**EMPTY_STATE, "effects": [effect]})
    client, _ = make_client(Recorder(wrong))
    async with client:
        with pytest.raises(PermanentApiError) as caught:
            await client.track_event(EVENT_BODY, model=IntegrationSummary)
    assert "$.effects[0].campaignId" in str(caught.value)
    assert "secret-ish" not in str(caught.value)


async def test_summary_keeps_props_as_sent_and_skips_what_it_does_not_read() -> None:
    props = rb'{"name": "Caf\u00e9 10%",  "value": 10.50}'
    body = (
        b'{"effects": [{"campaignId": "12", "rulesetId": 34, "ruleIndex": 0, "ruleName": "r",'
        b' "effectType": "setDiscount", "props": ' + props + b', "newField": [1, 2]},'
        b' {"campaignId": 12, "rulesetId": 34, "ruleIndex": 1, "ruleName": "r",'
        b' "effectType": "acceptCoupon"}],'
        b' "createdCoupons": [], "createdReferrals": [], "customerProfile": {"id": 1},'
        b' "customerSession": {"state": "closed", "cartItems": [{"sku": "x"}]}}'
    )
    client, _ = make_client(Recorder(answer(200, content=body)))
    async with client:
        result = await client.update_customer_session("s", SESSION_BODY, model=IntegrationSummary)
    first, second = result.value.effects
    # Republished byte for byte: never parsed and written out again.
    assert first.props_json.encode() == props
    assert first.campaign_id == 12  # lenient, like the pydantic models
    assert second.props_json == "null"
    assert result.value.customer_session is not None
    assert result.value.customer_session.state == "closed"


async def test_no_content_is_an_empty_summary() -> None:
    client, _ = make_client(Recorder(answer(204)))
    async with client:
        result = await client.track_event(EVENT_BODY, model=IntegrationSummary)
    assert result.value == IntegrationSummary(effects=[], created_coupons=[], created_referrals=[])


# ---------------------------------------------------------------- status mapping

STATUS_TABLE: list[tuple[int, Any, dict[str, str], type[ApiError], str]] = [
    (400, VALIDATION_ERROR, {}, PermanentApiError, "4xx"),
    (
        401,
        {"message": "Unauthorized - Invalid API key", "StatusCode": 401},
        {},
        FatalApiError,
        "auth",
    ),
    (403, {"message": "Forbidden"}, {}, FatalApiError, "auth"),
    (404, {"message": "Not found"}, {}, PermanentApiError, "4xx"),
    (409, SESSION_CONFLICT, {}, ConflictError, "409"),
    (409, PROFILE_CONFLICT, {}, ConflictError, "409"),
    (418, None, {}, PermanentApiError, "4xx"),
    (422, VALIDATION_ERROR, {}, PermanentApiError, "4xx"),
    (429, None, {"Retry-After": "7"}, RateLimitedError, "429"),
    (500, {"message": "internal"}, {"Retry-After": "3"}, ServerError, "5xx"),
    (502, "<html>Bad Gateway</html>", {}, ServerError, "5xx"),
    (503, None, {"Retry-After": "12"}, ServerError, "5xx"),
    (504, None, {}, ServerError, "5xx"),
    (302, None, {"Location": "https://elsewhere.example/"}, PermanentApiError, "4xx"),
]


def error_response(status: int, body: Any, headers: dict[str, str]) -> httpx.Response:
    if body is None:
        return answer(status, headers=headers)
    if isinstance(body, str):
        return answer(status, content=body.encode(), headers=headers)
    return answer(status, json=body, headers=headers)


@pytest.mark.parametrize(("operation", "call"), OPERATIONS)
@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "outcome"),
    STATUS_TABLE,
    ids=[f"{row[0]}-{index}" for index, row in enumerate(STATUS_TABLE)],
)
async def test_status_mapping(
    operation: str,
    call: Call,
    status: int,
    body: Any,
    headers: dict[str, str],
    error: type[ApiError],
    outcome: str,
) -> None:
    client, calls = make_client(Recorder(error_response(status, body, headers)))
    async with client:
        with pytest.raises(ApiError) as caught:
            await call(client)
    assert type(caught.value) is error
    assert caught.value.status == status
    assert [(op, out) for op, out, _ in calls] == [(operation, outcome)]
    assert calls[0][2] >= 0
    assert str(caught.value).startswith(f"{operation}: HTTP {status}")
    retryable = status in (409, 429) or status >= 500
    assert isinstance(caught.value, RetryableApiError) is retryable


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (429, "7", 7.0),
        (429, "0", 0.0),
        (429, "1.5", 1.5),
        (429, "soon", None),
        (429, "-3", None),
        (429, None, None),
        (503, "12", 12.0),
        (503, None, None),
        (500, "3", None),
        (502, "3", None),
    ],
)
async def test_retry_after_seconds(status: int, header: str | None, expected: float | None) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    client, _ = make_client(Recorder(answer(status, headers=headers)))
    async with client:
        with pytest.raises(RetryableApiError) as caught:
            await update(client)
    assert caught.value.retry_after == expected


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_http_date(status: int) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    headers = {"Retry-After": format_datetime(when, usegmt=True)}
    client, _ = make_client(Recorder(answer(status, headers=headers)))
    async with client:
        with pytest.raises(RetryableApiError) as caught:
            await update(client)
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 121


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 5 ", now=now) == 5.0
    assert parse_retry_after("Sat, 10 Jan 2026 09:01:30 GMT", now=now) == 90.0
    assert parse_retry_after("Sat, 10 Jan 2026 08:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("Saturday, 10-Jan-26 09:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("Sat Jan 10 09:00:20 2026", now=now) == 20.0
    for junk in (None, "", "tomorrow", "nan", "inf", "-1"):
        assert parse_retry_after(junk, now=now) is None


async def test_validation_error_details_are_reachable() -> None:
    client, _ = make_client(Recorder(answer(400, json=VALIDATION_ERROR)))
    async with client:
        with pytest.raises(PermanentApiError) as caught:
            await update(client)
    body = caught.value.body
    assert isinstance(body, ErrorResponse)
    assert body.errors is not None
    assert body.errors[0].title == "Unknown"
    assert body.errors[0].source.pointer == "/attributes/MyAttribute"
    assert "The submitted data was invalid" in str(caught.value)
    assert "/attributes/MyAttribute" in str(caught.value)


@pytest.mark.parametrize("body", [SESSION_CONFLICT, PROFILE_CONFLICT])
async def test_conflict_bodies_are_parsed(body: dict[str, Any]) -> None:
    client, _ = make_client(Recorder(answer(409, json=body)))
    async with client:
        with pytest.raises(ConflictError) as caught:
            await track(client)
    assert isinstance(caught.value.body, ErrorResponseWithStatus)
    assert caught.value.body.status_code == 409
    assert caught.value.body.message == body["message"]
    assert body["message"] in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [b"<html>Bad Request</html>", b"", b"[1, 2]", b'{"message": 3}', b"\xff\xfe"],
    ids=["html", "empty", "array", "wrong-type", "binary"],
)
async def test_unparsable_error_bodies_are_tolerated(content: bytes) -> None:
    client, _ = make_client(Recorder(answer(400, content=content)))
    async with client:
        with pytest.raises(PermanentApiError) as caught:
            await update(client)
    assert caught.value.body is None
    assert str(caught.value) == "update_customer_session: HTTP 400 Bad Request"


async def test_error_entries_of_another_shape_keep_the_message() -> None:
    body = {"message": "Busy", "errors": [{"whatever": 1}], "StatusCode": 409}
    client, _ = make_client(Recorder(answer(409, json=body)))
    async with client:
        with pytest.raises(ConflictError) as caught:
            await update(client)
    assert isinstance(caught.value.body, ErrorResponseWithStatus)
    assert (caught.value.body.message, caught.value.body.status_code) == ("Busy", 409)


@pytest.mark.parametrize(
    ("raised", "error", "outcome"),
    [
        (httpx.ConnectTimeout("connect timed out"), ApiTimeoutError, "timeout"),
        (httpx.ReadTimeout("read timed out"), ApiTimeoutError, "timeout"),
        (httpx.WriteTimeout("write timed out"), ApiTimeoutError, "timeout"),
        (httpx.PoolTimeout("no connection"), ApiTimeoutError, "timeout"),
        (httpx.ConnectError("refused"), ApiConnectionError, "connection"),
        (httpx.ReadError("reset by peer"), ApiConnectionError, "connection"),
        (httpx.WriteError("broken pipe"), ApiConnectionError, "connection"),
        (httpx.RemoteProtocolError("server disconnected"), ApiConnectionError, "connection"),
        (httpx.DecodingError("bad gzip"), ApiConnectionError, "connection"),
    ],
)
@pytest.mark.parametrize(("operation", "call"), OPERATIONS)
async def test_transport_errors(
    operation: str, call: Call, raised: Exception, error: type[ApiError], outcome: str
) -> None:
    client, calls = make_client(Recorder(raised))
    async with client:
        with pytest.raises(ApiError) as caught:
            await call(client)
    assert type(caught.value) is error
    assert caught.value.status is None
    assert caught.value.__cause__ is raised
    assert [(op, out) for op, out, _ in calls] == [(operation, outcome)]


async def test_observer_sees_each_request_once() -> None:
    responses = iter(
        [
            answer(200, json=EMPTY_STATE),
            answer(409, json=SESSION_CONFLICT),
            answer(200, json=EMPTY_STATE),
        ]
    )
    client, calls = make_client(lambda request: next(responses))
    async with client:
        await update(client)
        with pytest.raises(ConflictError):
            await track(client)
        await give_back(client)
    assert [(op, out) for op, out, _ in calls] == [
        ("update_customer_session", "2xx"),
        ("track_event", "409"),
        ("return_cart_items", "2xx"),
    ]
    assert all(seconds >= 0 for _, _, seconds in calls)


async def test_client_works_without_an_observer() -> None:
    client = TalonClient(BASE, API_KEY, transport=MockTransport(Recorder()))
    async with client:
        assert (await update(client)).status == 200


# ---------------------------------------------------------------- the API key stays secret


async def test_api_key_never_appears_in_errors_or_reprs() -> None:
    echo = {
        "message": f"Invalid API key {API_KEY}",
        "errors": [{"title": "auth", "details": API_KEY, "source": {"parameter": API_KEY}}],
    }
    client, _ = make_client(Recorder(answer(401, json=echo)))
    async with client:
        with pytest.raises(FatalApiError) as fatal:
            await update(client)
    client, _ = make_client(Recorder(httpx.ConnectError(f"proxy said {API_KEY}")))
    async with client:
        with pytest.raises(ApiConnectionError) as connection:
            await update(client)
    client, _ = make_client(Recorder(httpx.ReadTimeout(f"timeout {API_KEY}")))
    async with client:
        with pytest.raises(ApiTimeoutError) as timeout:
            await update(client)
    for caught in (fatal, connection, timeout):
        exc = caught.value
        for text in (str(exc), repr(exc), repr(exc.body), exc.message):
            assert API_KEY not in text
    assert "***" in str(fatal.value)
    assert API_KEY not in repr(client)
    assert API_KEY not in str(client)


async def test_api_key_echoed_with_json_escapes_is_masked_in_the_body_and_dead_letter() -> None:
    # Every character escaped: the raw bytes do not contain the key, the decoded text does.
    escaped = "".join(f"\\u{ord(c):04x}" for c in API_KEY)
    raw = (
        f'{{"message": "Invalid API key {escaped}", "errors": [{{"title": "auth", '
        f'"details": "{escaped}", "source": {{"{escaped}": "{escaped}"}}}}]}}'
    ).encode()
    assert API_KEY.encode() not in raw
    assert API_KEY in orjson.loads(raw)["message"]
    client, _ = make_client(Recorder(answer(400, content=raw)))
    async with client:
        with pytest.raises(PermanentApiError) as caught:
            await update(client)
    exc = caught.value
    assert exc.body is not None
    body = exc.body.model_dump_json()
    assert API_KEY not in body
    assert "***" in body
    headers = dead_letter_headers(
        None,
        DeadLetter("api", "PermanentApiError", "permanent", exc.message, body=body),
        topic="t",
        partition=0,
        offset=1,
        timestamp_ms=0,
        group="g",
        version="v",
    )
    for _, value in headers:
        assert API_KEY.encode() not in value
    assert dict(headers)[H_ERROR_BODY].count(b"***") == 2


# ---------------------------------------------------------------- lifecycle


async def test_closing_the_client_closes_its_transport() -> None:
    transport = MockTransport(Recorder())
    async with TalonClient(BASE, API_KEY, transport=transport) as client:
        await update(client)
    assert transport.closed
    transport = MockTransport(Recorder())
    client = TalonClient(BASE, API_KEY, transport=transport)
    await client.aclose()
    assert transport.closed
    with pytest.raises(RuntimeError, match="closed"):
        await update(client)


async def test_async_handlers_are_awaited() -> None:
    async def handler(request: Request) -> Answer:
        await asyncio.sleep(0)
        return answer(200, json=EMPTY_STATE)

    async with TalonClient(BASE, API_KEY, transport=MockTransport(handler)) as client:
        assert (await update(client)).status == 200


async def test_content_codings_are_undone() -> None:
    wire = gzip.compress(orjson.dumps(STATE_WITH_EFFECT))
    coded = answer(200, content=wire, headers={"Content-Encoding": "gzip"})
    client, _ = make_client(Recorder(coded))
    async with client:
        result = await update(client)
    assert [effect.effect_type for effect in result.value.effects] == ["acceptCoupon"]


async def test_a_body_that_breaks_its_coding_is_a_connection_error() -> None:
    coded = answer(200, content=b"not gzip", headers={"Content-Encoding": "gzip"})
    client, calls = make_client(Recorder(coded))
    async with client:
        with pytest.raises(ApiConnectionError) as caught:
            await update(client)
    assert isinstance(caught.value.__cause__, httpx.DecodingError)
    assert [outcome for _, outcome, _ in calls] == ["connection"]


# ---------------------------------------------------------------- aiohttp error translation


def test_aiohttp_errors_map_to_httpx_errors() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 1, False, True, None, None, None)
    payload_timeout = aiohttp.ClientPayloadError("cut short")
    payload_timeout.__cause__ = aiohttp.SocketTimeoutError("quiet")
    cases: list[tuple[Exception, type[httpx.TransportError]]] = [
        (aiohttp.ConnectionTimeoutError("slow handshake"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("quiet"), httpx.ReadTimeout),
        (aiohttp.ServerTimeoutError("quiet"), httpx.ReadTimeout),
        (TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ClientConnectorError(key, OSError(111, "refused")), httpx.ConnectError),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("truncated"), httpx.RemoteProtocolError),
        (payload_timeout, httpx.ReadTimeout),
        (aiohttp.ClientOSError(104, "reset"), httpx.ReadError),
        (ConnectionResetError(104, "reset"), httpx.ReadError),
        (aiohttp.InvalidURL("nope"), httpx.UnsupportedProtocol),
        (aiohttp.ClientError("other"), httpx.ReadError),
    ]
    for exc, expected in cases:
        mapped = _translate(exc)
        assert type(mapped) is expected, exc


CODINGS: dict[str | None, Callable[[bytes], bytes]] = {
    None: lambda data: data,
    "identity": lambda data: data,
    " Identity ": lambda data: data,
    "gzip": gzip.compress,
    "deflate": zlib.compress,
}


@pytest.mark.parametrize("coding", list(CODINGS))
def test_decoded_content_undoes_what_httpx_would_undo(coding: str | None) -> None:
    text = orjson.dumps(STATE_WITH_EFFECT)
    headers = {"Content-Type": "application/json"}
    if coding is not None:
        headers["Content-Encoding"] = coding
    wire = CODINGS[coding](text)
    reference = httpx.Response(200, headers=headers, content=wire)
    assert decoded_content(Answer(200, "OK", httpx.Headers(headers), wire)) == reference.content
    assert reference.content == text


# ---------------------------------------------------------------- connection slots


async def test_slots_are_handed_to_waiters_in_order() -> None:
    slots = _Slots(1)
    assert slots.try_acquire()
    assert not slots.try_acquire()
    order: list[str] = []

    async def wait(name: str) -> None:
        await slots.acquire(None)
        order.append(name)

    first = asyncio.create_task(wait("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(wait("second"))
    await asyncio.sleep(0)
    slots.release()
    assert not slots.try_acquire()  # a newcomer cannot overtake the queue
    await first
    slots.release()
    await second
    assert order == ["first", "second"]
    slots.release()
    assert slots.try_acquire()


async def test_slots_forget_waiters_that_gave_up() -> None:
    slots = _Slots(1)
    assert slots.try_acquire()
    with pytest.raises(TimeoutError):
        await slots.acquire(0.01)
    cancelled = asyncio.create_task(slots.acquire(None))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    slots.release()
    assert slots.try_acquire()  # free again, not handed to a waiter that left


async def test_a_slot_granted_while_giving_up_is_passed_on() -> None:
    slots = _Slots(1)
    assert slots.try_acquire()
    waiting = asyncio.create_task(slots.acquire(None))
    await asyncio.sleep(0)
    slots.release()  # granted to the waiting task...
    waiting.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots.try_acquire()


# ---------------------------------------------------------------- real HTTP, default transport


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


class FakeTalon:
    """A tiny aiohttp.web server whose behaviour is chosen by the session id."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        segments = request.raw_path.split("?")[0].split("/")  # "", "v2", kind, id, ...
        session = segments[3] if len(segments) > 3 else segments[2]
        if session == "slow":
            await self.release.wait()
        if session == "conflict":
            return web.json_response(SESSION_CONFLICT, status=409)
        if session == "busy":
            return web.json_response(
                {"message": "slow down"}, status=429, headers={"Retry-After": "2"}
            )
        if session == "down":
            return web.Response(status=503, text="down", headers={"Retry-After": "4"})
        if session == "denied":
            return web.json_response({"message": "Unauthorized", "StatusCode": 401}, status=401)
        if session == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if session == "gzip":
            return web.Response(
                body=gzip.compress(orjson.dumps(STATE_WITH_EFFECT)),
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        return web.Response(
            body=orjson.dumps(STATE_WITH_EFFECT),
            content_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )


@pytest.fixture
async def fake_talon() -> AsyncIterator[tuple[str, FakeTalon]]:
    fake = FakeTalon()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", fake
    finally:
        fake.release.set()
        await runner.cleanup()


@pytest.fixture(params=["reqwest", "aiohttp"])
def engine(request: pytest.FixtureRequest) -> HttpEngine:
    value: HttpEngine = request.param
    return value


TRANSPORTS = {"reqwest": ReqwestTransport, "aiohttp": AiohttpTransport}


async def test_real_http_success(fake_talon: tuple[str, FakeTalon], engine: HttpEngine) -> None:
    url, fake = fake_talon
    calls: list[tuple[str, str, float]] = []
    async with TalonClient(
        url, API_KEY, http_engine=engine, observer=lambda *call: calls.append(call)
    ) as client:
        result = await client.update_customer_session(
            "a/b c", SESSION_BODY, idempotency_key=idempotency_key_for("evt-1")
        )
        gzipped = await client.update_customer_session("gzip", SESSION_BODY)
    assert result.status == 200
    assert result.replayed is True
    assert [effect.effect_type for effect in result.value.effects] == ["acceptCoupon"]
    assert gzipped.value.effects == result.value.effects
    seen = fake.seen[0]
    assert seen["method"] == "PUT"
    assert seen["raw_path"] == "/v2/customer_sessions/a%2Fb%20c?dry=false"
    assert seen["body"] == SESSION_BODY.to_json()
    assert seen["headers"]["Authorization"] == f"ApiKey-v1 {API_KEY}"
    assert seen["headers"]["User-Agent"] == f"talon-bridge/{__version__}"
    assert seen["headers"]["Idempotency-Key"] == idempotency_key_for("evt-1")
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["Accept-Encoding"] == "identity"
    assert seen["headers"]["Host"] == url.removeprefix("http://")
    assert seen["headers"]["Content-Length"] == str(len(SESSION_BODY.to_json()))
    assert [outcome for _, outcome, _ in calls] == ["2xx", "2xx"]


@pytest.mark.parametrize(
    ("session", "error", "status", "retry_after"),
    [
        ("conflict", ConflictError, 409, None),
        ("busy", RateLimitedError, 429, 2.0),
        ("down", ServerError, 503, 4.0),
        ("denied", FatalApiError, 401, None),
    ],
)
async def test_real_http_status_mapping(
    fake_talon: tuple[str, FakeTalon],
    engine: HttpEngine,
    session: str,
    error: type[ApiError],
    status: int,
    retry_after: float | None,
) -> None:
    url, _ = fake_talon
    async with TalonClient(url, API_KEY, http_engine=engine) as client:
        with pytest.raises(error) as caught:
            await client.update_customer_session(session, SESSION_BODY)
    assert caught.value.status == status
    assert caught.value.retry_after == retry_after


async def test_real_http_read_timeout(
    fake_talon: tuple[str, FakeTalon], engine: HttpEngine
) -> None:
    url, _ = fake_talon
    calls: list[tuple[str, str, float]] = []
    async with TalonClient(
        url,
        API_KEY,
        read_timeout=0.2,
        http_engine=engine,
        observer=lambda *call: calls.append(call),
    ) as client:
        await client.track_event(EVENT_BODY)  # answered at once
        with pytest.raises(ApiTimeoutError) as caught:
            await client.update_customer_session("slow", SESSION_BODY)
        assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
        # The pool is still usable afterwards.
        assert (await client.update_customer_session("fine", SESSION_BODY)).status == 200
    assert [outcome for _, outcome, _ in calls] == ["2xx", "timeout", "2xx"]


async def test_real_http_pool_timeout(
    fake_talon: tuple[str, FakeTalon], engine: HttpEngine
) -> None:
    url, fake = fake_talon
    async with TalonClient(
        url, API_KEY, max_connections=1, pool_timeout=0.1, http_engine=engine
    ) as client:
        holder = asyncio.create_task(client.update_customer_session("slow", SESSION_BODY))
        while not fake.seen:
            await asyncio.sleep(0.01)
        with pytest.raises(ApiTimeoutError) as caught:
            await client.update_customer_session("fine", SESSION_BODY)
        assert isinstance(caught.value.__cause__, httpx.PoolTimeout)
        fake.release.set()
        assert (await holder).status == 200


async def test_real_http_call_deadline_bounds_a_dripping_answer(engine: HttpEngine) -> None:
    # Each byte comes well within the read timeout, so only a deadline for the whole call
    # stops it; without one the call would succeed after about 15 s.
    body = orjson.dumps(EMPTY_STATE).ljust(60)
    sent = 0
    stop = asyncio.Event()
    handlers: list[asyncio.Task[None]] = []

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        try:
            for byte in body:
                if stop.is_set():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.25)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with TalonClient(
            f"http://127.0.0.1:{port}",
            API_KEY,
            read_timeout=5,
            call_timeout=1,
            http_engine=engine,
        ) as client:
            with pytest.raises(ApiTimeoutError) as caught:
                await client.update_customer_session("drip", SESSION_BODY)
        assert 0 < sent < len(body)
    finally:
        stop.set()
        server.close()
        await asyncio.gather(*handlers)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


async def test_real_http_server_disconnect(
    fake_talon: tuple[str, FakeTalon], engine: HttpEngine
) -> None:
    url, _ = fake_talon
    async with TalonClient(url, API_KEY, http_engine=engine) as client:
        with pytest.raises(ApiConnectionError) as caught:
            await client.return_cart_items("drop", RETURN_BODY)
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError | httpx.ReadError)


async def test_real_http_connection_refused(engine: HttpEngine) -> None:
    calls: list[tuple[str, str, float]] = []
    async with TalonClient(
        f"http://127.0.0.1:{free_port()}",
        API_KEY,
        http_engine=engine,
        observer=lambda *call: calls.append(call),
    ) as client:
        with pytest.raises(ApiConnectionError) as caught:
            await client.track_event(EVENT_BODY)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert API_KEY not in str(caught.value)
    assert [outcome for _, outcome, _ in calls] == ["connection"]


async def test_real_http_malformed_answer_keeps_the_key_out_of_the_chain(
    engine: HttpEngine,
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"HTTP/1.1 abc nonsense\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with TalonClient(f"http://127.0.0.1:{port}", API_KEY, http_engine=engine) as client:
            with pytest.raises(ApiConnectionError) as caught:
                await client.track_event(EVENT_BODY)
    finally:
        server.close()
        await server.wait_closed()
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
    chain: list[BaseException] = []
    current: BaseException | None = caught.value
    while current is not None:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for exc in chain:
        assert API_KEY not in repr(exc)
        assert API_KEY not in str(exc)


async def test_real_http_headers_are_sent_byte_for_byte(
    fake_talon: tuple[str, FakeTalon], engine: HttpEngine
) -> None:
    url, fake = fake_talon
    async with TRANSPORTS[engine]() as transport:
        request = Request("GET", f"{url}/v2/events", [("X-Note", "grüße")], b"", Timeouts())
        assert (await transport.exchange(request)).status == 200
        bad = request._replace(headers=[("X-Note", "split\r\nX-Injected: 1")])
        with pytest.raises(httpx.LocalProtocolError):
            await transport.exchange(bad)
    assert fake.seen[0]["headers"]["X-Note"] == "grüße"
    assert len(fake.seen) == 1


async def test_every_transport_sends_the_same_bytes(
    fake_talon: tuple[str, FakeTalon],
) -> None:
    url, fake = fake_talon
    outcomes: list[list[object]] = []
    transports = [AiohttpTransport(), ReqwestTransport()]
    for transport in transports:
        async with TalonClient(url, API_KEY, transport=transport) as client:
            key = idempotency_key_for("evt-1")
            session = await client.update_customer_session(
                "a/b c", SESSION_BODY, idempotency_key=key, event_id="é-1"
            )
            event = await client.track_event(EVENT_BODY, dry=True)
            gzipped = await client.update_customer_session("gzip", SESSION_BODY)
            with pytest.raises(RateLimitedError) as caught:
                await client.update_customer_session("busy", SESSION_BODY)
        outcomes.append(
            [
                (session.value, session.status, session.replayed),
                (event.value, event.status, event.replayed),
                gzipped.value,
                (str(caught.value), caught.value.retry_after),
            ]
        )
    for path in range(1, len(transports)):
        assert comparable(fake.seen[4 * path : 4 * path + 4]) == comparable(fake.seen[:4])
        assert outcomes[path] == outcomes[0]


def comparable(seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Requests with header names in one case: HTTP/1.1 engines differ only there."""
    return [{**r, "headers": {k.lower(): v for k, v in r["headers"].items()}} for r in seen]


@pytest.mark.parametrize("transport_class", [AiohttpTransport, ReqwestTransport])
async def test_transport_refuses_requests_after_close(
    transport_class: type[PooledTransport],
) -> None:
    transport = transport_class()
    await transport.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await transport.exchange(Request("GET", "http://127.0.0.1/", [], b"", Timeouts()))


def test_reqwest_errors_keep_urls_out_of_messages() -> None:
    exc = rq.ConnectError(
        "error sending request for url (http://talon.test/v2/customer_sessions/cust-secret-1)",
        {"causes": [{"message": "error sending request for url (http://talon.test/x/cust-2)"}]},
    )
    mapped = _translate_reqwest(exc)
    assert "cust-secret-1" not in str(mapped)
    assert "cust-2" not in str(mapped)
    assert "<url>" in str(mapped)


def test_aiohttp_errors_keep_urls_out_of_messages() -> None:
    info = aiohttp.RequestInfo(
        yarl.URL("http://talon.test/v2/customer_sessions/cust-secret-1"),
        "PUT",
        multidict.CIMultiDictProxy(multidict.CIMultiDict()),
    )
    mapped = _translate(aiohttp.ClientResponseError(info, (), status=400, message="bad"))
    assert "cust-secret-1" not in str(mapped)
    assert "<url>" in str(mapped)
