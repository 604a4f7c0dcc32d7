"""A transport answering from a function, for tests and request captures.

It sits where the real transports sit, so everything `TalonClient` does (addressing, headers,
parsing answers, translating errors) runs exactly as in production.
"""

from __future__ import annotations

import http
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import orjson

from bridge.talon.transports.base import Answer, Request

__all__ = ["Handler", "MockTransport", "answer"]

Handler = Callable[[Request], Answer | Awaitable[Answer]]
"""Returns the answer to a request, or raises an httpx transport error in its place."""


class MockTransport:
    """A `Transport` whose answers come from `handler`.

    Args:
        handler: Called with every request; a plain function or a coroutine function.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.closed = False

    def __repr__(self) -> str:
        return "MockTransport()"

    async def exchange(self, request: Request) -> Answer:
        if self.closed:
            raise RuntimeError("the transport has been closed")
        result = self._handler(request)
        if inspect.isawaitable(result):
            return await result
        return result

    async def aclose(self) -> None:
        self.closed = True


def answer(
    status: int = 200,
    *,
    json: Any = None,
    content: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """An answer with the standard reason phrase; `json` is serialised as the body."""
    if json is not None:
        content = orjson.dumps(json)
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return Answer(status, reason, httpx.Headers(headers or {}), content)
