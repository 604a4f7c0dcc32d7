"""The aiohttp transport: requests over one pooled `aiohttp.ClientSession`.

Owns its connection pool and the translation of aiohttp behaviour into the exchange protocol
(`bridge.talon.transports.base`): every aiohttp or socket error leaves as the matching httpx
exception, so the client only ever handles httpx types. aiohttp's HTTP/1.1 client is several
times faster than httpx's own transport under high concurrency.

Timeouts: `connect`, `read` and `pool` of the request's `Timeouts` (writes are not bounded
separately because request bodies are small and sent in one write), plus `total`, a deadline
for the whole exchange once a connection slot is free. The pool timeout is enforced here, by
connection slots counted like the connector's, so that waiting for a free connection is
reported as `httpx.PoolTimeout` and not confused with a slow TCP connect.
"""

from __future__ import annotations

from typing import Final, Unpack

import aiohttp
import httpx
import yarl

from bridge.talon.transports.base import (
    Answer,
    PooledTransport,
    Request,
    Slots,
    Timeouts,
    TransportOptions,
    without_urls,
)

__all__ = ["AiohttpTransport"]

# Send exactly the headers of the request instead of aiohttp's defaults (its User-Agent,
# `Accept: */*`, compressed encodings).
_SKIP_AUTO_HEADERS: Final = ("Accept", "Accept-Encoding", "User-Agent")
_MAX_CACHED_TIMEOUTS: Final = 64


class AiohttpTransport(PooledTransport):
    """A `Transport` backed by an `aiohttp.ClientSession`.

    The session is created on first use, inside the running event loop, and closed by
    `aclose()`. Connections are kept alive and reused; at most `max_connections` are open
    at once and further requests wait for a free one, up to the pool timeout.

    Args:
        dns_cache_seconds: How long resolved host addresses are reused.
        options: Pool size and keep-alive, as for `PooledTransport`.
    """

    def __init__(self, *, dns_cache_seconds: int = 60, **options: Unpack[TransportOptions]) -> None:
        super().__init__(**options)
        self._dns_cache_seconds = dns_cache_seconds
        self._session: aiohttp.ClientSession | None = None
        self._slots = Slots(self._max_connections)
        self._closed = False
        self._by_spec: dict[Timeouts, aiohttp.ClientTimeout] = {}

    async def aclose(self) -> None:
        """Close all pooled connections. The transport cannot be used afterwards."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the transport has been closed")
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            keepalive_timeout=self._keepalive_expiry,
            ttl_dns_cache=self._dns_cache_seconds,
        )
        traces: list[aiohttp.TraceConfig] = []
        if self._on_connection is not None:  # tracing costs every request a few awaits
            trace = aiohttp.TraceConfig()
            trace.on_connection_create_end.append(self._opened)
            traces.append(trace)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=traces,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            # Content codings are undone by the client, from the headers it is handed.
            auto_decompress=False,
        )
        return self._session

    async def _opened(self, *_: object) -> None:
        self._tell("opened")

    def _timeout(self, spec: Timeouts) -> aiohttp.ClientTimeout:
        cached = self._by_spec.get(spec)
        if cached is not None:
            return cached
        # `connect` bounds DNS plus the TCP/TLS handshake; the pool wait is enforced here.
        # aiohttp's `total` runs until the body is read, which a slow drip cannot outlast.
        client_timeout = aiohttp.ClientTimeout(
            total=spec.total, connect=spec.connect, sock_connect=spec.connect, sock_read=spec.read
        )
        if len(self._by_spec) >= _MAX_CACHED_TIMEOUTS:
            self._by_spec.clear()
        self._by_spec[spec] = client_timeout
        return client_timeout

    async def exchange(self, request: Request) -> Answer:
        """Send one request; the answer comes back fully read.

        Raises:
            httpx.PoolTimeout: No connection became free within the pool timeout.
            httpx.ConnectTimeout: DNS or the connection handshake took too long.
            httpx.ReadTimeout: The server went quiet for longer than the read timeout, or
                the whole answer did not arrive within the total deadline.
            httpx.ConnectError: The connection could not be made.
            httpx.RemoteProtocolError: The server closed early or sent malformed HTTP.
            httpx.ReadError: The connection failed while the exchange was in progress.
            httpx.LocalProtocolError: The request cannot be sent as it is (e.g. a header
                with control characters).
        """
        session = self._session or self._open_session()
        timeouts = request.timeouts
        client_timeout = self._timeout(timeouts)
        # Tell yarl the URL is encoded, so that it does not requote it (which would also
        # turn an encoded "/" inside a session id back into a separator).
        target = yarl.URL(request.url, encoded=True)
        slots = self._slots
        await slots.take(timeouts.pool)
        deferred: httpx.TransportError | None = None
        try:
            response = await session.request(
                request.method,
                target,
                data=request.body or None,
                headers=request.headers,
                timeout=client_timeout,
                # A redirect is returned to the caller, never followed silently.
                allow_redirects=False,
            )
            try:
                content = await response.read()
            finally:
                response.release()
        except (aiohttp.ClientError, OSError) as exc:
            # OSError includes TimeoutError, which aiohttp's own timeout errors also derive from.
            if not isinstance(exc, aiohttp.ClientResponseError):
                raise _translate(exc) from exc
            # Response errors carry the sent headers, API key included, in their repr: raise
            # the translation outside this handler so that it does not even become the context.
            deferred = _translate(exc)
        except ValueError as exc:
            # aiohttp refuses to send control characters in headers (header injection).
            raise httpx.LocalProtocolError(str(exc)) from None
        finally:
            slots.release()
        if deferred is not None:
            raise deferred
        return Answer(response.status, response.reason or "", response.headers, content)


def _translate(exc: aiohttp.ClientError | OSError) -> httpx.TransportError:
    """Map an aiohttp or socket error to the httpx exception httpx's own transport raises."""
    message = without_urls(str(exc) or type(exc).__name__)
    mapped: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        mapped = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        mapped = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):
        mapped = httpx.ConnectError
    elif isinstance(exc, aiohttp.ClientPayloadError):
        # A body cut short by the read timeout arrives wrapped as a payload error.
        cause = exc.__cause__ or exc.__context__
        timed_out = isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError)
        mapped = httpx.ReadTimeout if timed_out else httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.InvalidURL):
        mapped = httpx.UnsupportedProtocol
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        mapped = httpx.RemoteProtocolError
    else:
        mapped = httpx.ReadError
    return mapped(message)
