"""The pyreqwest transport (Rust reqwest and hyper).

Owns its connection pool. The HTTP exchange itself (pooling,
writing the request, parsing the answer, timeouts) runs on pyreqwest's own Rust runtime, outside
the GIL. Only building the request and receiving the finished answer cost Python time, about
a third of the CPU per request of the aiohttp transport (see docs/benchmarks.md); the answer
crosses from the runtime's thread to the event loop, which costs more than the httptools
engine's whole exchange in the worker.

Errors leave as the httpx exceptions httpx's own transport raises. Timeouts are the request's
`Timeouts`, ``total`` being reqwest's request timeout, which runs until the body is read:
reqwest sets them per client, so one pooled client is kept per distinct `Timeouts` (in
practice one: `TalonClient` sends the same with every request).
"""

from __future__ import annotations

import http
from datetime import timedelta
from typing import Final, Unpack

import httpx
from pyreqwest import exceptions as rq
from pyreqwest.client import Client, ClientBuilder

from bridge.talon.transports.base import (
    DERIVED_HEADERS,
    Answer,
    PooledTransport,
    Request,
    Timeouts,
    TransportOptions,
    without_urls,
)

__all__ = ["ReqwestTransport"]

_SENSITIVE: Final = frozenset({"authorization"})
_MAX_CLIENTS: Final = 8
# Most specific first: the first match wins.
_ERRORS: Final[tuple[tuple[type[rq.PyreqwestError], type[httpx.RequestError]], ...]] = (
    (rq.ConnectTimeoutError, httpx.ConnectTimeout),
    (rq.PoolTimeoutError, httpx.PoolTimeout),
    (rq.WriteTimeoutError, httpx.WriteTimeout),
    (rq.RequestTimeoutError, httpx.ReadTimeout),
    (rq.ConnectError, httpx.ConnectError),
    (rq.WriteError, httpx.WriteError),
    (rq.ReadError, httpx.ReadError),
    # Content codings are left to the caller, so what fails to decode is the HTTP itself.
    (rq.DecodeError, httpx.RemoteProtocolError),
    (rq.BuilderError, httpx.LocalProtocolError),
)
# Causes reqwest gives when the connection itself could not be made.
_CONNECTING: Final = ("(Connect)", "tcp connect", "dns error")


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


_REASONS: Final = {status: _reason(status) for status in range(100, 600)}


class ReqwestTransport(PooledTransport):
    """A `Transport` backed by pooled pyreqwest clients.

    Clients are created on first use, inside the running event loop, and closed by
    `aclose()`. Connections are kept alive and reused; at most `max_connections` are open at
    once and further requests wait for a free one, up to the pool timeout.

    Args:
        options: Pool size and keep-alive, as for `PooledTransport`.
    """

    def __init__(self, **options: Unpack[TransportOptions]) -> None:
        super().__init__(**options)
        self._clients: dict[Timeouts, Client] = {}
        self._closed = False

    async def aclose(self) -> None:
        """Close all pooled connections. The transport cannot be used afterwards."""
        self._closed = True
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()

    def _client(self, spec: Timeouts) -> Client:
        found = self._clients.get(spec)
        if found is not None:
            return found
        if self._closed:
            raise RuntimeError("the transport has been closed")
        if len(self._clients) >= _MAX_CLIENTS:
            raise RuntimeError("too many distinct timeout settings for one transport")
        builder = (
            ClientBuilder()
            .max_connections(self._max_connections)
            .pool_idle_timeout(timedelta(seconds=self._keepalive_expiry))
            # Like httpx: redirects and content codings are the caller's business.
            .follow_redirects(False)
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .http1_only()
        )
        connect, read, pool = spec.connect, spec.read, spec.pool
        if connect is not None:
            builder = builder.connect_timeout(timedelta(seconds=connect))
        if read is not None:
            builder = builder.read_timeout(timedelta(seconds=read))
        if pool is not None:
            builder = builder.pool_timeout(timedelta(seconds=pool))
        total = spec.total
        if total is not None:
            builder = builder.timeout(timedelta(seconds=total))
        client = builder.build()
        self._clients[spec] = client
        return client

    async def exchange(self, request: Request) -> Answer:
        """Send one request; the answer comes back fully read.

        Same errors as `AiohttpTransport.exchange`.
        """
        client = self._client(request.timeouts)
        try:
            builder = client.request(request.method, request.url)
            for name, value in request.headers:
                lowered = name.lower()
                if lowered in DERIVED_HEADERS:
                    continue
                builder = builder.header(name, value, is_sensitive=lowered in _SENSITIVE)
            if request.body:
                builder = builder.body_bytes(request.body)
            response = await builder.build().send()
            content = bytes(await response.bytes())
        except rq.PyreqwestError as exc:
            raise _translate(exc) from None
        except ValueError as exc:
            # Header values must be visible ASCII (no control characters: header injection).
            raise httpx.LocalProtocolError(str(exc)) from None
        status = response.status
        return Answer(status, _REASONS.get(status, ""), response.headers, content)


def _translate(exc: rq.PyreqwestError) -> httpx.RequestError:
    """The httpx exception for a pyreqwest error; its message keeps the root cause."""
    details = getattr(exc, "details", None) or {}
    causes = [c["message"] for c in details.get("causes") or ()]
    # The last cause says what actually went wrong.
    message = without_urls(f"{exc.message}: {causes[-1]}" if causes else exc.message)
    # pyreqwest files any failure before the answer under "connect"; only causes naming the
    # connect step mean the request was never sent.
    connecting = any(marker in cause for cause in causes for marker in _CONNECTING)
    if isinstance(exc, rq.ConnectTimeoutError) and not connecting:
        return httpx.ReadTimeout(message)
    if isinstance(exc, rq.ConnectError) and not connecting:
        return httpx.RemoteProtocolError(message)
    for source, target in _ERRORS:
        if isinstance(exc, source):
            return target(message)
    if isinstance(exc, rq.TransportError):
        # Failures without a finer class, e.g. the server closing the connection early.
        return httpx.RemoteProtocolError(message)
    return httpx.ReadError(message)
