"""The httptools engine's own connection handling, against raw servers on 127.0.0.1.

What every engine must do (status mapping, timeouts, errors, the bytes on the wire) is in
test_real_http.py; these are the parts the engine implements itself: keep-alive and its
limits, framing of answers, cancellation, origins and TLS.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import trustme
from aiohttp import web

from bridge.errors import ConfigError
from bridge.talon.transports import HttptoolsTransport, Request, Timeouts, http1

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Server:
    """A raw HTTP server: counts connections, answers each request with `respond` (b"":
    closes the connection without an answer)."""

    def __init__(self, respond: Callable[[int], bytes] = lambda n: OK) -> None:
        self.respond = respond
        self.connections = 0
        self.requests: list[bytes] = []
        self.hold = asyncio.Event()
        self.hold.set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                await self.hold.wait()
                answer = self.respond(len(self.requests))
                if not answer:
                    break
                writer.write(answer)
                await writer.drain()
                if b"Connection: close" in answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[str]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listener.close()


def get(url: str, timeouts: Timeouts | None = None) -> Request:
    return Request("GET", f"{url}/v2/x?dry=false", [("Accept", "*/*")], b"", timeouts or Timeouts())


async def test_connections_are_kept_alive_and_reused() -> None:
    server = Server()
    async with serving(server) as url, HttptoolsTransport() as transport:
        for _ in range(3):
            answer = await transport.exchange(get(url))
            assert (answer.status, answer.reason, answer.content) == (200, "OK", b"ok")
    assert server.connections == 1
    assert server.requests[0].startswith(b"GET /v2/x?dry=false HTTP/1.1\r\nHost: 127.0.0.1:")


async def test_a_connection_the_server_closes_is_not_reused() -> None:
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    server = Server(lambda n: close)
    async with serving(server) as url, HttptoolsTransport() as transport:
        for _ in range(2):
            assert (await transport.exchange(get(url))).content == b"ok"
    assert server.connections == 2


async def test_an_idle_connection_past_its_keepalive_is_not_reused() -> None:
    server = Server()
    # No idle time is short enough: every connection is past it when next wanted.
    async with serving(server) as url, HttptoolsTransport(keepalive_expiry=0) as transport:
        await transport.exchange(get(url))
        await transport.exchange(get(url))
    assert server.connections == 2


def _request(url: str, method: str, *headers: tuple[str, str]) -> Request:
    return Request(method, f"{url}/v2/x", list(headers), b"{}", Timeouts())


@pytest.mark.parametrize(
    ("method", "headers", "resent"),
    [
        ("PUT", (), True),
        ("POST", (("Idempotency-Key", "k-1"),), True),
        ("POST", (), False),
    ],
    ids=["idempotent-method", "idempotency-key", "neither"],
)
async def test_a_reused_connection_closed_unanswered_sends_a_safe_request_again(
    method: str, headers: tuple[tuple[str, str], ...], resent: bool
) -> None:
    # The server's keep-alive runs out just as the second request goes out.
    server = Server(lambda n: b"" if n == 2 else OK)
    events: list[str] = []
    async with serving(server) as url, HttptoolsTransport(on_connection=events.append) as transport:
        assert (await transport.exchange(_request(url, method, *headers))).content == b"ok"
        if resent:
            assert (await transport.exchange(_request(url, method, *headers))).content == b"ok"
            assert (len(server.requests), server.connections) == (3, 2)
            assert events == ["opened", "stale", "opened"]
        else:
            with pytest.raises(httpx.RemoteProtocolError):
                await transport.exchange(_request(url, method, *headers))
            assert (len(server.requests), server.connections) == (2, 1)
            assert events == ["opened", "stale"]


async def test_a_new_connection_closed_unanswered_is_not_tried_again() -> None:
    server = Server(lambda n: b"")
    events: list[str] = []
    async with serving(server) as url, HttptoolsTransport(on_connection=events.append) as transport:
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.exchange(_request(url, "PUT"))
    assert (len(server.requests), server.connections) == (1, 1)
    assert events == ["opened"]


async def test_a_reused_connection_that_answered_in_part_is_not_tried_again() -> None:
    # Part of an answer, then the connection closes: the request was taken.
    partial = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10\r\n\r\nok"
    server = Server(lambda n: OK if n == 1 else partial)
    events: list[str] = []
    async with serving(server) as url, HttptoolsTransport(on_connection=events.append) as transport:
        await transport.exchange(_request(url, "PUT"))
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.exchange(_request(url, "PUT"))
    assert (len(server.requests), server.connections) == (2, 1)
    assert events == ["opened"]  # answered in part: not a stale connection


async def test_chunked_answers_and_answers_read_until_close() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end"
    informational = b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    answers = {1: chunked, 2: informational, 3: until_close}
    server = Server(lambda n: answers[n])
    async with serving(server) as url, HttptoolsTransport() as transport:
        assert (await transport.exchange(get(url))).content == b"abcde"
        assert (await transport.exchange(get(url))).content == b"ok"
        assert (await transport.exchange(get(url))).content == b"to the end"
    assert server.connections == 1


async def test_answer_headers_are_case_insensitive() -> None:
    server = Server(
        lambda n: b"HTTP/1.1 429 Too Many\r\nretry-after: 3\r\nContent-Length: 0\r\n\r\n"
    )
    async with serving(server) as url, HttptoolsTransport() as transport:
        answer = await transport.exchange(get(url))
    assert (answer.status, answer.reason, answer.headers["Retry-After"]) == (429, "Too Many", "3")


async def test_a_cancelled_exchange_gives_up_its_connection_and_slot() -> None:
    server = Server()
    server.hold.clear()
    async with serving(server) as url, HttptoolsTransport(max_connections=1) as transport:
        call = asyncio.create_task(transport.exchange(get(url)))
        while not server.requests:
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        server.hold.set()
        # The slot is free again and the late answer cannot be taken for the next one's.
        assert (await transport.exchange(get(url))).content == b"ok"
    assert server.connections == 2


async def test_unasked_bytes_on_an_idle_connection_retire_it() -> None:
    server = Server(lambda n: OK + OK if n == 1 else OK)
    async with serving(server) as url, HttptoolsTransport() as transport:
        await transport.exchange(get(url))
        # Wait for the second answer to be read: it retires the connection it came on.
        while any(conn.usable for conn in transport._open):
            await asyncio.sleep(0.01)
        assert (await transport.exchange(get(url))).content == b"ok"
    assert server.connections == 2


async def test_a_bad_status_line_is_a_protocol_error() -> None:
    server = Server(lambda n: b"HTTP/1.1 abc nonsense\r\n\r\n")
    async with serving(server) as url, HttptoolsTransport() as transport:
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.exchange(get(url))


async def test_connect_timeout_covers_the_tls_handshake() -> None:
    # A server that accepts and never answers: the TLS handshake cannot finish.
    silent = Server()
    silent.hold.clear()
    async with serving(silent) as url, HttptoolsTransport(proxies={}) as transport:
        https = url.replace("http://", "https://")
        with pytest.raises(httpx.ConnectTimeout):
            await transport.exchange(get(https, Timeouts(connect=0.1)))


@pytest.mark.parametrize(
    ("prefix", "host", "port", "authority"),
    [
        ("http://talon.test", "talon.test", 80, "talon.test"),
        ("HTTPS://talon.test", "talon.test", 443, "talon.test"),
        ("https://talon.test:8443", "talon.test", 8443, "talon.test:8443"),
        ("http://[::1]:9000", "::1", 9000, "[::1]:9000"),
        ("http://[::1]", "::1", 80, "[::1]"),
    ],
)
def test_origins(prefix: str, host: str, port: int, authority: str) -> None:
    origin = http1.origin(prefix)
    assert (origin.host, origin.port, origin.authority) == (host, port, authority)


@pytest.mark.parametrize(
    "url", ["ftp://talon.test/x", "http://user:secret@talon.test/x", "http://talon.test:x/", "x"]
)
async def test_unsupported_urls_are_refused(url: str) -> None:
    async with HttptoolsTransport() as transport:
        with pytest.raises(httpx.UnsupportedProtocol) as caught:
            await transport.exchange(Request("GET", url, [], b"", Timeouts()))
    assert "secret" not in str(caught.value)


async def test_checked_header_lines_are_kept_within_bounds() -> None:
    async with HttptoolsTransport() as transport:
        for n in range(600):
            headers = [("Accept", "*/*"), ("Content-Length", "9"), ("Idempotency-Key", f"k{n}")]
            _, _, head = transport._encode(Request("GET", "http://h/x", headers, b"", Timeouts()))
            lines = ["GET /x HTTP/1.1", "Host: h", "Accept: */*", f"Idempotency-Key: k{n}"]
            assert head == ("\r\n".join(lines) + "\r\n\r\n").encode()
        assert len(transport._lines) <= 256
        # A header refused once is refused again: it is never kept.
        for _ in range(2):
            with pytest.raises(httpx.LocalProtocolError):
                transport._encode(Request("GET", "http://h/x", [("X", "a\nb")], b"", Timeouts()))


async def test_answers_over_the_size_limits_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "MAX_ANSWER_BYTES", 1_000)
    monkeypatch.setattr(http1, "MAX_HEADER_BYTES", 1_000)
    big_body = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5_000
    big_head = b"HTTP/1.1 200 OK\r\n" + b"X-Filler: y\r\n" * 200 + b"Content-Length: 0\r\n\r\n"
    answers = {1: big_body, 2: big_head}
    server = Server(lambda n: answers.get(n, OK))
    async with serving(server) as url, HttptoolsTransport() as transport:
        for _ in answers:
            with pytest.raises(httpx.RemoteProtocolError, match="too large"):
                await transport.exchange(get(url))
        assert (await transport.exchange(get(url))).content == b"ok"
    assert server.connections == 3


@pytest.fixture
async def tls_server() -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    """An HTTPS server on localhost answering "<secure> <host>", and a context trusting it."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def handle(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.secure} {request.host}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context).start()
    port = runner.addresses[0][1]
    try:
        yield f"https://localhost:{port}", client_context
    finally:
        await runner.cleanup()


async def test_https_with_the_given_trust(tls_server: tuple[str, ssl.SSLContext]) -> None:
    url, trust = tls_server
    async with HttptoolsTransport(ssl_context=trust, proxies={}) as transport:
        answer = await transport.exchange(get(url))
    assert answer.content == f"True {url.removeprefix('https://')}".encode()
    async with HttptoolsTransport(proxies={}) as untrusting:
        with pytest.raises(httpx.ConnectError):
            await untrusting.exchange(get(url))


class ConnectProxy:
    """A CONNECT proxy: records each request head, then tunnels or answers `refusal`."""

    def __init__(self, refusal: bytes | None = None) -> None:
        self.heads: list[bytes] = []
        self.refusal = refusal

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        if self.refusal is not None:
            writer.write(self.refusal)
            await writer.drain()
            writer.close()
            return
        port = head.split(b" ")[1].decode().rpartition(":")[2]
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@asynccontextmanager
async def proxying(proxy: ConnectProxy) -> AsyncIterator[str]:
    listener = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    finally:
        listener.close()


async def test_https_goes_through_the_proxys_tunnel(
    tls_server: tuple[str, ssl.SSLContext],
) -> None:
    url, trust = tls_server
    proxy, server = ConnectProxy(), Server()
    async with proxying(proxy) as where, serving(server) as plain:
        proxies = {"https": f"http://bridge:p%40ss@{where}"}
        async with HttptoolsTransport(ssl_context=trust, proxies=proxies) as transport:
            for _ in range(2):
                answer = await transport.exchange(get(url))
                assert answer.content == f"True {url.removeprefix('https://')}".encode()
            assert (await transport.exchange(get(plain))).content == b"ok"
    authority = url.removeprefix("https://").encode()
    assert len(proxy.heads) == 1, "one tunnel, kept alive; plain http goes directly"
    assert proxy.heads[0].startswith(b"CONNECT " + authority + b" HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic YnJpZGdlOnBAc3M=\r\n" in proxy.heads[0]
    assert server.connections == 1


async def test_no_proxy_and_refused_tunnels(tls_server: tuple[str, ssl.SSLContext]) -> None:
    url, trust = tls_server
    refusing = ConnectProxy(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    async with proxying(refusing) as where:
        bypass = {"https": f"http://{where}", "no": "localhost"}
        async with HttptoolsTransport(ssl_context=trust, proxies=bypass) as transport:
            assert (await transport.exchange(get(url))).status == 200
        assert refusing.heads == []
        async with HttptoolsTransport(
            ssl_context=trust, proxies={"all": f"http://{where}"}
        ) as transport:
            with pytest.raises(httpx.ProxyError, match="refused the tunnel: 407"):
                await transport.exchange(get(url))
        assert len(refusing.heads) == 1


@pytest.mark.parametrize(
    ("proxies", "setting"),
    [
        ({"https": "https://user:secret@proxy.test"}, "HTTPS_PROXY"),
        ({"all": "socks5://user:secret@proxy.test"}, "ALL_PROXY"),
        ({"https": "http://user:secret@proxy.test:port"}, "HTTPS_PROXY"),
    ],
)
def test_unusable_proxies_name_their_setting(proxies: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HttptoolsTransport(proxies=proxies)
    assert caught.value.setting == setting
    assert "secret" not in str(caught.value)


def test_the_proxy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.test")
    with pytest.raises(ConfigError, match="HTTPS_PROXY"):
        HttptoolsTransport()
    monkeypatch.delenv("HTTPS_PROXY")
    HttptoolsTransport()
