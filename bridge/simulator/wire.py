"""What the simulator puts on the wire: header names, canned bodies, JSON responses."""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import web

from bridge.simulator.validation import api_error

__all__ = [
    "CONFLICT",
    "EVENT_ID_HEADER",
    "EVENT_NOT_FOUND",
    "FAULT_BODIES",
    "GATEWAY_TIMEOUT",
    "IDEMPOTENCY_HEADER",
    "MISMATCH",
    "NOT_ALLOWED",
    "NOT_FOUND",
    "REPLAYED_HEADER",
    "UNAUTHORIZED",
    "dump",
    "response",
]

EVENT_ID_HEADER: Final = "X-Talon-Bridge-Event-Id"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
_JSON: Final = "application/json"


def dump(obj: Any) -> bytes:
    return orjson.dumps(obj)


UNAUTHORIZED: Final = dump({"message": "Unauthorized - Invalid API key", "StatusCode": 401})
CONFLICT: Final = {
    "session": dump(
        {
            "message": "Too many requests are updating this session at the same time",
            "errors": [],
            "StatusCode": 409,
        }
    ),
    "profile": dump(
        {
            "message": "Too many requests are updating this profile at the same time",
            "errors": [],
            "StatusCode": 409,
        }
    ),
    "idempotency": dump(
        {
            "message": "A request with this Idempotency-Key is still being processed",
            "errors": [],
            "StatusCode": 409,
        }
    ),
}
EVENT_NOT_FOUND: Final = dump({"message": "Event not found", "errors": [], "StatusCode": 404})
MISMATCH: Final = dump(
    {
        "message": "The Idempotency-Key was already used with a different request",
        "errors": [
            api_error(
                "Idempotency key reused",
                "the stored request for this key has another method, path, query or body",
                parameter=IDEMPOTENCY_HEADER,
            )
        ],
        "StatusCode": 422,
    }
)
FAULT_BODIES: Final = {
    "429": (429, dump({"message": "Too many requests", "StatusCode": 429})),
    "rate_limit": (429, dump({"message": "Too many requests", "StatusCode": 429})),
    "500": (500, dump({"message": "Internal server error", "StatusCode": 500})),
    "fail_session": (500, dump({"message": "Internal server error", "StatusCode": 500})),
    "502": (502, dump({"message": "Bad gateway", "StatusCode": 502})),
    "503": (503, dump({"message": "Service unavailable", "StatusCode": 503})),
    "outage": (503, dump({"message": "Service unavailable", "StatusCode": 503})),
    "auth_failure": (401, UNAUTHORIZED),
}
GATEWAY_TIMEOUT: Final = dump({"message": "Gateway timeout", "StatusCode": 504})
NOT_FOUND: Final = dump({"message": "Not found", "StatusCode": 404})
NOT_ALLOWED: Final = dump({"message": "Method not allowed", "StatusCode": 405})


def response(status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    if status == 204:
        return web.Response(status=204, headers=headers)
    return web.Response(status=status, body=body, content_type=_JSON, headers=headers)
