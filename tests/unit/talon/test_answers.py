"""TalonClient answers: results, the status and transport-error mapping, the observer, and
the API key kept out of every error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest

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
    ApiResult,
    ErrorResponse,
    ErrorResponseWithStatus,
    IntegrationStateV2,
    IntegrationSummary,
    TalonClient,
    TrackEventV2Response,
    parse_retry_after,
    summary,
)
from bridge.talon.transports import Answer, MockTransport, answer
from tests.support.talon import (
    API_KEY,
    BASE,
    EMPTY_STATE,
    EVENT_BODY,
    OPERATIONS,
    PROFILE_CONFLICT,
    SESSION_BODY,
    SESSION_CONFLICT,
    STATE_WITH_EFFECT,
    VALIDATION_ERROR,
    Call,
    Recorder,
    give_back,
    make_client,
    track,
    update,
)

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
    assert first.props.encode() == props
    assert first.campaign_id == 12  # lenient, like the pydantic models
    assert second.props == "null"
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


def error_response(status: int, body: Any, headers: dict[str, str]) -> Answer:
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


def test_repeated_effects_are_read_once_and_kept_within_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(summary, "_KEPT", {})
    monkeypatch.setattr(summary, "EFFECTS_KEPT", 2)

    def effect(n: int) -> bytes:
        return (
            b'{"campaignId": 1, "rulesetId": 2, "ruleIndex": 0, "ruleName": "r",'
            b' "effectType": "setDiscountPerItem", "props": {"position": %d}}' % n
        )

    def read(*effects: bytes) -> list[Any]:
        body = b'{"effects": [%b], "createdCoupons": [], "createdReferrals": []}'
        return IntegrationSummary.from_json(body % b",".join(effects)).effects

    first = read(effect(0), effect(1))
    again = read(effect(0), effect(1), effect(0))
    # The same records, not equal copies: the Avro writer keeps their encodings by identity.
    assert again[0] is first[0] and again[1] is first[1] and again[2] is first[0]
    positions = [orjson.loads(e.props)["position"] for e in again]
    assert positions == [0, 1, 0]
    read(effect(2))
    assert len(summary._KEPT) == 2
    assert read(effect(0))[0] is not first[0]


def test_a_large_effect_is_read_every_time_and_never_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An answer can hold effects of any size; keeping 8,192 large ones would hold gigabytes.
    monkeypatch.setattr(summary, "_KEPT", {})
    name = "x" * summary.EFFECT_KEPT_BYTES
    large = (
        b'{"campaignId": 1, "rulesetId": 2, "ruleIndex": 0, "ruleName": "%b",'
        b' "effectType": "customEffect", "props": {}}' % name.encode()
    )
    body = b'{"effects": [%b], "createdCoupons": [], "createdReferrals": []}' % large
    first = IntegrationSummary.from_json(body).effects[0]
    again = IntegrationSummary.from_json(body).effects[0]
    assert first == again and first is not again
    assert first.rule_name == name
    assert summary._KEPT == {}
