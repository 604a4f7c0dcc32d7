"""Proxies for the httptools engine: which proxy an ``https://`` origin goes through, and
the CONNECT tunnel TLS then starts on. As in the reqwest engine, `HTTPS_PROXY` (or
`ALL_PROXY`) names the proxy and `NO_PROXY` the hosts that bypass it; only ``http://``
proxies are supported, and ``http://`` origins never go through one.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import unquote, urlsplit

import httpx

from bridge.errors import ConfigError
from bridge.talon.transports.http1 import Connection, Origin

__all__ = ["Proxy", "bypassed", "proxy_from_url", "tunnel"]

_MAX_PROXY_REPLY: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization header, from the URL's user info


def proxy_from_url(url: str, setting: str) -> Proxy:
    """The proxy a ``HTTPS_PROXY``-style URL names (``http://`` proxies only); `setting` is
    the variable it came from, for the error. The URL itself is never in the message: it can
    hold a password."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise ConfigError(
            setting,
            "the httptools engine tunnels through http:// proxies only "
            "(BRIDGE_TALON_HTTP_ENGINE=reqwest takes others)",
        )
    try:
        port = parts.port or 80
    except ValueError:
        raise ConfigError(setting, "the proxy URL has a malformed port") from None
    if not parts.hostname:
        raise ConfigError(setting, "the proxy URL names no host")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(parts.hostname, port, authorization)


def bypassed(origin: Origin, no_proxy: str) -> bool:
    """Whether `NO_PROXY` names `origin`: ``*``, its host, or a domain it is in (with or
    without a leading dot), each optionally with a port."""
    host = origin.host.lower()
    for entry in no_proxy.lower().replace(" ", "").split(","):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if port and port != str(origin.port):
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


class _Tunnel(asyncio.Protocol):
    """A proxy connection until its CONNECT is answered; TLS then starts on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._reply: asyncio.Future[bytes] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if self._reply.done():
            return
        if end >= 0 and end + 4 == len(self._buffer):
            self._reply.set_result(bytes(self._buffer[:end]))
        elif end >= 0 or len(self._buffer) > _MAX_PROXY_REPLY:
            self._reply.set_exception(httpx.ProxyError("the proxy answered CONNECT malformed"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._reply.done():
            self._reply.set_exception(httpx.ProxyError("the proxy closed the tunnel"))

    async def open(self, authority: str, authorization: str | None) -> None:
        """Ask for a tunnel to `authority` (host:port); raises httpx.ProxyError if refused."""
        if self.transport is None:
            raise httpx.ProxyError("the proxy connection is not open")
        head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        if authorization:
            head += f"Proxy-Authorization: {authorization}\r\n"
        self.transport.write(f"{head}\r\n".encode())
        status_line = (await self._reply).split(b"\r\n", 1)[0].split(b" ", 2)
        status = status_line[1] if len(status_line) > 1 else b""
        if not (status.isdigit() and 200 <= int(status) < 300):
            code = status.decode("latin-1", "replace")[:3]
            raise httpx.ProxyError(f"the proxy refused the tunnel: {code or 'no status'}")


async def tunnel(
    origin: Origin, proxy: Proxy, tls: ssl.SSLContext, loop: asyncio.AbstractEventLoop
) -> Connection:
    """A TLS connection to `origin` through a CONNECT tunnel of `proxy`."""
    raw, protocol = await loop.create_connection(lambda: _Tunnel(loop), proxy.host, proxy.port)
    try:
        host = f"[{origin.host}]" if ":" in origin.host else origin.host
        await protocol.open(f"{host}:{origin.port}", proxy.authorization)
        conn = Connection(loop)
        secured = await loop.start_tls(raw, conn, tls, server_hostname=origin.host)
    except BaseException:
        raw.close()
        raise
    if secured is None:
        raise httpx.ProxyError("TLS through the proxy's tunnel did not start")
    conn.connection_made(secured)
    return conn
