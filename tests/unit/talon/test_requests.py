"""TalonClient requests: addressing, headers, idempotency keys, timeouts and argument checks."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge import __version__
from bridge.errors import PermanentApiError
from bridge.talon import (
    EVENT_ID_HEADER,
    IntegrationStateV2,
    IntegrationSummary,
    TalonClient,
    TrackEventV2Response,
    idempotency_key_for,
)
from bridge.talon.client import IDEMPOTENCY_NAMESPACE
from bridge.talon.transports import MockTransport, Timeouts, answer
from tests.support.talon import (
    API_KEY,
    BASE,
    EVENT_BODY,
    OPERATIONS,
    RETURN_BODY,
    SESSION_BODY,
    STATE_WITH_EFFECT,
    Call,
    Recorder,
    make_client,
    track,
    update,
)


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
        assert [(e.effect_type, orjson.loads(e.props)) for e in result.value.effects] == [
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
