"""Both real transports under TalonClient, end to end against HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import multidict
import orjson
import pytest
import yarl
from aiohttp import web
from pyreqwest import exceptions as rq

from bridge import __version__
from bridge.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    ConflictError,
    FatalApiError,
    RateLimitedError,
    ServerError,
)
from bridge.talon import AiohttpTransport, TalonClient, idempotency_key_for
from bridge.talon.client import HttpEngine
from bridge.talon.transports import (
    HttptoolsTransport,
    PooledTransport,
    Request,
    ReqwestTransport,
    Timeouts,
)
from bridge.talon.transports.aiohttp import _translate
from bridge.talon.transports.reqwest import _translate as _translate_reqwest
from bridge.tools.ports import free_port
from tests.support.talon import (
    API_KEY,
    EMPTY_STATE,
    EVENT_BODY,
    RETURN_BODY,
    SESSION_BODY,
    SESSION_CONFLICT,
    STATE_WITH_EFFECT,
)


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


@pytest.fixture(params=["reqwest", "aiohttp", "httptools"])
def engine(request: pytest.FixtureRequest) -> HttpEngine:
    value: HttpEngine = request.param
    return value


TRANSPORTS: dict[str, type[PooledTransport]] = {
    "reqwest": ReqwestTransport,
    "aiohttp": AiohttpTransport,
    "httptools": HttptoolsTransport,
}


async def test_real_http_success(fake_talon: tuple[str, FakeTalon], engine: HttpEngine) -> None:
    url, fake = fake_talon
    calls: list[tuple[str, str, float]] = []
    connections: list[str] = []
    async with TalonClient(
        url,
        API_KEY,
        http_engine=engine,
        observer=lambda *call: calls.append(call),
        on_connection=connections.append,
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
    # One connection for both calls; reqwest's pool is out of sight.
    assert connections == ([] if engine == "reqwest" else ["opened"])


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
    transports = [AiohttpTransport(), ReqwestTransport(), HttptoolsTransport()]
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


@pytest.mark.parametrize("transport_class", list(TRANSPORTS.values()))
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
