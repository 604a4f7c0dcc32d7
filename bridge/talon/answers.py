"""Reading Talon.One's answers: a success into its model, a failure into its error.

The single place where HTTP outcomes become `bridge.errors` exceptions:

====================================  =====================  ===============
answer                                raises                 observer outcome
====================================  =====================  ===============
2xx with a body matching the model    (returns the value)    ``2xx``
2xx with a body that does not match   PermanentApiError      ``2xx``
409 of trackEventV3 "already exists"  EventExistsError       ``409``
409                                   ConflictError          ``409``
429 (Retry-After honoured)            RateLimitedError       ``429``
5xx (Retry-After honoured on 503)     ServerError            ``5xx``
401, 403                              FatalApiError          ``auth``
any other status (400, 404, 422...)   PermanentApiError      ``4xx``
httpx timeout (connect/read/pool)     ApiTimeoutError        ``timeout``
any other httpx transport error       ApiConnectionError     ``connection``
====================================  =====================  ===============

The API key is never part of an error's message or body: should Talon.One echo it in an error
body, it is masked there too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, NamedTuple, TypeAlias, TypeVar, cast

import httpx
import msgspec
import orjson
from pydantic import BaseModel, ValidationError

from bridge.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    ConflictError,
    EventExistsError,
    FatalApiError,
    PermanentApiError,
    RateLimitedError,
    ServerError,
)
from bridge.talon.models import ErrorResponse, ErrorResponseWithStatus
from bridge.talon.transports import Answer
from bridge.types import ApiOutcome, CommandType

__all__ = [
    "INVALID_BODY",
    "Invalid",
    "Operation",
    "Outcome",
    "already_exists",
    "parse",
    "parse_retry_after",
    "translate",
]

# A call is named after the command type it applies; the observer gets one outcome per call.
Operation: TypeAlias = CommandType
Outcome: TypeAlias = ApiOutcome

_M = TypeVar("_M", bound=BaseModel | msgspec.Struct)

# What a 204 stands for: the call succeeded and there is nothing to report.
_NO_CONTENT: Final[dict[str, Any]] = {"effects": [], "createdCoupons": [], "createdReferrals": []}
# What `parse` raises for a body that does not match the model.
INVALID_BODY: Final = (ValidationError, msgspec.DecodeError)
_REDACTED: Final = "***"


class Invalid(NamedTuple):
    """A 2xx answer whose body did not match the model it was read as."""

    model: str
    error: ValidationError | msgspec.DecodeError


_DECODERS: Final[dict[type[msgspec.Struct], msgspec.json.Decoder[Any]]] = {}


def parse(model: type[_M], body: bytes) -> _M:
    """`body` read as `model` (by its own `from_json` if it has one); no body stands for
    `_NO_CONTENT`."""
    if issubclass(model, msgspec.Struct):
        if not body:
            return msgspec.convert(_NO_CONTENT, model, strict=False)
        own = getattr(model, "from_json", None)
        if own is not None:
            return cast(_M, own(body))
        decoder = _DECODERS.get(model)
        if decoder is None:
            decoder = _DECODERS.setdefault(model, msgspec.json.Decoder(model, strict=False))
        return cast(_M, decoder.decode(body))
    if not body:
        return model.model_validate(_NO_CONTENT)
    return model.model_validate_json(body)


def _not_valid(invalid: Invalid) -> str:
    """The model an answer did not match, and the first place where it did not."""
    exc = invalid.error
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return f"{invalid.model} ({exc.error_count()} problem(s); {where}: {first['msg']})"
    # msgspec names the place as a JSON path: "Expected `int`, got `str` - at `$.effects[0]`".
    return f"{invalid.model} ({exc})"


def translate(
    operation: Operation,
    failure: Answer | httpx.RequestError,
    secret: str,
    body: bytes = b"",
    invalid: Invalid | None = None,
) -> tuple[ApiError, Outcome]:
    """The one mapping from a failed call to the error raised and the observer outcome.

    `failure` is the transport's httpx error, or the answer: a non-2xx one, or a 2xx one
    whose body did not validate (`invalid` says how).
    """
    if isinstance(failure, httpx.TimeoutException):
        text = f"{operation}: no answer in time ({type(failure).__name__}: {failure})"
        return ApiTimeoutError(_redacted(text, secret)), "timeout"
    if isinstance(failure, httpx.RequestError):
        text = f"{operation}: request failed ({type(failure).__name__}: {failure})"
        return ApiConnectionError(_redacted(text, secret)), "connection"
    status = failure.status
    if invalid is not None:
        # Talon.One has applied the request at this point. Retrying could apply it twice
        # (events and returns are not idempotent without a key), and a body that does not
        # match the model will not match on a retry either: dead-letter the command so it
        # can be replayed once the model is fixed.
        text = f"{operation}: HTTP {status} answer is not a valid {_not_valid(invalid)}"
        return PermanentApiError(_redacted(text, secret), status=status), "2xx"
    raw_secret = secret.encode("ascii")
    if raw_secret in body:
        body = body.replace(raw_secret, _REDACTED.encode())
    parsed = _parse_error_body(body, secret)
    text = _redacted(_describe(operation, failure, parsed), secret)
    error_class, outcome = _classify(status)
    if status == 409 and operation == "track_event_v3" and already_exists(parsed):
        error_class = EventExistsError
    retry_after = None
    if status == 429 or status == 503:
        retry_after = parse_retry_after(failure.headers.get("retry-after"))
    return error_class(text, status=status, body=parsed, retry_after=retry_after), outcome


def _redacted(text: str, secret: str) -> str:
    return text.replace(secret, _REDACTED) if secret in text else text


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


# trackEventV3 answers 409 both when the profile is busy and when the event is registered
# already; only the body tells them apart. Words of the second, never of the first.
_EXISTS_WORDS: Final = ("already exists", "already registered", "duplicated event")


def already_exists(parsed: ErrorResponse | ErrorResponseWithStatus | None) -> bool:
    """Whether a 409 body of trackEventV3 says the event's integrationId is registered.

    Anything else, an unreadable body included, keeps the meaning of a 409: busy, retry.
    """
    if parsed is None or not parsed.message:
        return False
    message = parsed.message.lower()
    return any(words in message for words in _EXISTS_WORDS)


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
