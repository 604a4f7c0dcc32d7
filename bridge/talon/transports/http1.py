"""HTTP/1.1 on one asyncio connection, for the httptools engine: origins, and an answer
parsed by httptools (llhttp) in the protocol's callbacks as its bytes arrive.

One `Connection` carries one exchange at a time. `send` writes the request and hands the
answer, or the httpx error, to a future; read and call timeouts share one timer per exchange.
A connection that cannot carry another exchange (closed, failed, asked to close, or sent bytes
nobody asked for) says so in `usable`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Final, cast

import httptools
import httpx
from multidict import CIMultiDict, CIMultiDictProxy

from bridge.talon.transports.base import Answer

__all__ = ["MAX_ANSWER_BYTES", "MAX_HEADER_BYTES", "ORIGIN", "Connection", "Origin", "origin"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# scheme://authority, up to the path or the query.
ORIGIN: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
# Integration API answers are kilobytes; a server sending more is not one to keep reading.
MAX_ANSWER_BYTES: Final = 32 * 1024 * 1024
MAX_HEADER_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int
    authority: str  # the Host header


def origin(prefix: str) -> Origin:
    """The origin of a URL's ``scheme://authority`` prefix."""
    scheme, _, authority = prefix.partition("://")
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise httpx.UnsupportedProtocol("only http:// and https:// URLs can be requested")
    if "@" in authority:
        raise httpx.UnsupportedProtocol("URLs with credentials are not requested")
    host, port = authority, _DEFAULT_PORTS[scheme]
    try:
        if authority.startswith("["):  # an IPv6 literal
            close = authority.index("]")
            host, rest = authority[1:close], authority[close + 1 :]
            if rest:
                port = int(rest.removeprefix(":"))
        elif ":" in authority:
            host, _, number = authority.rpartition(":")
            port = int(number)
    except ValueError:
        raise httpx.UnsupportedProtocol("the URL's host or port is malformed") from None
    if not host:
        raise httpx.UnsupportedProtocol("the URL names no host")
    return Origin(scheme, host, port, authority)


class _TooLarge(Exception):
    """Raised in a parser callback to stop reading an answer past `MAX_ANSWER_BYTES` or
    `MAX_HEADER_BYTES`."""


class Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request head and body, parses the answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.usable = True  # False once closed, failed or asked to close
        self.answered = False  # any byte of the answer to the exchange under way
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Answer] | None = None
        self._reason = ""
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._body_bytes = self._header_bytes = 0
        self._until_close = False  # an answer without a length ends with the connection
        self._read_timeout: float | None = None
        self._deadline: float | None = None
        self._last_read = 0.0  # when the request went out or the last bytes came in
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._last_read = self._loop.time()
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, _TooLarge):
                self._fail(httpx.RemoteProtocolError("answer too large (headers or body)"))
            else:
                self._fail(httpx.RemoteProtocolError(f"malformed answer: {type(exc).__name__}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        if self._waiter is None:
            return
        if exc is None and self._until_close:
            self.on_message_complete()
        elif exc is None:
            self._fail(httpx.RemoteProtocolError("server disconnected without a full answer"))
        else:
            self._fail(httpx.ReadError(f"connection failed: {type(exc).__name__}"))

    # --- httptools callbacks

    def on_status(self, status: bytes) -> None:
        self._reason = status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise _TooLarge
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status >= 200 and status not in (204, 304):
            names = {name.lower() for name, _ in self._headers}
            self._until_close = not names & {"content-length", "transfer-encoding"}

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > MAX_ANSWER_BYTES:
            raise _TooLarge
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # informational: the real answer follows
            self._headers = []
            return
        if not self._parser.should_keep_alive() or self._until_close:
            self.usable = False
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        answer = Answer(status, self._reason, CIMultiDictProxy(CIMultiDict(self._headers)), body)
        waiter = self._finish()
        if waiter is None:  # an answer nobody asked for, in the same bytes as the last one
            self.close()
            return
        if not waiter.done():
            waiter.set_result(answer)
        if not self.usable:
            self.close()

    # --- the exchange

    def send(
        self,
        data: bytes,
        waiter: asyncio.Future[Answer],
        read_timeout: float | None,
        deadline: float | None,
    ) -> None:
        if self.transport is None:
            waiter.set_exception(httpx.ReadError("the connection is not open"))
            return
        self._waiter = waiter
        self.answered = False
        self._read_timeout, self._deadline = read_timeout, deadline
        self._last_read = self._loop.time()
        self._arm()
        self.transport.write(data)

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Give up the exchange under way (cancelled): its answer may still come, so the
        connection cannot be reused."""
        self._finish()
        self.usable = False
        if self.transport is not None:
            self.transport.abort()

    def _arm(self) -> None:
        # One timer per exchange: bytes arriving only move `_last_read`, and the timer, when
        # it fires early, sets itself again for the silence still allowed.
        at = self._deadline
        if self._read_timeout is not None:
            silence = self._last_read + self._read_timeout
            at = silence if at is None else min(at, silence)
        if at is None:
            return
        self._timer = self._loop.call_at(at, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        now = self._loop.time()
        late = self._deadline is not None and now >= self._deadline
        silent = self._read_timeout is not None and now >= self._last_read + self._read_timeout
        if late or silent:
            self._fail(httpx.ReadTimeout("no complete answer within the read or call timeout"))
        elif self._waiter is not None:
            self._arm()

    def _fail(self, error: httpx.TransportError) -> None:
        waiter = self._finish()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def _finish(self) -> asyncio.Future[Answer] | None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._headers, self._body, self._reason, self._until_close = [], [], "", False
        self._body_bytes = self._header_bytes = 0
        return waiter
