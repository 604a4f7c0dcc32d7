"""Shared type aliases, vocabularies and record protocols of the bridge.

Each vocabulary is a Literal type, defined here once. Code that needs its values as data
(metric label sets, CLI choices) takes them with `typing.get_args`.
"""

from __future__ import annotations

from typing import Literal, Protocol, TypeAlias

__all__ = [
    "TP",
    "ApiErrorOutcome",
    "ApiOutcome",
    "CommandOutcome",
    "CommandType",
    "ConsumedRecord",
    "DeadLetterReason",
    "DeadLetterStage",
    "DecodeReason",
    "DeliveryKind",
    "ErrorClass",
    "EventsApi",
    "Headers",
    "RecordCommandType",
    "RetryClass",
]

# A topic partition, as confluent-kafka's callbacks and the offset tracker name it.
TP: TypeAlias = tuple[str, int]

# Kafka record headers as the bridge writes and reads them.
Headers: TypeAlias = list[tuple[str, bytes]]


class ConsumedRecord(Protocol):
    """What dead-lettering and tracing read of a consumed record (`InputRecord`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp_ms(self) -> int: ...
    @property
    def headers(self) -> Headers | None: ...


# The Integration API operations a command maps to: trackEventV2, updateCustomerSessionV2,
# returnCartItems and trackEventV3 (appended last: it is also the Avro enums' symbol order).
CommandType: TypeAlias = Literal[
    "track_event", "update_customer_session", "return_cart_items", "track_event_v3"
]
# A record's command type as metrics and replay filters name it: `unknown` when the value
# does not decode.
RecordCommandType: TypeAlias = Literal[CommandType, "unknown"]
# How a record finished (bridge_commands_processed).
CommandOutcome: TypeAlias = Literal["applied", "dead_lettered", "parked"]

# How a failed Talon.One call ended; `ApiOutcome` adds success.
ApiErrorOutcome: TypeAlias = Literal["409", "429", "4xx", "5xx", "auth", "timeout", "connection"]
ApiOutcome: TypeAlias = Literal["2xx", ApiErrorOutcome]
# `ApiError.error_class`: the retryable classes are retried with backoff, the others are not.
RetryClass: TypeAlias = Literal["conflict", "rate_limited", "server", "timeout", "connection"]
ErrorClass: TypeAlias = Literal["api", "retryable", RetryClass, "permanent", "auth"]

# `DecodeError.reason`: why a record's bytes did not become a command.
DecodeReason: TypeAlias = Literal[
    "empty",
    "truncated",
    "unknown-magic",
    "unknown-fingerprint",
    "unknown-schema-id",
    "missing-key",
    "key-mismatch",
    "invalid",
    "trailing-bytes",
    "incompatible-schema",
    "internal",
]
# Why a record was dead-lettered (header __talon.bridge.error.reason, bridge_dead_letters).
DeadLetterReason: TypeAlias = Literal[
    "permanent",
    "retries-exhausted",
    "validation",
    "parked",
    "internal",
    "hot-session",
    "unroutable",
    "output-too-large",
    DecodeReason,
]
# Where a dead-lettered record failed (header __connect.errors.stage).
DeadLetterStage: TypeAlias = Literal[
    "decode", "validate", "api", "parked", "quota", "route", "publish"
]

# The topics the producer writes to (bridge_producer_delivery_failures).
DeliveryKind: TypeAlias = Literal["effects", "dlq", "parking"]

# Which events endpoint plain TrackEvent commands go to (BRIDGE_TALON_EVENTS_API).
EventsApi: TypeAlias = Literal["v2", "v3"]

# The HTTP engine under the Talon.One client, and the log line format.
HttpEngine: TypeAlias = Literal["reqwest", "aiohttp", "httptools"]
LogFormat: TypeAlias = Literal["auto", "json", "text"]
