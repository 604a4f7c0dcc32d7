"""A dead letter as `talon-bridge replay` reads it, and the headers it is re-sent with. No I/O.

`replay_headers` strips the error headers and adds the replay headers; the key, value and the
record's own headers are kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bridge.dlq import (
    H_APPLICATION,
    H_ERROR_CLASS,
    H_EXCEPTION_CLASS,
    H_HTTP_STATUS,
    H_OMITTED,
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    H_PARKED_BEHIND,
    H_PARKED_POSITION,
    H_PARKED_TOKEN,
    H_REASON,
    H_REPLAY_COUNT,
    H_REPLAY_DLQ,
    H_REPLAY_ID,
    H_REPLAY_OF,
    H_REPLAY_POSITION,
    H_REPLAY_TOKEN,
    coordinates,
    header,
)
from bridge.types import Headers

__all__ = ["PARKED", "DeadLetterRecord", "replay_headers"]

PARKED = "parked"

_ERROR_PREFIXES = ("__connect.errors.", "__talon.bridge.")


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One DLQ record with its headers read. Build it with `DeadLetterRecord.build`."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    command_type: str
    event_id: str | None
    reason: str | None
    error_class: str | None
    exception_class: str | None
    status: int | None
    original_topic: str | None
    original_partition: int | None
    original: str | None  # topic/partition/offset it was consumed at before dead-lettering
    parked_behind: str | None
    replay_count: int
    chain_position: int | None = None  # place in its session's parking chain (0: the poison)
    chain_token: str | None = None
    application: str | None = None  # the Talon.One application it went to
    omitted: str | None = None  # what the worker left out of it (too large to dead-letter)

    @classmethod
    def build(
        cls,
        *,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes | None]] | None,
        command_type: str = "unknown",
        event_id: str | None = None,
    ) -> DeadLetterRecord:
        hs = tuple((k, v if v is not None else b"") for k, v in headers or ())
        o_topic = header(hs, H_ORIGINAL_TOPIC) or None
        o_partition = _int(header(hs, H_ORIGINAL_PARTITION))
        o_offset = _int(header(hs, H_ORIGINAL_OFFSET))
        original = (
            coordinates(o_topic, o_partition, o_offset)
            if o_topic is not None and o_partition is not None and o_offset is not None
            else None
        )
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp_ms,
            key=key,
            value=value,
            headers=hs,
            command_type=command_type,
            event_id=event_id,
            reason=header(hs, H_REASON),
            error_class=header(hs, H_ERROR_CLASS),
            exception_class=header(hs, H_EXCEPTION_CLASS),
            status=_int(header(hs, H_HTTP_STATUS)),
            original_topic=o_topic,
            original_partition=o_partition,
            original=original,
            parked_behind=header(hs, H_PARKED_BEHIND),
            replay_count=max(0, _int(header(hs, H_REPLAY_COUNT)) or 0),
            chain_position=_int(header(hs, H_PARKED_POSITION)),
            chain_token=header(hs, H_PARKED_TOKEN),
            application=header(hs, H_APPLICATION),
            omitted=header(hs, H_OMITTED),
        )

    @property
    def session(self) -> str | None:
        """The Kafka key, the customer-session ID."""
        return self.key.decode(errors="replace") if self.key is not None else None

    @property
    def dlq(self) -> str:
        """This record's own `topic/partition/offset`."""
        return coordinates(self.topic, self.partition, self.offset)

    @property
    def position(self) -> tuple[int, int]:
        return (self.partition, self.offset)

    @property
    def is_parked(self) -> bool:
        """Diverted behind its session's poison rather than failed by itself."""
        return self.reason == PARKED or self.parked_behind is not None


def replay_headers(
    r: DeadLetterRecord,
    *,
    replay_id: str,
    count: int | None = None,
    route_header: str | None = None,
) -> Headers:
    """The headers of the re-sent record: the record's own, minus error headers, plus replay ones.

    With `route_header`, a record that went to an application is re-sent with that header
    naming it, so the worker routes it back there whatever its topic.

    ``replay.of`` names where the record was consumed before it was dead-lettered (the
    worker releases a parked session when its poison comes back with it); ``replay.dlq``
    names the dead letter it came from, so every re-sent record can be traced and counted.
    """
    route = r.application if route_header else None
    kept = [
        (k, v)
        for k, v in r.headers
        if not k.startswith(_ERROR_PREFIXES) and (route is None or k != route_header)
    ]
    of = r.original or header(r.headers, H_REPLAY_OF)
    out = [*kept]
    if route is not None and route_header is not None:
        out.append((route_header, route.encode()))
    if of:
        out.append((H_REPLAY_OF, of.encode()))
    if r.chain_position is not None and r.chain_token:
        out.append((H_REPLAY_POSITION, str(r.chain_position).encode()))
        out.append((H_REPLAY_TOKEN, r.chain_token.encode()))
    out += [
        (H_REPLAY_ID, replay_id.encode()),
        (H_REPLAY_COUNT, str(r.replay_count + 1 if count is None else count).encode()),
        (H_REPLAY_DLQ, r.dlq.encode()),
    ]
    return out
