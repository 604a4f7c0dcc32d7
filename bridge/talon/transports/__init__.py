"""The transports `TalonClient` sends its requests through, and the protocol they share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from bridge.talon.transports.aiohttp import AiohttpTransport
from bridge.talon.transports.base import (
    Answer,
    ConnectionEvent,
    PooledTransport,
    Request,
    Slots,
    Timeouts,
    Transport,
    TransportOptions,
    decoded_content,
    without_urls,
)
from bridge.talon.transports.httptools import HttptoolsTransport
from bridge.talon.transports.mock import MockTransport, answer
from bridge.talon.transports.reqwest import ReqwestTransport
from bridge.types import HttpEngine

__all__ = [
    "ENGINES",
    "AiohttpTransport",
    "Answer",
    "ConnectionEvent",
    "HttptoolsTransport",
    "MockTransport",
    "PooledTransport",
    "Request",
    "ReqwestTransport",
    "Slots",
    "Timeouts",
    "Transport",
    "TransportOptions",
    "answer",
    "decoded_content",
    "without_urls",
]

# The pooled transports by engine name (`BRIDGE_TALON_HTTP_ENGINE`).
ENGINES: Final[dict[HttpEngine, Callable[..., Transport]]] = {
    "reqwest": ReqwestTransport,
    "aiohttp": AiohttpTransport,
    "httptools": HttptoolsTransport,
}
