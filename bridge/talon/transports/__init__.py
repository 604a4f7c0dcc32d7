"""The transports `TalonClient` sends its requests through, and the protocol they share."""

from __future__ import annotations

from bridge.talon.transports.aiohttp import AiohttpTransport
from bridge.talon.transports.base import (
    Answer,
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

__all__ = [
    "AiohttpTransport",
    "Answer",
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
