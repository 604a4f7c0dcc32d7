"""The async Talon.One Integration API client of the bridge.

Owns the calls the bridge makes (updateCustomerSessionV2, trackEventV2, returnCartItems, and
through `EventsV3` trackEventV3 and getEventV3) and how their requests are addressed and
authenticated; what their answers become, results or `bridge.errors` exceptions, is
`bridge.talon.answers`.

Requests go to a `Transport` (`bridge.talon.transports`) as plain values and come back as a
fully read `Answer`: `HttptoolsTransport` by default, `ReqwestTransport`, `AiohttpTransport`,
or `MockTransport` in tests, all through the same code here. httpx.AsyncClient is deliberately
not used: its per-request machinery (URL merging, header and cookie handling, event hooks,
redirect loop) costs more CPU than the whole HTTP exchange at the request rates the bridge
runs at, and none of it is needed for three fixed endpoints.

The API key is only ever placed in the Authorization header. It is never part of an exception
message, a repr or a log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, NoReturn, TypeAlias, TypeVar, overload

import httpx
import msgspec
from pydantic import BaseModel

from bridge import __version__
from bridge.talon.addressing import (
    DRY_QUERY,
    EVENT_ID_HEADER,
    EVENT_QUERY,
    IDEMPOTENCY_NAMESPACE,
    TRACE_HEADERS,
    checked_key,
    header_safe,
    idempotency_key_for,
    session_path,
)
from bridge.talon.answers import (
    INVALID_BODY,
    Invalid,
    Operation,
    Outcome,
    parse,
    parse_retry_after,
    translate,
)
from bridge.talon.bodies import Prepared
from bridge.talon.events_v3 import EventsV3
from bridge.talon.models import (
    IntegrationEventV2Request,
    IntegrationRequest,
    IntegrationStateV2,
    ReturnIntegrationRequest,
    TrackEventV2Response,
)
from bridge.talon.transports import (
    ENGINES,
    Answer,
    ConnectionEvent,
    Request,
    Timeouts,
    Transport,
    decoded_content,
)
from bridge.types import HttpEngine

__all__ = [
    "EVENT_ID_HEADER",
    "IDEMPOTENCY_NAMESPACE",
    "ApiResult",
    "HttpEngine",
    "Observer",
    "Operation",
    "Outcome",
    "TalonClient",
    "idempotency_key_for",
    "parse_retry_after",
]

Observer: TypeAlias = Callable[[str, str, float], None]

T = TypeVar("T")
_M = TypeVar("_M", bound=BaseModel | msgspec.Struct)


@dataclass(frozen=True, slots=True)
class ApiResult(Generic[T]):
    """A successful call.

    Attributes:
        value: The parsed response body.
        status: The HTTP status (200, or 204 for an empty success).
        replayed: True when Talon.One answered from its idempotency store
            (header ``Idempotent-Replayed: true``) instead of applying the request again;
            always False for a request sent without an Idempotency-Key.
        duration: Seconds from handing the request to the transport to having the whole body.
    """

    value: T
    status: int
    replayed: bool
    duration: float


class TalonClient(EventsV3):
    """Typed async client for the Integration API calls the bridge makes.

    Use as ``async with TalonClient(url, key) as client: ...`` or call `aclose()`; closing the
    client also closes its transport, including one passed in.

    Args:
        base_url: Deployment URL, e.g. ``https://acme.europe-west1.talon.one``; a trailing
            slash is ignored and a path prefix is kept.
        api_key: Integration API key of the Application.
        connect_timeout: Seconds allowed for DNS plus the connection handshake.
        read_timeout: Seconds the server may stay silent while answering.
        pool_timeout: Seconds to wait for a free pooled connection.
        idle_timeout: Seconds an idle connection of the default transport is kept for reuse.
        call_timeout: Seconds a whole exchange may take, from sending the request to the
            last byte of the answer (None: no deadline beyond the others).
        max_connections: Size of the connection pool of the default transport (ignored
            when `transport` is given).
        http_engine: The default transport: ``httptools`` (`HttptoolsTransport`), ``reqwest``
            (`ReqwestTransport`) or ``aiohttp`` (`AiohttpTransport`); ignored when `transport`
            is given.
        idempotency_keys: Send the ``Idempotency-Key`` header when a call passes a key.
        transport: Transport to send requests with, e.g. a `MockTransport`; by default one
            chosen by `http_engine`.
        observer: Called as ``observer(operation, outcome, seconds)`` once per request that
            ends in an answer or an httpx transport error (see the module docstring for
            outcomes). It runs inline on the event loop and must not raise.
        on_connection: Told of the default transport's connections opened and found stale
            (see `PooledTransport`); ignored when `transport` is given.

    Raises:
        ValueError: `base_url` is not an absolute http(s) URL, or `api_key` is empty or
            not printable ASCII.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        pool_timeout: float = 5.0,
        idle_timeout: float = 15.0,
        call_timeout: float | None = 10.0,
        max_connections: int = 256,
        http_engine: HttpEngine = "httptools",
        idempotency_keys: bool = True,
        transport: Transport | None = None,
        observer: Observer | None = None,
        on_connection: Callable[[ConnectionEvent], None] | None = None,
    ) -> None:
        base = httpx.URL(base_url.rstrip("/"))
        if base.scheme not in ("http", "https") or not base.host or base.query or base.fragment:
            raise ValueError("base_url must be an absolute http(s) URL without query or fragment")
        if (
            not api_key
            or not (api_key.isascii() and api_key.isprintable())
            or api_key != api_key.strip()
        ):
            raise ValueError("api_key must be printable ASCII without outer spaces")
        self._base_url = base
        self._secret = api_key
        self._idempotency_keys = idempotency_keys
        self._observer = observer
        self._transport = transport or ENGINES[http_engine](
            max_connections=max_connections,
            keepalive_expiry=idle_timeout,
            on_connection=on_connection,
        )
        self._timeouts = Timeouts(
            connect=connect_timeout, read=read_timeout, pool=pool_timeout, total=call_timeout
        )
        # Every request carries these; the transport adds Host and Content-Length.
        self._headers = [
            ("Authorization", f"ApiKey-v1 {api_key}"),
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
            # Responses are small JSON documents; compressing them costs more CPU on both
            # ends than it saves in transfer time.
            ("Accept-Encoding", "identity"),
            ("User-Agent", f"talon-bridge/{__version__}"),
        ]
        self._text = str(base).rstrip("/")

    def __repr__(self) -> str:
        return f"TalonClient(base_url={str(self._base_url)!r})"

    async def __aenter__(self) -> TalonClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport and its pooled connections."""
        await self._transport.aclose()

    # ------------------------------------------------------------ endpoints

    @overload
    async def update_customer_session(
        self,
        session_id: str,
        body: IntegrationRequest | Prepared[IntegrationRequest],
        *,
        dry: bool = False,
        idempotency_key: str | None = None,
        event_id: str | None = None,
    ) -> ApiResult[IntegrationStateV2]: ...

    @overload
    async def update_customer_session(
        self,
        session_id: str,
        body: IntegrationRequest | Prepared[IntegrationRequest],
        *,
        dry: bool = False,
        idempotency_key: str | None = None,
        event_id: str | None = None,
        model: type[_M],
    ) -> ApiResult[_M]: ...

    async def update_customer_session(
        self,
        session_id: str,
        body: IntegrationRequest | Prepared[IntegrationRequest],
        *,
        dry: bool = False,
        idempotency_key: str | None = None,
        event_id: str | None = None,
        model: type[Any] = IntegrationStateV2,
    ) -> ApiResult[Any]:
        """Create or update a customer session: ``PUT /v2/customer_sessions/{id}``.

        Args:
            session_id: The session's integration id; any characters, percent-encoded here.
            body: The session update.
            dry: Evaluate the rules without persisting anything.
            idempotency_key: Sent as ``Idempotency-Key`` (see `idempotency_key_for`).
            event_id: The command's eventId, sent as ``X-Talon-Bridge-Event-Id`` for tracing
                (percent-encoded if it is not printable ASCII).
            model: What to parse the answer into: a pydantic model, or a msgspec struct
                such as `IntegrationSummary`, which reads only what the bridge republishes.

        Raises:
            ApiError: The subclass matching the outcome, see the module docstring.
        """
        return await self._call(
            "update_customer_session",
            "PUT",
            session_path(session_id),
            DRY_QUERY[dry],
            body.to_json(),
            model,
            idempotency_key,
            event_id,
        )

    @overload
    async def track_event(
        self,
        body: IntegrationEventV2Request | Prepared[IntegrationEventV2Request],
        *,
        dry: bool = False,
        idempotency_key: str | None = None,
        event_id: str | None = None,
    ) -> ApiResult[TrackEventV2Response]: ...

    @overload
    async def track_event(
        self,
        body: IntegrationEventV2Request | Prepared[IntegrationEventV2Request],
        *,
        dry: bool = False,
        idempotency_key: str | None = None,
        event_id: str | None = None,
        model: type[_M],
    ) -> ApiResult[_M]: ...

    async def track_event(
        self,
        body: IntegrationEventV2Request | Prepared[IntegrationEventV2Request],
        *,
        dry: bool = False,
        idempotency_key: str | None = None,
        event_id: str | None = None,
        model: type[Any] = TrackEventV2Response,
    ) -> ApiResult[Any]:
        """Track a custom event: ``POST /v2/events?silent=no``.

        ``silent=no`` makes Talon.One answer with the effects instead of an empty 204.

        Args:
            body: The event.
            dry: Evaluate the rules without persisting anything.
            idempotency_key: Sent as ``Idempotency-Key`` (see `idempotency_key_for`).
            event_id: The command's eventId, sent as ``X-Talon-Bridge-Event-Id`` for tracing
                (percent-encoded if it is not printable ASCII).
            model: What to parse the answer into: a pydantic model, or a msgspec struct
                such as `IntegrationSummary`, which reads only what the bridge republishes.

        Raises:
            ApiError: The subclass matching the outcome, see the module docstring.
        """
        return await self._call(
            "track_event",
            "POST",
            "/v2/events",
            EVENT_QUERY[dry],
            body.to_json(),
            model,
            idempotency_key,
            event_id,
        )

    @overload
    async def return_cart_items(
        self,
        session_id: str,
        body: ReturnIntegrationRequest | Prepared[ReturnIntegrationRequest],
        *,
        dry: bool = False,
        idempotency_key: str | None = None,
        event_id: str | None = None,
    ) -> ApiResult[IntegrationStateV2]: ...

    @overload
    async def return_cart_items(
        self,
        session_id: str,
        body: ReturnIntegrationRequest | Prepared[ReturnIntegrationRequest],
        *,
        dry: bool = False,
        idempotency_key: str | None = None,
        event_id: str | None = None,
        model: type[_M],
    ) -> ApiResult[_M]: ...

    async def return_cart_items(
        self,
        session_id: str,
        body: ReturnIntegrationRequest | Prepared[ReturnIntegrationRequest],
        *,
        dry: bool = False,
        idempotency_key: str | None = None,
        event_id: str | None = None,
        model: type[Any] = IntegrationStateV2,
    ) -> ApiResult[Any]:
        """Return units of a closed session's cart: ``POST /v2/customer_sessions/{id}/returns``.

        Args:
            session_id: The session's integration id; any characters, percent-encoded here.
            body: The cart lines and quantities to return.
            dry: Evaluate the rollback without persisting anything.
            idempotency_key: Sent as ``Idempotency-Key`` (see `idempotency_key_for`).
            event_id: The command's eventId, sent as ``X-Talon-Bridge-Event-Id`` for tracing
                (percent-encoded if it is not printable ASCII).
            model: What to parse the answer into: a pydantic model, or a msgspec struct
                such as `IntegrationSummary`, which reads only what the bridge republishes.

        Raises:
            ApiError: The subclass matching the outcome, see the module docstring.
        """
        return await self._call(
            "return_cart_items",
            "POST",
            session_path(session_id) + "/returns",
            DRY_QUERY[dry],
            body.to_json(),
            model,
            idempotency_key,
            event_id,
        )

    # ------------------------------------------------------------ exchange

    async def _call(
        self,
        operation: Operation,
        method: str,
        path: str,
        query: str,
        content: bytes,
        model: type[_M],
        idempotency_key: str | None,
        event_id: str | None = None,
    ) -> ApiResult[_M]:
        if not self._idempotency_keys:
            idempotency_key = None
        headers = self._headers.copy()
        if idempotency_key is not None:
            headers.append(("Idempotency-Key", checked_key(idempotency_key)))
        if event_id is not None:
            headers.append((EVENT_ID_HEADER, header_safe(event_id)))
        headers.extend(TRACE_HEADERS.get())
        request = Request(method, f"{self._text}{path}?{query}", headers, content, self._timeouts)
        started = time.perf_counter()
        try:
            answer = await self._transport.exchange(request)
            body = decoded_content(answer)
        except httpx.RequestError as exc:
            self._fail(operation, time.perf_counter() - started, exc)
        duration = time.perf_counter() - started
        status = answer.status
        if not 200 <= status < 300:
            self._fail(operation, duration, answer, body)
        try:
            value = parse(model, body if status != 204 else b"")
        except INVALID_BODY as exc:
            invalid = Invalid(model.__name__, exc)
            self._fail(operation, duration, answer, body, invalid)
        if self._observer is not None:
            self._observer(operation, "2xx", duration)
        # Only a request that carried a key can be answered from the idempotency store.
        replayed = (
            idempotency_key is not None
            and answer.headers.get("idempotent-replayed", "").lower() == "true"
        )
        return ApiResult(value=value, status=status, replayed=replayed, duration=duration)

    def _fail(
        self,
        operation: Operation,
        duration: float,
        failure: Answer | httpx.RequestError,
        body: bytes = b"",
        invalid: Invalid | None = None,
    ) -> NoReturn:
        """Report the failed call to the observer and raise its `ApiError`."""
        error, outcome = translate(operation, failure, self._secret, body, invalid)
        if self._observer is not None:
            self._observer(operation, outcome, duration)
        cause = failure if isinstance(failure, httpx.RequestError) else invalid and invalid.error
        raise error from cause
