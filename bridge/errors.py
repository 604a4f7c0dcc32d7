"""The exception tree of talon-bridge.

Foreign exceptions (httpx, aiohttp, confluent-kafka, fastavro) are translated into these
exactly once, at the adapter that talks to them::

    BridgeError
     +-- ConfigError                  bad settings; the CLI exits 2 naming each variable
     +-- DecodeError                  bytes that are not a command we can read (dead-letter)
     +-- EncodeError                  a record that does not fit its Avro schema
     +-- RegistryError                the Schema Registry failed a request (retry if `retryable`)
     |    +-- SchemaNotCached         a writer schema must be fetched first (in a thread)
     +-- InvalidCommandError          a decoded command Talon.One would reject (dead-letter)
     +-- SelectionError               a replay filter, option or topic that cannot be used; exit 2
     +-- InvalidLineError             a JSON line `talon-bridge send` cannot turn into a command
     +-- ApiError                     anything the Talon.One client raises
     |    +-- RetryableApiError       409, 429, 5xx, timeouts, connection errors
     |    |    +-- ConflictError      409: the session or profile is busy
     |    |    +-- RateLimitedError   429
     |    |    +-- ServerError        5xx
     |    |    +-- ApiTimeoutError    no answer within the read timeout
     |    |    +-- ApiConnectionError connect failure or reset
     |    +-- EventExistsError        409 of trackEventV3: the event is registered already (success)
     |    +-- PermanentApiError       400, 404, 422: the request can never succeed (dead-letter)
     |    +-- FatalApiError           401, 403: stop taking work until the key is fixed
     +-- KafkaFatalError              librdkafka reported a fatal error
     |    +-- ConsumerFatalError      the consumer thread stopped: a fatal client error or a crash
     |    +-- ProducerFatalError      the producer cannot deliver any more (e.g. fenced)
     +-- KafkaUnreachableError        no broker answered at start
     +-- KafkaRequestError            a read-only question to the cluster failed (doctor)
     +-- ReadError                    a topic could not be read up to its stop point (replay)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.types import DecodeReason, ErrorClass

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "ApiTimeoutError",
    "BridgeError",
    "ConfigError",
    "ConflictError",
    "ConsumerFatalError",
    "DecodeError",
    "EncodeError",
    "EventExistsError",
    "FatalApiError",
    "InvalidCommandError",
    "InvalidLineError",
    "KafkaFatalError",
    "KafkaRequestError",
    "KafkaUnreachableError",
    "PermanentApiError",
    "ProducerFatalError",
    "RateLimitedError",
    "ReadError",
    "RegistryError",
    "RetryableApiError",
    "SchemaNotCached",
    "SelectionError",
    "ServerError",
]


class BridgeError(Exception):
    """Root of every error talon-bridge raises on purpose."""


class ConfigError(BridgeError):
    """Settings are missing or invalid. `setting` names the (first) environment variable;
    `problems` holds every (variable, message), so one run reports them all."""

    def __init__(self, setting: str, message: str, *, more: Sequence[tuple[str, str]] = ()) -> None:
        self.problems = [(setting, message), *more]
        super().__init__("; ".join(f"{name}: {why}" for name, why in self.problems))
        self.setting = setting
        self.reason = message


class DecodeError(BridgeError):
    """A record's bytes could not be decoded into a command.

    `reason` is a short machine-friendly tag (e.g. ``unknown-magic``, ``truncated``,
    ``unknown-fingerprint``) that ends up in dead-letter headers and metrics.
    """

    def __init__(self, reason: DecodeReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class EncodeError(BridgeError, ValueError):
    """A record could not be encoded: a value does not fit the schema."""


class RegistryError(BridgeError):
    """The Schema Registry failed a request for a reason other than an unknown id.

    `status` is the HTTP status, or None when no answer came. `retryable` is true for
    transport failures, 408, 429 and 5xx.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed."""
        return self.status is None or self.status in (408, 429) or self.status >= 500


class SchemaNotCached(RegistryError):
    """Decoding needs a writer schema from the registry, and the caller asked not to fetch."""

    def __init__(self, schema_id: int) -> None:
        super().__init__(f"schema id {schema_id} is not fetched yet")
        self.schema_id = schema_id


class InvalidCommandError(BridgeError):
    """A command breaks the API's documented constraints; `pointer` names the field."""

    def __init__(self, message: str, pointer: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer


class SelectionError(BridgeError, ValueError):
    """A replay selection that cannot be used: a filter or option value that cannot be
    understood, or a topic that is missing or refused; the CLI exits 2 with it."""


class InvalidLineError(BridgeError, ValueError):
    """A JSON line that is not a valid command; the message names the field, never a value."""


class ApiError(BridgeError):
    """A Talon.One call failed. `status` is the HTTP status, or None without a response."""

    error_class: ErrorClass = "api"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.retry_after = retry_after


class RetryableApiError(ApiError):
    """Trying again later may succeed."""

    error_class: ErrorClass = "retryable"


class ConflictError(RetryableApiError):
    """409: Talon.One is handling another request for this session or profile."""

    error_class = "conflict"


class RateLimitedError(RetryableApiError):
    """429: slow down; `retry_after` holds the server's hint in seconds when given."""

    error_class = "rate_limited"


class ServerError(RetryableApiError):
    """5xx from Talon.One or a gateway in front of it."""

    error_class = "server"


class ApiTimeoutError(RetryableApiError):
    """No complete answer within the configured timeouts."""

    error_class = "timeout"


class ApiConnectionError(RetryableApiError):
    """The connection could not be made or was reset."""

    error_class = "connection"


class EventExistsError(ApiError):
    """409 of trackEventV3 whose body says an event with this integrationId is registered
    already: the command took effect before (a redelivery, a replay), nothing to retry."""


class PermanentApiError(ApiError):
    """The request is invalid for Talon.One and will never succeed as sent."""

    error_class = "permanent"


class FatalApiError(ApiError):
    """The API key is wrong or lacks permission; no request can succeed."""

    error_class = "auth"


class KafkaFatalError(BridgeError):
    """librdkafka reported a fatal error; the client must be recreated."""


class OutputTooLargeError(BridgeError):
    """The producer refused a record before queueing it: larger than its message.max.bytes."""


class ProducerFatalError(KafkaFatalError):
    """A delivery report carried a fatal error: the producer cannot send any more. The worker
    stops and exits 1; the record's offset stays uncommitted."""


class ConsumerFatalError(KafkaFatalError):
    """The consumer thread stopped taking records: librdkafka reported a fatal error, or the
    thread itself failed. The worker stops and exits 1."""


class KafkaUnreachableError(BridgeError):
    """No broker answered in time; `servers` is the bootstrap list, `reason` librdkafka's.

    `credentials_refused`: a broker answered but refused the client's authentication.
    """

    def __init__(self, servers: str, reason: str, *, credentials_refused: bool = False) -> None:
        super().__init__(
            f"the Kafka brokers at {servers} refused the credentials: {reason}"
            if credentials_refused
            else f"cannot reach the Kafka brokers at {servers}: {reason}"
        )
        self.servers = servers
        self.reason = reason
        self.credentials_refused = credentials_refused


class KafkaRequestError(BridgeError):
    """A question to the cluster (describe, list offsets, watermarks) failed.

    `reason` is librdkafka's text; `unauthorized`: the principal may not ask it;
    `unknown_topic`: the topic does not exist.
    """

    def __init__(
        self, reason: str, *, unauthorized: bool = False, unknown_topic: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unauthorized = unauthorized
        self.unknown_topic = unknown_topic


class ReadError(BridgeError):
    """A topic could not be read up to its stop point (the dead-letter topic, by replay)."""
