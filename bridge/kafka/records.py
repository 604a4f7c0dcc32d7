"""The consumer thread's hand-over to the event loop: the records, and the listener.

The consumer thread (`bridge.kafka.consumer`) hands records over as `InputRecord`s, detached
from librdkafka's Message, and tells the loop about rebalances through a `PartitionListener`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message

from bridge.errors import ConsumerFatalError
from bridge.kafka.producer import wire_size
from bridge.types import TP, Headers

__all__ = ["InputRecord", "PartitionListener"]


@dataclass(slots=True)
class InputRecord:
    """A consumed record, detached from librdkafka's Message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    timestamp_ms: int

    @classmethod
    def from_message(cls, msg: Message) -> InputRecord:
        topic = msg.topic()
        partition = msg.partition()
        offset = msg.offset()
        if topic is None or partition is None or offset is None:
            raise ValueError("consumed message without coordinates")
        raw_headers = msg.headers()
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            key=msg.key(),
            value=msg.value(),
            headers=_as_header_list(raw_headers) if raw_headers else None,
            timestamp_ms=msg.timestamp()[1],
        )

    @property
    def wire_size(self) -> int:
        """Its size as a producer counts it against message.max.bytes (`wire_size`)."""
        return wire_size(self.key, self.value, self.headers)


def _as_header_list(raw: Any) -> Headers:
    # A consumed message's headers are always a list of (str, bytes | None).
    return [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in raw]


class PartitionListener(Protocol):
    """What the consumer thread tells the event loop, and asks of it."""

    def on_batch(self, records: list[InputRecord]) -> None: ...

    def on_assigned(self, partitions: list[TP]) -> None: ...

    async def drain(self, partitions: list[TP], timeout: float) -> dict[TP, int]:
        """Finish what the partitions hold; their positions (they stay tracked)."""
        ...

    async def commit_transaction(self, group_metadata: Any) -> KafkaError | None:
        """Exactly-once: commit held outputs with their offsets; the error if it aborted."""
        ...

    def release(self, partitions: list[TP], reprocessed: int) -> None:
        """The partitions have left this worker; `reprocessed` finished records of theirs
        are not covered by the group's committed offsets."""
        ...

    def on_lost(self, partitions: list[TP]) -> None: ...

    def on_log_gone(self, partitions: list[TP]) -> None:
        """The partitions' topic was deleted: positions read from it must never be committed."""
        ...

    def on_fatal(self, error: ConsumerFatalError) -> None:
        """The consumer has stopped for good: stop taking work."""
        ...

    @property
    def released(self) -> int:
        """How many handed-over records the loop no longer holds (finished, dropped, skipped)."""
        ...

    @property
    def intake_held(self) -> bool:
        """True while nothing new should be read (an API outage, a rejected key)."""
        ...
