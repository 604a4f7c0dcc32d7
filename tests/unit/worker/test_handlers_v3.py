"""Events through trackEventV3: which commands go there, their integrationId, and the
"already exists" 409 turned into the stored outcome."""

from __future__ import annotations

import orjson
import pytest

from bridge.commands import Command, TrackEvent, TrackEventV3
from bridge.errors import ConflictError
from bridge.talon.transports import Answer, Request, answer
from bridge.types import EventsApi
from bridge.worker.handlers import Handlers
from tests.support.talon import EMPTY_STATE, PROFILE_CONFLICT, STATE_WITH_EFFECT, make_client

EXISTS = {
    "message": "An event with this integrationId already exists",
    "errors": [],
    "StatusCode": 409,
}
STORED = {
    "id": 3,
    "created": "2026-12-05T10:00:00.000Z",
    "applicationId": 1,
    "profileId": "cust-42",
    "type": "order_shipped",
    "attributes": {},
    "effects": STATE_WITH_EFFECT["effects"],
}


class Talon:
    """Answers POSTs with `posted` and GETs of stored events with `STORED`."""

    def __init__(self, posted: Answer) -> None:
        self.posted = posted
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Answer:
        self.requests.append(request)
        return self.posted if request.method == "POST" else answer(200, json=STORED)

    @property
    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.partition('.one')[2].partition('?')[0]}" for r in self.requests]


def _command(payload: TrackEvent | TrackEventV3, event_id: str = "shop:7") -> Command:
    return Command(event_id, "cart-1", 0, payload)


def _handlers(talon: Talon, events_api: EventsApi = "v2") -> tuple[Handlers, list[str], list[int]]:
    client, _ = make_client(talon)
    deduplicated: list[int] = []
    handlers = Handlers(
        client, events_api=events_api, on_deduplicated=lambda: deduplicated.append(1)
    )
    return handlers, deduplicated


V3 = TrackEventV3(type="order_shipped", profile_id="cust-42")
V2 = TrackEvent(type="order_shipped", profile_id="cust-42")


async def test_a_v3_command_is_registered_under_its_event_id_by_default() -> None:
    talon = Talon(answer(200, json=STATE_WITH_EFFECT))
    handlers, deduplicated = _handlers(talon)
    applied = await handlers.apply(_command(V3))
    assert talon.paths == ["POST /v3/events"]
    assert orjson.loads(talon.requests[0].body)["integrationId"] == "shop:7"
    assert [e.effect_type for e in applied.effects] == ["acceptCoupon"]
    assert deduplicated == []


async def test_an_integration_id_of_its_own_is_kept() -> None:
    talon = Talon(answer(200, json=EMPTY_STATE))
    handlers, _ = _handlers(talon)
    own = TrackEventV3(type="order_shipped", profile_id="cust-42", integration_id="order-7")
    await handlers.apply(_command(own))
    assert orjson.loads(talon.requests[0].body)["integrationId"] == "order-7"


async def test_an_event_registered_already_publishes_its_stored_effects() -> None:
    talon = Talon(answer(409, json=EXISTS))
    handlers, deduplicated = _handlers(talon)
    applied = await handlers.apply(_command(V3))
    assert talon.paths == ["POST /v3/events", "GET /v3/events/shop%3A7"]
    assert [e.effect_type for e in applied.effects] == ["acceptCoupon"]
    assert applied.created_coupons == []
    assert deduplicated == [1]


async def test_a_busy_profile_is_still_a_conflict_to_retry() -> None:
    talon = Talon(answer(409, json=PROFILE_CONFLICT))
    handlers, deduplicated = _handlers(talon)
    with pytest.raises(ConflictError):
        await handlers.apply(_command(V3))
    assert talon.paths == ["POST /v3/events"]
    assert deduplicated == []


@pytest.mark.parametrize(("events_api", "path"), [("v2", "/v2/events"), ("v3", "/v3/events")])
async def test_the_setting_picks_the_endpoint_of_plain_events(
    events_api: EventsApi, path: str
) -> None:
    talon = Talon(answer(200, json=EMPTY_STATE))
    handlers, _ = _handlers(talon, events_api)
    await handlers.apply(_command(V2, event_id="shop:8"))
    assert talon.paths == [f"POST {path}"]
    body = orjson.loads(talon.requests[0].body)
    assert body.get("integrationId") == ("shop:8" if events_api == "v3" else None)
