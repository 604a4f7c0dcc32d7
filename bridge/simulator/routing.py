"""Which operation a request asks for: raw-path routing and the query flags."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import unquote

from bridge.simulator.validation import api_error, invalid

__all__ = ["Mutation", "Operation", "Route", "query_flags", "resolve"]

# The Integration API calls that change state, and the reads (getCustomerSession, getEventV3).
Mutation: TypeAlias = Literal["update", "return", "event", "event_v3"]
Operation: TypeAlias = Literal[Mutation, "get", "get_event_v3"]
_EVENTS_V3: Final = "/v3/events"

_BOOL: Final = {
    # Go's strconv.ParseBool, which Talon.One's query parsing follows.
    **dict.fromkeys(("1", "t", "T", "true", "TRUE", "True"), True),
    **dict.fromkeys(("0", "f", "F", "false", "FALSE", "False"), False),
}


class Route:
    """A resolved Integration API route: operation name, session id (or, for getEventV3,
    the event's integration id), method check."""

    __slots__ = ("operation", "session_id")

    def __init__(self, operation: Operation, session_id: str | None) -> None:
        self.operation = operation
        self.session_id = session_id


def resolve(method: str, path: str) -> Route | int:
    """Route on the raw path; returns the route or the error status (404 / 405)."""
    if path == "/v2/events":
        return Route("event", None) if method == "POST" else 405
    if path == _EVENTS_V3:
        return Route("event_v3", None) if method == "POST" else 405
    if path.startswith(_EVENTS_V3 + "/"):
        integration_id = unquote(path[len(_EVENTS_V3) + 1 :])
        if not integration_id or "/" in path[len(_EVENTS_V3) + 1 :]:
            return 404
        return Route("get_event_v3", integration_id) if method == "GET" else 405
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "v2" or parts[2] != "customer_sessions" or not parts[3]:
        return 404
    session_id = unquote(parts[3])
    if len(parts) == 4:
        if method == "PUT":
            return Route("update", session_id)
        return Route("get", session_id) if method == "GET" else 405
    if len(parts) == 5 and parts[4] == "returns":
        return Route("return", session_id) if method == "POST" else 405
    return 404


def query_flags(query: Mapping[str, str], operation: Operation) -> tuple[bool, bool]:
    """Parse ``dry`` (all endpoints) and ``silent`` (events); 400 on bad values."""
    raw_dry = query.get("dry")
    dry = _BOOL.get(raw_dry) if raw_dry is not None else False
    errors: list[dict[str, Any]] = []
    if dry is None:
        errors.append(api_error("Invalid value", "dry must be true or false", parameter="dry"))
    silent = True
    events = operation in ("event", "event_v3")
    if events:
        raw_silent = query.get("silent", "yes")
        if raw_silent not in ("yes", "no"):
            errors.append(
                api_error("Invalid value", "silent must be yes or no", parameter="silent")
            )
        silent = raw_silent != "no"
    if "now" in query and not dry:
        errors.append(api_error("Invalid value", "now requires dry=true", parameter="now"))
    if errors:
        raise invalid(errors, with_status=events)
    return bool(dry), silent
