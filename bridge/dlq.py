"""Dead-letter record headers.

A dead letter keeps the original key, value and headers; these headers are added. Names follow
Kafka Connect's `__connect.errors.*` vocabulary (UTF-8 strings, readable by kcat, Connect's own
tooling and most DLQ browsers), with `__talon.bridge.*` for what Connect has no name for.
Spring's `kafka_dlt-*` headers encode partition and offset as raw big-endian integers, which
tools render poorly, so they are not used.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bridge import __version__
from bridge.kafka.producer import wire_size
from bridge.tracing import MAX_TRACE_HEADER, TRACE_NAMES
from bridge.types import ConsumedRecord, DeadLetterReason, DeadLetterStage, Headers

__all__ = [
    "H_APPLICATION",
    "H_ATTEMPTS",
    "H_BRIDGE_VERSION",
    "H_ERROR_BODY",
    "H_ERROR_CLASS",
    "H_EXCEPTION_CLASS",
    "H_EXCEPTION_MESSAGE",
    "H_FIRST_FAILURE",
    "H_GROUP",
    "H_HTTP_STATUS",
    "H_LAST_FAILURE",
    "H_OMITTED",
    "H_ORIGINAL_BYTES",
    "H_ORIGINAL_OFFSET",
    "H_ORIGINAL_PARTITION",
    "H_ORIGINAL_TIMESTAMP",
    "H_ORIGINAL_TOPIC",
    "H_PARKED_BEHIND",
    "H_PARKED_POSITION",
    "H_PARKED_TOKEN",
    "H_REASON",
    "H_REPLAY_COUNT",
    "H_REPLAY_DLQ",
    "H_REPLAY_ID",
    "H_REPLAY_OF",
    "H_REPLAY_POSITION",
    "H_REPLAY_TOKEN",
    "H_STAGE",
    "MAX_BODY_BYTES",
    "REPLAY_PREFIX",
    "DeadLetter",
    "Letter",
    "coordinates",
    "dead_letter_headers",
    "header",
    "record_letter_headers",
    "smaller_letter",
    "smaller_letters",
]

H_ORIGINAL_TOPIC = "__connect.errors.topic"
H_ORIGINAL_PARTITION = "__connect.errors.partition"
H_ORIGINAL_OFFSET = "__connect.errors.offset"
H_STAGE = "__connect.errors.stage"
H_EXCEPTION_CLASS = "__connect.errors.exception.class.name"
H_EXCEPTION_MESSAGE = "__connect.errors.exception.message"
H_ORIGINAL_TIMESTAMP = "__talon.bridge.original.timestamp"
H_GROUP = "__talon.bridge.consumer.group"
H_BRIDGE_VERSION = "__talon.bridge.version"
H_ERROR_CLASS = "__talon.bridge.error.class"
H_REASON = "__talon.bridge.error.reason"
H_HTTP_STATUS = "__talon.bridge.http.status"
H_ERROR_BODY = "__talon.bridge.error.body"
H_ATTEMPTS = "__talon.bridge.attempts"
H_FIRST_FAILURE = "__talon.bridge.failure.first"
H_LAST_FAILURE = "__talon.bridge.failure.last"
H_PARKED_BEHIND = "__talon.bridge.parked.behind"
# The Talon.One application the record went to (absent when it was routed to none).
H_APPLICATION = "__talon.bridge.application"
# The record's place in its session's parking chain (0: the poison) and the token proving it.
H_PARKED_POSITION = "__talon.bridge.parked.position"
H_PARKED_TOKEN = "__talon.bridge.parked.token"  # noqa: S105 (a header name)
# What a dead letter left out of the original record (comma-separated: value, headers, key,
# details) because the producer refused it whole, and the original's size in bytes.
H_OMITTED = "__talon.bridge.omitted"
H_ORIGINAL_BYTES = "__talon.bridge.original.bytes"
# Replay headers survive a later dead-lettering, so replay counts keep adding up.
REPLAY_PREFIX = "__talon.bridge.replay."
H_REPLAY_OF = REPLAY_PREFIX + "of"  # topic/partition/offset the record was first consumed at
H_REPLAY_ID = REPLAY_PREFIX + "id"
H_REPLAY_COUNT = REPLAY_PREFIX + "count"
H_REPLAY_DLQ = REPLAY_PREFIX + "dlq"  # topic/partition/offset of the dead letter it came from
# Copied from the parked.* headers; they let the record back into its parked session, once.
H_REPLAY_POSITION = REPLAY_PREFIX + "position"
H_REPLAY_TOKEN = REPLAY_PREFIX + "token"
_SINGLE_USE = (H_REPLAY_POSITION, H_REPLAY_TOKEN)

MAX_BODY_BYTES = 2048
_OURS = ("__connect.errors.", "__talon.bridge.")


def coordinates(topic: str, partition: int, offset: int) -> str:
    """The `topic/partition/offset` reference used in parking and replay headers."""
    return f"{topic}/{partition}/{offset}"


def header(headers: Iterable[tuple[str, bytes | str | None]] | None, name: str) -> str | None:
    """The last value of header `name`, decoded, or None."""
    found: str | None = None
    for k, v in headers or ():
        if k == name and v is not None:
            found = v.decode(errors="replace") if isinstance(v, bytes) else v
    return found


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a record could never succeed. `stage` is where it failed."""

    stage: DeadLetterStage
    error_class: str
    reason: DeadLetterReason
    message: str
    http_status: int | None = None
    body: str | None = None
    attempts: int = 0
    first_failure: float | None = None
    last_failure: float | None = None
    parked_behind: str | None = None  # "topic/partition/offset" of the session's poison record
    chain_position: int | None = None  # place in the session's parking chain
    chain_token: str | None = None


def _ms(ts: float) -> bytes:
    return str(int(ts * 1000)).encode()


def dead_letter_headers(
    original: Iterable[tuple[str, bytes]] | None,
    letter: DeadLetter,
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    group: str,
    version: str,
    application: str | None = None,
) -> Headers:
    """The original headers (minus stale error headers of an earlier dead-lettering) plus ours."""
    kept = [
        (k, v)
        for k, v in (original or ())
        if not k.startswith(_OURS) or (k.startswith(REPLAY_PREFIX) and k not in _SINGLE_USE)
    ]
    now = time.time()
    out = [
        *kept,
        (H_ORIGINAL_TOPIC, topic.encode()),
        (H_ORIGINAL_PARTITION, str(partition).encode()),
        (H_ORIGINAL_OFFSET, str(offset).encode()),
        (H_ORIGINAL_TIMESTAMP, str(timestamp_ms).encode()),
        (H_STAGE, letter.stage.encode()),
        (H_EXCEPTION_CLASS, letter.error_class.encode()),
        (H_EXCEPTION_MESSAGE, letter.message.encode()[:MAX_BODY_BYTES]),
        (H_ERROR_CLASS, letter.error_class.encode()),
        (H_REASON, letter.reason.encode()),
        (H_ATTEMPTS, str(letter.attempts).encode()),
        (H_FIRST_FAILURE, _ms(letter.first_failure or now)),
        (H_LAST_FAILURE, _ms(letter.last_failure or now)),
        (H_GROUP, group.encode()),
        (H_BRIDGE_VERSION, version.encode()),
    ]
    if application:
        out.append((H_APPLICATION, application.encode()))
    if letter.http_status is not None:
        out.append((H_HTTP_STATUS, str(letter.http_status).encode()))
    if letter.body:
        out.append((H_ERROR_BODY, letter.body.encode()[:MAX_BODY_BYTES]))
    if letter.parked_behind:
        out.append((H_PARKED_BEHIND, letter.parked_behind.encode()))
    if letter.chain_position is not None and letter.chain_token:
        out.append((H_PARKED_POSITION, str(letter.chain_position).encode()))
        out.append((H_PARKED_TOKEN, letter.chain_token.encode()))
    return out


Letter = tuple[bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]

_SIZE_NOTES = (H_OMITTED, H_ORIGINAL_BYTES)
# Kept by the last resort: where the original is, and why it failed.
_ESSENTIAL = frozenset(
    {H_ORIGINAL_TOPIC, H_ORIGINAL_PARTITION, H_ORIGINAL_OFFSET, H_STAGE, H_REASON}
)


def smaller_letters(letter: Letter, original_bytes: int) -> Iterator[Letter]:
    """`letter`, then ever smaller forms of it for a producer that refuses it as too large.

    A record up to the input topic's size limit can exceed the producer's message.max.bytes
    once our headers are added, and so can one with a crafted key or headers. Each smaller
    form drops more of the original (it stays in its own topic, at the coordinates the
    headers give, while retention keeps it), and says what it dropped in `H_OMITTED`:
    the value and the original headers (all but the trace context); then the key; then all
    but the coordinates and the reason.
    """
    key, _, headers = letter
    yield letter
    ours = [
        (k, v)
        for k, v in headers
        if k.startswith(_OURS) and k not in _SIZE_NOTES and (v is None or len(v) <= MAX_BODY_BYTES)
    ]
    # The trace context is kept while details are: one trace id still leads to the letter.
    trace = [
        (k, v)
        for k, v in headers
        if k in TRACE_NAMES and v is not None and len(v) <= MAX_TRACE_HEADER
    ]
    size = (H_ORIGINAL_BYTES, str(original_bytes).encode())
    yield key, None, [*ours, *trace, (H_OMITTED, b"value,headers"), size]
    yield None, None, [*ours, *trace, (H_OMITTED, b"value,headers,key"), size]
    essential = [(k, v) for k, v in ours if k in _ESSENTIAL]
    yield None, None, [*essential, (H_OMITTED, b"value,headers,key,details"), size]


def smaller_letter(letter: Letter, original_bytes: int) -> Letter | None:
    """The first of `smaller_letters` below `letter`'s size, or None: for a letter the broker
    refused (the dead-letter topic's max.message.bytes is below the producer's)."""
    size = wire_size(*letter)
    for smaller in smaller_letters(letter, original_bytes):
        if wire_size(*smaller) < size:
            return smaller
    return None


def record_letter_headers(
    rec: ConsumedRecord, letter: DeadLetter, group: str, application: str | None = None
) -> list[tuple[str, str | bytes | None]]:
    """`dead_letter_headers` of a record this worker consumed in `group`, bound for
    `application` (None: routed to none)."""
    return [
        *dead_letter_headers(
            rec.headers,
            letter,
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            timestamp_ms=rec.timestamp_ms,
            group=group,
            version=__version__,
            application=application,
        )
    ]
