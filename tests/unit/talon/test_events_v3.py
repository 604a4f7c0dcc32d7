"""trackEventV3 and getEventV3 on the client: requests, and the two meanings of its 409."""

from __future__ import annotations

import orjson
import pytest

from bridge.errors import ConflictError, EventExistsError, PermanentApiError
from bridge.talon import EventV3, IntegrationEventV3Request, IntegrationEventV3Response
from bridge.talon.transports import answer
from tests.support.talon import (
    PROFILE_CONFLICT,
    STATE_WITH_EFFECT,
    Recorder,
    make_client,
    track,
)

EXISTS = {
    "message": "An event with this integrationId already exists",
    "errors": [
        {
            "title": "Conflict",
            "details": "an event with this integrationId is registered already",
            "source": {"pointer": "/integrationId"},
        }
    ],
    "StatusCode": 409,
}
BODY = IntegrationEventV3Request(
    type="order_shipped", profile_id="cust-42", integration_id="order-7/shipped"
)
STORED = {
    "id": 7,
    "created": "2026-12-05T10:00:00.000Z",
    "applicationId": 1,
    "profileId": "cust-42",
    "type": "order_shipped",
    "attributes": {},
    "integrationId": "order-7/shipped",
    "effects": STATE_WITH_EFFECT["effects"],
}


async def test_track_event_v3_posts_the_event_with_its_integration_id() -> None:
    recorder = Recorder(answer(200, json=STATE_WITH_EFFECT))
    client, calls = make_client(recorder)
    async with client:
        result = await client.track_event_v3(BODY, idempotency_key="k-1", event_id="e-1")
    assert isinstance(result.value, IntegrationEventV3Response)
    assert [e.effect_type for e in result.value.effects] == ["acceptCoupon"]
    assert recorder.last.method == "POST"
    assert recorder.path == "/v3/events?silent=no&dry=false"
    assert orjson.loads(recorder.last.body) == {
        "type": "order_shipped",
        "profileId": "cust-42",
        "integrationId": "order-7/shipped",
    }
    assert recorder.headers["Idempotency-Key"] == "k-1"
    assert calls[0][:2] == ("track_event_v3", "2xx")


async def test_get_event_v3_reads_the_stored_event_by_its_encoded_id() -> None:
    recorder = Recorder(answer(200, json=STORED))
    client, calls = make_client(recorder)
    async with client:
        result = await client.get_event_v3("order-7/shipped")
    assert isinstance(result.value, EventV3)
    assert [e.effect_type for e in result.value.effects] == ["acceptCoupon"]
    assert recorder.last.method == "GET"
    assert recorder.path.partition("?")[0] == "/v3/events/order-7%2Fshipped"
    assert "Idempotency-Key" not in recorder.headers
    assert calls[0][:2] == ("track_event_v3", "2xx")


async def test_get_event_v3_of_an_unknown_event_is_permanent() -> None:
    missing = {"message": "Event not found", "errors": [], "StatusCode": 404}
    client, _ = make_client(Recorder(answer(404, json=missing)))
    async with client:
        with pytest.raises(PermanentApiError):
            await client.get_event_v3("nope")


async def test_the_exists_409_is_told_apart_by_its_body() -> None:
    client, calls = make_client(Recorder(answer(409, json=EXISTS)))
    async with client:
        with pytest.raises(EventExistsError) as caught:
            await client.track_event_v3(BODY)
    assert caught.value.status == 409
    assert "already exists" in str(caught.value)
    assert not isinstance(caught.value, ConflictError)  # never retried
    assert calls[0][:2] == ("track_event_v3", "409")


@pytest.mark.parametrize(
    "content",
    [
        orjson.dumps(PROFILE_CONFLICT),
        orjson.dumps({"message": "Conflict", "errors": [], "StatusCode": 409}),
        orjson.dumps({"StatusCode": 409}),
        b"",
        b"<html>409 Conflict</html>",
    ],
    ids=["busy-profile", "unknown-message", "no-message", "empty", "html"],
)
async def test_any_other_409_of_track_event_v3_is_a_busy_conflict(content: bytes) -> None:
    client, _ = make_client(Recorder(answer(409, content=content)))
    async with client:
        with pytest.raises(ConflictError):
            await client.track_event_v3(BODY)


async def test_the_exists_words_mean_nothing_to_track_event_v2() -> None:
    # Only trackEventV3 registers events once; a V2 409 keeps its one meaning.
    client, _ = make_client(Recorder(answer(409, json=EXISTS)))
    async with client:
        with pytest.raises(ConflictError):
            await track(client)


def test_an_empty_integration_id_is_refused_by_the_model() -> None:
    with pytest.raises(ValueError, match="integration_id"):
        IntegrationEventV3Request(type="t", profile_id="p", integration_id="")
