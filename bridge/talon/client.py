"""The async Talon.One Integration API client of the bridge.

Owns the three calls the bridge makes (updateCustomerSessionV2, trackEventV2,
returnCartItems), how their requests are addressed and authenticated, and the single place
where HTTP outcomes become `bridge.errors` exceptions:

====================================  =====================  ===============
answer                                raises                 observer outcome
====================================  =====================  ===============
2xx with a body matching the model    (returns ApiResult)    ``2xx``
2xx with a body that does not match   PermanentApiError      ``2xx``
409                                   ConflictError          ``409``
429 (Retry-After honoured)            RateLimitedError       ``429``
5xx (Retry-After honoured on 503)     ServerError            ``5xx``
401, 403                              FatalApiError          ``auth``
any other status (400, 404, 422...)   PermanentApiError      ``4xx``
httpx timeout (connect/read/pool)     ApiTimeoutError        ``timeout``
any other httpx transport error       ApiConnectionError     ``connection``
====================================  =====================  ===============

Requests go to a `Transport` (`bridge.talon.transports`) as plain values and come back as a
fully read `Answer`: `ReqwestTransport` by default, `AiohttpTransport`, or `MockTransport` in
tests, all through the same code here. httpx.AsyncClient is deliberately not used: its
per-request machinery (URL merging, header and cookie handling, event hooks, redirect loop)
costs more CPU than the whole HTTP exchange at the request rates the bridge runs at, and none
of it is needed for three fixed endpoints.

The API key is only ever placed in the Authorization header. It is never part of an exception
message, a repr or a log line; should Talon.One echo it in an error body, it is masked there too.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import (
    Any,
    Final,
    Generic,
    Literal,
    NamedTuple,
    NoReturn,
    TypeAlias,
    TypeVar,
    cast,
    overload,
)
from urllib.parse import quote

import httpx
import msgspec
import orjson
from pydantic import BaseModel, ValidationError

from bridge import __version__
from bridge.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    ConflictError,
    FatalApiError,
    PermanentApiError,
    RateLimitedError,
    ServerError,
)
from bridge.talon.bodies import Prepared
from bridge.talon.models import (
    ErrorResponse,
    ErrorResponseWithStatus,
    IntegrationEventV2Request,
    IntegrationRequest,
    IntegrationStateV2,
    ReturnIntegrationRequest,
    TrackEventV2Response,
)
from bridge.talon.transports import (
    AiohttpTransport,
    Answer,
    Request,
    ReqwestTransport,
    Timeouts,
    Transport,
    decoded_content,
)

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

Operation: TypeAlias = Literal["track_event", "update_customer_session", "return_cart_items"]
Outcome: TypeAlias = Literal["2xx", "409", "429", "4xx", "5xx", "auth", "timeout", "connection"]
Observer: TypeAlias = Callable[[str, str, float], None]
HttpEngine: TypeAlias = Literal["reqwest", "aiohttp"]

T = TypeVar("T")
_M = TypeVar("_M", bound=BaseModel | msgspec.Struct)

IDEMPOTENCY_NAMESPACE: Final = uuid.UUID("4fe16fa4-14bf-59d9-80fe-a7b09cd5af8c")
"""uuid5(NAMESPACE_URL, "urn:talon-bridge:idempotency-key"). Changing it changes every key."""

_NAMESPACE_BYTES: Final = IDEMPOTENCY_NAMESPACE.bytes
_CLEAR_VERSION_VARIANT: Final = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_5_VARIANT: Final = (0x5000 << 64) | (0x8000 << 48)
_MAX_IDEMPOTENCY_KEY: Final = 255
_SESSIONS_PATH: Final = "/v2/customer_sessions/"
# What a 204 stands for: the call succeeded and there is nothing to report.
_NO_CONTENT: Final[dict[str, Any]] = {"effects": [], "createdCoupons": [], "createdReferrals": []}
_REDACTED: Final = "***"
# Carries the command's eventId, so a request can be traced back to its Kafka record.
EVENT_ID_HEADER: Final = "X-Talon-Bridge-Event-Id"


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


class TalonClient:
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
        call_timeout: Seconds a whole exchange may take, from sending the request to the
            last byte of the answer (None: no deadline beyond the others).
        max_connections: Size of the connection pool of the default transport (ignored
            when `transport` is given).
        http_engine: The default transport: ``reqwest`` (`ReqwestTransport`, the HTTP
            exchange runs outside the GIL) or ``aiohttp`` (`AiohttpTransport`); ignored when
            `transport` is given.
        idempotency_keys: Send the ``Idempotency-Key`` header when a call passes a key.
        transport: Transport to send requests with, e.g. a `MockTransport`; by default one
            chosen by `http_engine`.
        observer: Called as ``observer(operation, outcome, seconds)`` once per request that
            ends in an answer or an httpx transport error (see the module docstring for
            outcomes). It runs inline on the event loop and must not raise.

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
        call_timeout: float | None = 10.0,
        max_connections: int = 256,
        http_engine: HttpEngine = "reqwest",
        idempotency_keys: bool = True,
        transport: Transport | None = None,
        observer: Observer | None = None,
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
        self._transport = transport or _ENGINES[http_engine](max_connections=max_connections)
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
            _session_path(session_id),
            _DRY_QUERY[dry],
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
            _EVENT_QUERY[dry],
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
            _session_path(session_id) + "/returns",
            _DRY_QUERY[dry],
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
            headers.append(("Idempotency-Key", _checked_key(idempotency_key)))
        if event_id is not None:
            headers.append((EVENT_ID_HEADER, _header_safe(event_id)))
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
            value = _parse(model, body if status != 204 else b"")
        except (ValidationError, msgspec.DecodeError) as exc:
            invalid = _Invalid(model.__name__, exc)
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
        invalid: _Invalid | None = None,
    ) -> NoReturn:
        """Report the failed call to the observer and raise its `ApiError`."""
        error, outcome = self._translate(operation, failure, body, invalid)
        if self._observer is not None:
            self._observer(operation, outcome, duration)
        cause = failure if isinstance(failure, httpx.RequestError) else invalid and invalid.error
        raise error from cause

    def _translate(
        self,
        operation: Operation,
        failure: Answer | httpx.RequestError,
        body: bytes,
        invalid: _Invalid | None,
    ) -> tuple[ApiError, Outcome]:
        """The one mapping from a failed call to the error raised and the observer outcome.

        `failure` is the transport's httpx error, or the answer: a non-2xx one, or a 2xx one
        whose body did not validate (`invalid` says how).
        """
        if isinstance(failure, httpx.TimeoutException):
            text = f"{operation}: no answer in time ({type(failure).__name__}: {failure})"
            return ApiTimeoutError(self._redact(text)), "timeout"
        if isinstance(failure, httpx.RequestError):
            text = f"{operation}: request failed ({type(failure).__name__}: {failure})"
            return ApiConnectionError(self._redact(text)), "connection"
        status = failure.status
        if invalid is not None:
            # Talon.One has applied the request at this point. Retrying could apply it twice
            # (events and returns are not idempotent without a key), and a body that does not
            # match the model will not match on a retry either: dead-letter the command so it
            # can be replayed once the model is fixed.
            text = f"{operation}: HTTP {status} answer is not a valid {_not_valid(invalid)}"
            return PermanentApiError(self._redact(text), status=status), "2xx"
        secret = self._secret.encode("ascii")
        if secret in body:
            body = body.replace(secret, _REDACTED.encode())
        parsed = _parse_error_body(body, self._secret)
        text = self._redact(_describe(operation, failure, parsed))
        error_class, outcome = _classify(status)
        retry_after = None
        if status == 429 or status == 503:
            retry_after = parse_retry_after(failure.headers.get("retry-after"))
        return error_class(text, status=status, body=parsed, retry_after=retry_after), outcome

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, _REDACTED) if self._secret in text else text


# ---------------------------------------------------------------- helpers

_ENGINES: Final[dict[HttpEngine, type[AiohttpTransport | ReqwestTransport]]] = {
    "reqwest": ReqwestTransport,
    "aiohttp": AiohttpTransport,
}


class _Invalid(NamedTuple):
    """A 2xx answer whose body did not match the model it was read as."""

    model: str
    error: ValidationError | msgspec.DecodeError


_DRY_QUERY: Final = {False: "dry=false", True: "dry=true"}
_EVENT_QUERY: Final = {False: "silent=no&dry=false", True: "silent=no&dry=true"}


_DECODERS: Final[dict[type[msgspec.Struct], msgspec.json.Decoder[Any]]] = {}


def _parse(model: type[_M], body: bytes) -> _M:
    """`body` read as `model`; no body stands for `_NO_CONTENT`."""
    if issubclass(model, msgspec.Struct):
        decoder = _DECODERS.get(model)
        if decoder is None:
            decoder = _DECODERS.setdefault(model, msgspec.json.Decoder(model, strict=False))
        if not body:
            return msgspec.convert(_NO_CONTENT, model, strict=False)
        return cast(_M, decoder.decode(body))
    if not body:
        return model.model_validate(_NO_CONTENT)
    return model.model_validate_json(body)


def _not_valid(invalid: _Invalid) -> str:
    """The model an answer did not match, and the first place where it did not."""
    exc = invalid.error
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return f"{invalid.model} ({exc.error_count()} problem(s); {where}: {first['msg']})"
    # msgspec names the place as a JSON path: "Expected `int`, got `str` - at `$.effects[0]`".
    return f"{invalid.model} ({exc})"


def _session_path(session_id: str) -> str:
    if not session_id:
        raise PermanentApiError("customer session id must not be empty")
    encoded = quote(session_id, safe="")
    if encoded in (".", ".."):
        # A bare dot segment would be resolved away by URL normalisation.
        encoded = encoded.replace(".", "%2E")
    return _SESSIONS_PATH + encoded


def _checked_key(key: str) -> str:
    if not key or len(key) > _MAX_IDEMPOTENCY_KEY or not key.isascii() or not key.isprintable():
        raise ValueError("idempotency_key must be 1-255 printable ASCII characters")
    return key


def _header_safe(value: str) -> str:
    """`value` itself when it can travel in a header, else its percent-encoded form."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="")


def _parse_error_body(body: bytes, secret: str) -> ErrorResponse | ErrorResponseWithStatus | None:
    """The error body as ErrorResponse(WithStatus), or None when it is not one; every
    string in it, keys included, has `secret` masked."""
    try:
        data = _masked(orjson.loads(body), secret)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    model: type[ErrorResponse | ErrorResponseWithStatus]
    if "StatusCode" in data or "message" not in data:
        model = ErrorResponseWithStatus
    else:
        model = ErrorResponse
    try:
        return model.model_validate(data)
    except ValidationError:
        pass
    # Keep the message and status even when `errors` has another shape (409 bodies allow any).
    try:
        return ErrorResponseWithStatus.model_validate(
            {key: data[key] for key in ("message", "StatusCode") if key in data}
        )
    except ValidationError:
        return None


def _masked(value: Any, secret: str) -> Any:
    # After decoding: a JSON escape (`\u0073` for "s") hides the key from a search of the bytes.
    if isinstance(value, str):
        return value.replace(secret, _REDACTED) if secret in value else value
    if isinstance(value, list):
        return [_masked(v, secret) for v in value]
    if isinstance(value, dict):
        return {_masked(k, secret): _masked(v, secret) for k, v in value.items()}
    return value


def _describe(
    operation: Operation,
    response: Answer,
    parsed: ErrorResponse | ErrorResponseWithStatus | None,
) -> str:
    text = f"{operation}: HTTP {response.status}"
    if parsed is None or not parsed.message:
        return f"{text} {response.reason}".rstrip()
    text = f"{text}: {parsed.message}"
    if parsed.errors:
        first = parsed.errors[0]
        where = first.source.pointer or first.source.parameter or first.source.line
        detail = first.details or first.title
        text = f"{text} ({where}: {detail})" if where else f"{text} ({detail})"
    return text


def _classify(status: int) -> tuple[type[ApiError], Outcome]:
    """The error class and observer outcome of a non-2xx status."""
    if status == 409:
        return ConflictError, "409"
    if status == 429:
        return RateLimitedError, "429"
    if status >= 500:
        return ServerError, "5xx"
    if status in (401, 403):
        return FatalApiError, "auth"
    # 400, 404, 422, any other 4xx, and redirects (a misconfigured base URL): the same
    # request can never succeed.
    return PermanentApiError, "4xx"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date.

    Returns None when the header is missing or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds != float("inf") else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
