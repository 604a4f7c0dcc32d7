"""The transports on their own: error translation, content decoding, connection slots."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Callable

import aiohttp
import httpx
import orjson
import pytest

from bridge.talon.transports import Answer, decoded_content
from bridge.talon.transports.aiohttp import _translate
from bridge.talon.transports.base import Slots
from tests.support.talon import STATE_WITH_EFFECT

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
    slots = Slots(1)
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
    slots = Slots(1)
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
    slots = Slots(1)
    assert slots.try_acquire()
    waiting = asyncio.create_task(slots.acquire(None))
    await asyncio.sleep(0)
    slots.release()  # granted to the waiting task...
    waiting.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots.try_acquire()
