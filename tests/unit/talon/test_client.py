"""TalonClient lifecycle and the mock transport it runs on in tests."""

from __future__ import annotations

import asyncio
import gzip

import httpx
import orjson
import pytest

from bridge.errors import ApiConnectionError
from bridge.talon import TalonClient
from bridge.talon.transports import Answer, MockTransport, Request, answer
from tests.support.talon import (
    API_KEY,
    BASE,
    EMPTY_STATE,
    STATE_WITH_EFFECT,
    Recorder,
    make_client,
    update,
)

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
