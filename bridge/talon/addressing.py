"""How the client's requests are addressed: endpoint paths and queries, the Idempotency-Key
derived from a command's eventId, the tracing header that carries the eventId itself, and the
W3C trace context headers of the call under way."""

from __future__ import annotations

import hashlib
import uuid
from contextvars import ContextVar
from typing import Final, TypeAlias
from urllib.parse import quote

from bridge.errors import PermanentApiError

__all__ = [
    "DRY_QUERY",
    "EVENTS_V3_PATH",
    "EVENT_ID_HEADER",
    "EVENT_QUERY",
    "IDEMPOTENCY_NAMESPACE",
    "TRACE_HEADERS",
    "TraceHeaders",
    "checked_key",
    "event_v3_path",
    "header_safe",
    "idempotency_key_for",
    "session_path",
]

IDEMPOTENCY_NAMESPACE: Final = uuid.UUID("4fe16fa4-14bf-59d9-80fe-a7b09cd5af8c")
"""uuid5(NAMESPACE_URL, "urn:talon-bridge:idempotency-key"). Changing it changes every key."""

_NAMESPACE_BYTES: Final = IDEMPOTENCY_NAMESPACE.bytes
_CLEAR_VERSION_VARIANT: Final = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_5_VARIANT: Final = (0x5000 << 64) | (0x8000 << 48)
_MAX_IDEMPOTENCY_KEY: Final = 255
_SESSIONS_PATH: Final = "/v2/customer_sessions/"
EVENTS_V3_PATH: Final = "/v3/events"
# Carries the command's eventId, so a request can be traced back to its Kafka record.
EVENT_ID_HEADER: Final = "X-Talon-Bridge-Event-Id"

# (name, value) pairs of the W3C trace context (`traceparent`, `tracestate`).
TraceHeaders: TypeAlias = tuple[tuple[str, str], ...]
# The trace context of the call the current task is about to make, set by `bridge.tracing`:
# a context variable, so the calls' signatures stay as they are and each task has its own.
TRACE_HEADERS: ContextVar[TraceHeaders] = ContextVar("talon_trace_headers", default=())


def idempotency_key_for(event_id: str) -> str:
    """The Idempotency-Key for the command with this event id.

    The key is the UUIDv5 of `event_id` in `IDEMPOTENCY_NAMESPACE`: deterministic, so every
    retry and every Kafka redelivery of a command carries the same key, and shaped like the
    UUID keys Talon.One expects (36 characters, well under its 255 limit).

    Raises:
        ValueError: `event_id` is empty; such keys would collide across commands.
    """
    if not event_id:
        raise ValueError("event_id must not be empty")
    # uuid.uuid5, spelled out: building a UUID object costs more than the hash itself.
    digest = hashlib.sha1(_NAMESPACE_BYTES + event_id.encode(), usedforsecurity=False).digest()
    value = int.from_bytes(digest[:16], "big") & _CLEAR_VERSION_VARIANT | _VERSION_5_VARIANT
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


DRY_QUERY: Final = {False: "dry=false", True: "dry=true"}
EVENT_QUERY: Final = {False: "silent=no&dry=false", True: "silent=no&dry=true"}


def session_path(session_id: str) -> str:
    """The path of a customer session: `session_id` percent-encoded as one segment."""
    if not session_id:
        raise PermanentApiError("customer session id must not be empty")
    encoded = quote(session_id, safe="")
    if encoded in (".", ".."):
        # A bare dot segment would be resolved away by URL normalisation.
        encoded = encoded.replace(".", "%2E")
    return _SESSIONS_PATH + encoded


def event_v3_path(integration_id: str) -> str:
    """The path of an event registered through trackEventV3, for getEventV3."""
    if not integration_id:
        raise PermanentApiError("event integration id must not be empty")
    encoded = quote(integration_id, safe="")
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return f"{EVENTS_V3_PATH}/{encoded}"


def checked_key(key: str) -> str:
    """`key` itself, if it is a valid Idempotency-Key."""
    if not key or len(key) > _MAX_IDEMPOTENCY_KEY or not key.isascii() or not key.isprintable():
        raise ValueError("idempotency_key must be 1-255 printable ASCII characters")
    return key


def header_safe(value: str) -> str:
    """`value` itself when it can travel in a header, else its percent-encoded form."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="")
