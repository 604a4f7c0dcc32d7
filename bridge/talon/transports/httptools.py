"""The httptools transport: HTTP/1.1 on the event loop's own connections, parsed by httptools.

Each exchange is one formatted request head written on a pooled keep-alive connection, and an
answer parsed by llhttp (httptools) in the connection's protocol callbacks as it arrives. No
thread sits between the event loop and the socket, and no client framework builds objects
per call: on uvloop this is the cheapest of the engines in CPU per request
(docs/benchmarks.md, "The httptools engine").

Pooling: keep-alive connections per origin, at most `max_connections` open at once, waited
for in FIFO order (`Slots`) up to the pool timeout; an idle connection older than
`keepalive_expiry` is closed instead of reused, and so is one the server asked to close. A
reused connection the server closes before any byte of the answer (its keep-alive ran out as
the request went out) sends the request again once on a new connection, if it is idempotent
by its method or its Idempotency-Key header, as Go's net/http does.
Timeouts: `connect` bounds DNS and the TCP and TLS handshakes; `read` the server's silence,
from the request's last byte to the answer's first and between its bytes; `total` the whole
exchange once a connection slot is held. Proxies: an ``https://`` origin is reached through
the `HTTPS_PROXY` (or `ALL_PROXY`) of the environment as a CONNECT tunnel, unless `NO_PROXY`
names it, as the reqwest engine does; ``http://`` origins (the local simulator) are always
reached directly.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import urllib.request
from collections import deque
from collections.abc import Mapping
from typing import Final, Unpack

import httpx

from bridge.talon.transports.base import (
    DERIVED_HEADERS,
    Answer,
    PooledTransport,
    Request,
    Slots,
    TransportOptions,
)
from bridge.talon.transports.http1 import ORIGIN, Connection, Origin
from bridge.talon.transports.http1 import origin as origin_of
from bridge.talon.transports.proxy import bypassed, proxy_from_url, tunnel

__all__ = ["HttptoolsTransport"]

# Header names are tokens; values may not break the line (header injection) or hold NUL.
_BAD_NAME: Final = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Keep-alive is this transport's own business too.
_DERIVED: Final = DERIVED_HEADERS | {"connection"}
_MAX_ORIGINS: Final = 64
_MAX_LINES: Final = 256
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def _line(name: str, value: str) -> str:
    """A header's line of the request head ("" for one the transport derives itself)."""
    if name.lower() in _DERIVED:
        return ""
    if _BAD_NAME.search(name) or _BAD_VALUE.search(value):
        raise httpx.LocalProtocolError(
            f"header {name!r} cannot be sent: control characters or a bad name"
        )
    return f"{name}: {value}\r\n"


def _repeatable(request: Request) -> bool:
    """Whether a request may be sent twice: idempotent by its method, or by its
    Idempotency-Key (the rule Go's net/http applies to a reused connection)."""
    if request.method in _IDEMPOTENT:
        return True
    return any(name.lower() == "idempotency-key" for name, _ in request.headers)


class HttptoolsTransport(PooledTransport):
    """A `Transport` speaking HTTP/1.1 itself on the running event loop.

    Args:
        ssl_context: For ``https://`` origins; the system's default trust store when None.
        proxies: Proxy URLs by scheme plus ``no``, as `urllib.request.getproxies` gives them;
            the environment's (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) when None.
        options: Pool size and keep-alive, as for `PooledTransport`.

    Raises:
        ConfigError: The proxy for ``https://`` is not a usable ``http://`` URL.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        proxies: Mapping[str, str] | None = None,
        **options: Unpack[TransportOptions],
    ) -> None:
        super().__init__(**options)
        self._ssl = ssl_context
        if proxies is None:
            proxies = urllib.request.getproxies_environment()
        self._proxies = dict(proxies)
        scheme = "https" if self._proxies.get("https") else "all"
        url = self._proxies.get(scheme)
        self._https_proxy = proxy_from_url(url, f"{scheme.upper()}_PROXY") if url else None
        self._slots = Slots(self._max_connections)
        self._idle: dict[str, deque[Connection]] = {}  # by scheme://authority
        self._open: set[Connection] = set()
        self._origins: dict[str, Origin] = {}
        # Header lines already checked: most headers are the same on every request.
        self._lines: dict[tuple[str, str], str] = {}
        self._closed = False

    async def aclose(self) -> None:
        """Close all connections. The transport cannot be used afterwards."""
        self._closed = True
        for conn in self._open:
            conn.close()
        self._open.clear()
        self._idle.clear()

    async def exchange(self, request: Request) -> Answer:
        """Send one request; the answer comes back fully read.

        Same errors as `AiohttpTransport.exchange`.
        """
        if self._closed:
            raise RuntimeError("the transport has been closed")
        prefix, origin, data = self._encode(request)
        timeouts = request.timeouts
        slots = self._slots
        await slots.take(timeouts.pool)
        try:
            loop = asyncio.get_running_loop()
            deadline = None if timeouts.total is None else loop.time() + timeouts.total
            conn = self._pooled(prefix, loop)
            if conn is not None:
                try:
                    answer = await self._send(conn, data, loop, timeouts.read, deadline)
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    if conn.answered:
                        raise
                    # Closed by the server as the request went out (its keep-alive ran
                    # out): sent again once on a new connection, when sending twice is safe.
                    self._tell("stale")
                    if not _repeatable(request):
                        raise
                    conn = None
            if conn is None:
                conn = await self._connect(origin, loop, timeouts.connect, deadline)
                answer = await self._send(conn, data, loop, timeouts.read, deadline)
            if conn.usable:
                conn.idle_since = loop.time()
                self._idle[prefix].append(conn)
            else:
                self._open.discard(conn)
            return answer
        finally:
            slots.release()

    async def _send(
        self,
        conn: Connection,
        data: bytes,
        loop: asyncio.AbstractEventLoop,
        read_timeout: float | None,
        deadline: float | None,
    ) -> Answer:
        waiter: asyncio.Future[Answer] = loop.create_future()
        conn.send(data, waiter, read_timeout, deadline)
        try:
            return await waiter
        except BaseException:
            conn.abort()  # cancelled: the answer may still come; failed: closed already
            self._open.discard(conn)
            raise

    def _encode(self, request: Request) -> tuple[str, Origin, bytes]:
        url = request.url
        match = ORIGIN.match(url)
        if match is None:
            raise httpx.UnsupportedProtocol("only http:// and https:// URLs can be requested")
        prefix = match.group()
        origin = self._origins.get(prefix)
        if origin is None:
            origin = origin_of(prefix)
            if len(self._origins) >= _MAX_ORIGINS:
                self._origins.clear()
            self._origins[prefix] = origin
        target = url[len(prefix) :]
        if not target.startswith("/"):
            target = "/" + target
        lines = [f"{request.method} {target} HTTP/1.1\r\nHost: {origin.authority}\r\n"]
        checked = self._lines
        for header in request.headers:
            line = checked.get(header)
            if line is None:
                line = _line(*header)
                if len(checked) >= _MAX_LINES:
                    checked.clear()
                checked[header] = line
            lines.append(line)
        body = request.body
        if body or request.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        return prefix, origin, "".join(lines).encode() + body

    def _pooled(self, prefix: str, loop: asyncio.AbstractEventLoop) -> Connection | None:
        idle = self._idle.get(prefix)
        if idle is None:
            self._idle[prefix] = deque()
            return None
        stale = loop.time() - self._keepalive_expiry
        while idle:
            conn = idle.pop()  # the most recently used: the likeliest still open
            transport = conn.transport
            fresh = conn.usable and conn.idle_since > stale
            if fresh and transport is not None and not transport.is_closing():
                return conn
            conn.close()
            self._open.discard(conn)
        return None

    async def _connect(
        self,
        origin: Origin,
        loop: asyncio.AbstractEventLoop,
        connect_timeout: float | None,
        deadline: float | None,
    ) -> Connection:
        timeout = connect_timeout
        if deadline is not None:
            left = deadline - loop.time()
            timeout = left if timeout is None else min(timeout, left)
        tls: ssl.SSLContext | None = None
        if origin.scheme == "https":
            tls = self._ssl = self._ssl or ssl.create_default_context()
        proxy = self._https_proxy
        if proxy is not None and bypassed(origin, self._proxies.get("no", "")):
            proxy = None
        try:
            async with asyncio.timeout(timeout):
                if tls is None or proxy is None:
                    _, conn = await loop.create_connection(
                        lambda: Connection(loop),
                        origin.host,
                        origin.port,
                        ssl=tls,
                        server_hostname=origin.host if tls else None,
                    )
                else:
                    conn = await tunnel(origin, proxy, tls, loop)
        except TimeoutError:
            raise httpx.ConnectTimeout("no connection within the connect timeout") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect: {type(exc).__name__}: {exc}") from None
        if self._closed:
            conn.close()
            raise RuntimeError("the transport has been closed")
        self._open.add(conn)
        self._tell("opened")
        return conn
