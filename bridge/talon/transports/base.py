"""The exchange protocol between `TalonClient` and the HTTP engines underneath it.

A transport takes one `Request` as plain values and returns one fully read `Answer`. It owns
connection pooling and the timeouts, and it is the one place where its HTTP library's errors
become httpx exceptions (``httpx.TimeoutException`` subclasses for anything that ran out of
time, other ``httpx.TransportError`` subclasses for the rest); `TalonClient` turns those into
`bridge.errors` exceptions. httpx is used for its exception tree and its content decoders
only: no `httpx.Request` or `httpx.Response` is built per call.
"""

from __future__ import annotations

import asyncio
import collections
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import (
    Final,
    Literal,
    NamedTuple,
    Protocol,
    Self,
    TypeAlias,
    TypedDict,
    runtime_checkable,
)

import httpx

__all__ = [
    "DERIVED_HEADERS",
    "Answer",
    "ConnectionEvent",
    "PooledTransport",
    "Request",
    "Slots",
    "Timeouts",
    "Transport",
    "TransportOptions",
    "decoded_content",
    "without_urls",
]

_IDENTITY: Final = frozenset({"", "identity"})
# Headers a transport writes itself, from the URL and the body (lower case).
DERIVED_HEADERS: Final = frozenset({"host", "content-length", "transfer-encoding"})
_URL: Final = re.compile(r"\w+://[^\s')\]]+")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each part of an exchange; None means no limit.

    Attributes:
        connect: DNS plus the connection handshake.
        read: How long the server may stay silent while answering.
        pool: Waiting for a free pooled connection.
        total: The whole exchange, from sending the request to the last byte of the answer,
            which a server dripping its answer under the read timeout cannot stretch.
    """

    connect: float | None = 5.0
    read: float | None = 5.0
    pool: float | None = 5.0
    total: float | None = None


class Request(NamedTuple):
    """One request, as `TalonClient` hands it to a transport."""

    method: str
    url: str
    """Absolute and already percent-encoded; sent exactly as given."""
    headers: Sequence[tuple[str, str]]
    """Host and Content-Length are derived by the transport and not listed here."""
    body: bytes
    timeouts: Timeouts


class Answer(NamedTuple):
    """A fully read answer."""

    status: int
    reason: str
    headers: Mapping[str, str]
    """Case-insensitive."""
    content: bytes
    """The body as received, content coding included (see `decoded_content`)."""


@runtime_checkable
class Transport(Protocol):
    """What `TalonClient` sends its requests through."""

    async def exchange(self, request: Request) -> Answer:
        """Send `request` and return its answer.

        Raises:
            httpx.TimeoutException: A subclass naming which timeout ran out.
            httpx.TransportError: Any other failure to get a complete answer.
        """
        ...

    async def aclose(self) -> None:
        """Release the transport's connections; it cannot be used afterwards."""
        ...


# "opened": a new connection to the API. "stale": a reused connection the server closed
# before answering (its keep-alive ran out as the request went out).
ConnectionEvent: TypeAlias = Literal["opened", "stale"]


class TransportOptions(TypedDict, total=False):
    """The options every `PooledTransport` takes; its docstring says what they mean."""

    max_connections: int
    keepalive_expiry: float
    on_connection: Callable[[ConnectionEvent], None] | None


class PooledTransport:
    """The common part of the transports that keep a pool of real connections.

    Args:
        max_connections: Size of the connection pool.
        keepalive_expiry: Seconds an idle connection stays open for reuse.
        on_connection: Told of each `ConnectionEvent` the engine sees, inline on the event
            loop; it must not raise. The httptools engine reports both, aiohttp "opened"
            only, reqwest neither (its pool is out of sight).
    """

    def __init__(
        self,
        *,
        max_connections: int = 256,
        keepalive_expiry: float = 15.0,
        on_connection: Callable[[ConnectionEvent], None] | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._on_connection = on_connection

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_connections={self._max_connections})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        raise NotImplementedError

    def _tell(self, event: ConnectionEvent) -> None:
        if self._on_connection is not None:
            self._on_connection(event)


class Slots:
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

    async def take(self, timeout: float | None) -> None:
        """A slot, at once when one is free and nobody waits, else after waiting up to
        `timeout` seconds; raises httpx.PoolTimeout past it."""
        if self.try_acquire():
            return
        try:
            await self.acquire(timeout)
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection within the pool timeout") from None

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


def decoded_content(answer: Answer) -> bytes:
    """The answer's body with any Content-Encoding undone, as httpx would undo it.

    Raises:
        httpx.DecodingError: The body does not match its declared coding.
    """
    coding = answer.headers.get("Content-Encoding")
    if coding is None or coding.strip().lower() in _IDENTITY:
        return answer.content
    # Building a response from bytes makes httpx read it through its decoders.
    return httpx.Response(
        answer.status, headers={"Content-Encoding": coding}, content=answer.content
    ).content


def without_urls(text: str) -> str:
    """`text` with every URL replaced by ``<url>``.

    Transport errors can name the request URL, whose path carries the session id: customer
    data that must not reach error texts and logs.
    """
    return _URL.sub("<url>", text)
