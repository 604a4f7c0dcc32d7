"""An httpx transport that sends requests over one pooled aiohttp session.

Owns the connection pool of the Talon.One client and the translation of aiohttp behaviour
into the httpx transport contract: requests come in as `httpx.Request`, responses go out as
fully read `httpx.Response`, and every aiohttp or socket error leaves as the matching httpx
exception, so callers only ever handle httpx types. aiohttp is used because its HTTP/1.1
client is several times faster than httpx's default transport under high concurrency.

Timeouts follow httpx's per-request ``request.extensions["timeout"]`` (`connect`, `read`,
`pool`; `write` is not enforced separately because request bodies are small and sent in one
write), plus our own `total`: a deadline for the whole exchange once a connection slot is
free, which a server dripping its answer under the read timeout cannot stretch. The pool
timeout is enforced here, by connection slots counted like the connector's, so that waiting
for a free connection is reported as `httpx.PoolTimeout` and not confused with a slow TCP
connect.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import re
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Final, NamedTuple, TypedDict, Unpack

import aiohttp
import httpx
import yarl

__all__ = [
    "AiohttpTransport",
    "Answer",
    "ExchangeTransport",
    "TransportOptions",
    "buffered_response",
    "decoded_content",
    "without_urls",
]

_DEFAULT_TIMEOUT: Final = 5.0
# Headers the transport must not forward because aiohttp derives them from the URL and body.
_DERIVED_HEADERS: Final = frozenset({b"host", b"content-length", b"transfer-encoding"})
# Send exactly the headers of the httpx.Request, as httpx's own transport does, instead of
# aiohttp's defaults (its User-Agent, `Accept: */*`, compressed encodings).
_SKIP_AUTO_HEADERS: Final = ("Accept", "Accept-Encoding", "User-Agent")
_IDENTITY: Final = frozenset({"", "identity"})
_MAX_CACHED_TIMEOUTS: Final = 64
_URL: Final = re.compile(r"\w+://[^\s')\]]+")


class TransportOptions(TypedDict, total=False):
    """The options every `ExchangeTransport` takes; its docstring says what they mean."""

    max_connections: int
    keepalive_expiry: float
    connect_timeout: float | None
    read_timeout: float | None
    pool_timeout: float | None
    call_timeout: float | None


class ExchangeTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose work is done by `exchange`, which callers may also call
    directly with plain values, skipping `httpx.Request` and `httpx.Response` altogether.

    Args:
        max_connections: Size of the connection pool.
        keepalive_expiry: Seconds an idle connection stays open for reuse.
        connect_timeout: Default when a request carries no timeout extension.
        read_timeout: Default when a request carries no timeout extension.
        pool_timeout: Default when a request carries no timeout extension.
        call_timeout: Default deadline for a whole exchange (the ``total`` of a timeout
            extension), from sending the request to the last byte of the answer.
    """

    def __init__(
        self,
        *,
        max_connections: int = 256,
        keepalive_expiry: float = 15.0,
        connect_timeout: float | None = _DEFAULT_TIMEOUT,
        read_timeout: float | None = _DEFAULT_TIMEOUT,
        pool_timeout: float | None = _DEFAULT_TIMEOUT,
        call_timeout: float | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        # Used for requests without a timeout extension; one dict, so caches keyed by the
        # spec's identity treat all of them alike.
        self._defaults: dict[str, float | None] = {
            "connect": connect_timeout,
            "read": read_timeout,
            "pool": pool_timeout,
            "total": call_timeout,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_connections={self._max_connections})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` and return the response with its body already read.

        Raises:
            httpx.TransportError: The subclass `exchange` documents, carrying `request`.
        """
        try:
            # aiohttp writes header strings as UTF-8: decode them the same way so that the
            # bytes on the wire are exactly the request's.
            headers = [
                (name.decode(), value.decode())
                for name, value in request.headers.raw
                if name.lower() not in _DERIVED_HEADERS
            ]
        except UnicodeDecodeError:
            raise httpx.LocalProtocolError("a header is not UTF-8", request=request) from None
        # The httpx URL is already normalised and percent-encoded.
        url = str(request.url)
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        try:
            answer = await self.exchange(
                request.method, url, headers, body, request.extensions.get("timeout")
            )
        except httpx.RequestError as exc:
            exc.request = request
            raise
        return buffered_response(answer, request)

    async def exchange(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: dict[str, float | None] | None = None,
    ) -> Answer:
        """Send one request; see `AiohttpTransport.exchange` for the contract."""
        raise NotImplementedError


class AiohttpTransport(ExchangeTransport):
    """`httpx.AsyncBaseTransport` backed by an `aiohttp.ClientSession`.

    The session is created on first use, inside the running event loop, and closed by
    `aclose()`. Connections are kept alive and reused; at most `max_connections` are open
    at once and further requests wait for a free one, up to the pool timeout.

    Args:
        dns_cache_seconds: How long resolved host addresses are reused.
        options: Pool size, keep-alive and default timeouts, as for `ExchangeTransport`.
    """

    def __init__(self, *, dns_cache_seconds: int = 60, **options: Unpack[TransportOptions]) -> None:
        super().__init__(**options)
        self._dns_cache_seconds = dns_cache_seconds
        self._session: aiohttp.ClientSession | None = None
        self._slots = _Slots(self._max_connections)
        self._closed = False
        self._by_spec: dict[
            int, tuple[dict[str, float | None] | None, aiohttp.ClientTimeout, float | None]
        ] = {}

    async def __aenter__(self) -> AiohttpTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

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
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            # httpx decodes Content-Encoding itself, from the headers it is handed.
            auto_decompress=False,
        )
        return self._session

    def _timeouts(
        self, spec: dict[str, float | None] | None
    ) -> tuple[aiohttp.ClientTimeout, float | None]:
        spec = spec or self._defaults
        # Clients pass the same timeout dict with every request: look it up by identity,
        # keeping a reference so that the id cannot be reused by another object.
        cached = self._by_spec.get(id(spec))
        if cached is not None and cached[0] is spec:
            return cached[1], cached[2]
        connect, read, pool = spec.get("connect"), spec.get("read"), spec.get("pool")
        # `connect` bounds DNS plus the TCP/TLS handshake; the pool wait is enforced here.
        # aiohttp's `total` runs until the body is read, which a slow drip cannot outlast.
        client_timeout = aiohttp.ClientTimeout(
            total=spec.get("total"), connect=connect, sock_connect=connect, sock_read=read
        )
        if len(self._by_spec) >= _MAX_CACHED_TIMEOUTS:
            self._by_spec.clear()
        self._by_spec[id(spec)] = (spec, client_timeout, pool)
        return client_timeout, pool

    async def exchange(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: dict[str, float | None] | None = None,
    ) -> Answer:
        """Send one request given as plain values; the answer comes back fully read.

        This is the transport without the httpx object model around it, for callers that
        build many small requests and want neither `httpx.Request` nor `httpx.Response`.
        Errors are the same httpx exceptions `handle_async_request` raises, without a
        request attached.

        Args:
            method: HTTP method.
            url: Absolute URL, already percent-encoded; it is sent exactly as given.
            headers: Request headers; Host and Content-Length are derived and ignored here.
            body: The request body (empty for none).
            timeout: httpx-style ``{"connect", "read", "pool"}`` seconds, and ``total`` for
                the whole exchange; pass the same dict
                every time, since the derived aiohttp settings are cached by its identity.

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
        client_timeout, pool_timeout = self._timeouts(timeout)
        # Tell yarl the URL is encoded, so that it does not requote it (which would also
        # turn an encoded "/" inside a session id back into a separator).
        target = yarl.URL(url, encoded=True)
        slots = self._slots
        if not slots.try_acquire():
            try:
                await slots.acquire(pool_timeout)
            except TimeoutError:
                raise httpx.PoolTimeout("no free connection within the pool timeout") from None
        deferred: httpx.TransportError | None = None
        try:
            response = await session.request(
                method,
                target,
                data=body or None,
                headers=headers,
                timeout=client_timeout,
                # Like httpx: a redirect is returned to the caller, never followed silently.
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
        return Answer(
            response.status,
            response.reason or "",
            _http_version(response.version),
            response.headers,
            content,
            response.raw_headers,
        )


class Answer(NamedTuple):
    """A fully read response, as the transports' `exchange` returns it."""

    status: int
    reason: str
    http_version: bytes
    """E.g. ``b"HTTP/1.1"``."""
    headers: Mapping[str, str]
    """Case-insensitive."""
    content: bytes
    raw_headers: Sequence[tuple[bytes, bytes]] | None = None
    """The headers as received, when the transport has them at no cost."""


class _Slots:
    """Connection slots: a FIFO counting semaphore whose uncontended path does no awaiting.

    A released slot is handed straight to the longest waiting request, so a newcomer can
    never overtake requests that are already queued.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_acquire(self) -> bool:
        waiters = self._waiters
        while waiters and waiters[0].done():  # gave up waiting (timeout, cancellation)
            waiters.popleft()
        if self._free and not waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self, timeout: float | None) -> None:
        """Wait up to `timeout` seconds for a slot; raises TimeoutError."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived just as we gave up: pass it on
            else:
                waiter.cancel()  # `release` skips it
            raise

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


@functools.lru_cache(maxsize=16)
def _http_version(version: aiohttp.HttpVersion | None) -> bytes:
    return b"HTTP/1.1" if version is None else f"HTTP/{version[0]}.{version[1]}".encode()


@functools.lru_cache(maxsize=64)
def _reason_phrase(reason: str) -> bytes:
    return reason.encode("latin-1", "replace")


def decoded_content(answer: Answer) -> bytes:
    """The answer's body with any Content-Encoding undone, as httpx would undo it."""
    if answer.headers.get("Content-Encoding", "").strip().lower() in _IDENTITY:
        return answer.content
    return buffered_response(answer, None).content


def buffered_response(answer: Answer, request: httpx.Request | None) -> httpx.Response:
    """The answer as an `httpx.Response` whose body is read and closed."""
    raw = answer.raw_headers
    if raw is None:
        raw = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in answer.headers.items()
        ]
    result = httpx.Response(
        answer.status,
        headers=raw,
        stream=httpx.ByteStream(answer.content),
        request=request,
        extensions={
            "http_version": answer.http_version,
            "reason_phrase": _reason_phrase(answer.reason),
        },
    )
    coding = answer.headers.get("Content-Encoding")
    if coding is not None and coding.strip().lower() not in _IDENTITY:
        result.read()  # let httpx undo the content coding
        return result
    # An identity-coded body is complete as it is: put the response in the state
    # `Response.read()` would leave it in, without running httpx's generic chunking and
    # decoder pipeline over it (about 12 µs, several times the cost of the rest).
    result._content = answer.content  # noqa: SLF001
    result.is_stream_consumed = True
    result.is_closed = True
    return result


def without_urls(text: str) -> str:
    """`text` with every URL replaced by ``<url>``.

    Transport errors can name the request URL, whose path carries the session id: customer
    data that must not reach error texts and logs.
    """
    return _URL.sub("<url>", text)


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
