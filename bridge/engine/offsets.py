"""Offset tracking: commit only the contiguous prefix of finished records.

Records finish out of order (many sessions run at once), so each partition keeps its
unfinished records in arrival order. The committable position is the offset of the first
unfinished record, or one past the last finished one when nothing is pending. The position
is one integer per partition, so commits never carry per-record metadata: this sidesteps the
4 KB commit-metadata limit that key-ordered consumers storing "finished but not committable"
offsets in the commit metadata run into. After a crash, the records between the committed
position and the furthest finished one are redelivered; the bound is `max_buffered_records`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["OffsetTracker", "PartitionOffsets", "Slot", "TopicPartitionKey"]

TopicPartitionKey = tuple[str, int]


class Slot:
    """One tracked record. `done` flips once; the tracker advances past done slots."""

    __slots__ = ("done", "offset", "owner", "timestamp_ms")

    def __init__(self, offset: int, owner: PartitionOffsets, timestamp_ms: int = 0) -> None:
        self.offset = offset
        self.timestamp_ms = timestamp_ms
        self.done = False
        self.owner = owner

    @property
    def tracked(self) -> bool:
        """Its partition is still tracked here (not revoked, lost or gone)."""
        return self.owner.active

    @property
    def log_gone(self) -> bool:
        """Its partition was forgotten because the log was deleted or restarted."""
        return self.owner.log_gone

    def begin(self) -> None:
        """A call or an acknowledgement is outstanding for this record (a drain waits)."""
        self.owner.in_progress += 1

    def end(self) -> bool:
        """What `begin` announced is over; True when its partition has nothing in progress."""
        self.owner.in_progress -= 1
        return self.owner.in_progress == 0

    def complete(self) -> None:
        """The record is finished: the partition's position may move past it."""
        self.owner.complete(self)


@dataclass(slots=True)
class PartitionOffsets:
    """Unfinished records of one partition, in arrival (offset) order."""

    pending: deque[Slot] = field(default_factory=deque)
    next_position: int | None = None  # first offset not yet finished-in-order
    committed: int | None = None  # last position handed out for commit
    last_offset: int = -1
    in_progress: int = 0  # records with a call or an acknowledgement outstanding
    active: bool = True
    log_gone: bool = False  # forgotten because the log was deleted or restarted, not revoked

    def track(self, offset: int, timestamp_ms: int = 0) -> Slot | None:
        """Start tracking `offset`; None when it is a redelivery of one already held."""
        if offset <= self.last_offset:
            return None
        self.last_offset = offset
        slot = Slot(offset, self, timestamp_ms)
        if not self.pending and self.next_position is None:
            self.next_position = offset
        self.pending.append(slot)
        return slot

    def complete(self, slot: Slot) -> None:
        slot.done = True
        pending = self.pending
        while pending and pending[0].done:
            self.next_position = pending.popleft().offset + 1
        if pending:
            # Gaps (compacted or transaction-marker offsets) sit before the first unfinished one.
            self.next_position = pending[0].offset

    @property
    def position(self) -> int | None:
        """The offset a commit may name now: every record before it is finished."""
        if self.pending:
            return self.pending[0].offset
        return self.next_position


class OffsetTracker:
    """Per-partition trackers plus bookkeeping of what was already committed."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartitionKey, PartitionOffsets] = {}

    def track(self, tp: TopicPartitionKey, offset: int, timestamp_ms: int = 0) -> Slot | None:
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = PartitionOffsets()
        return part.track(offset, timestamp_ms)

    def oldest_pending_timestamp_ms(self) -> int | None:
        """Kafka timestamp of the oldest unfinished record across partitions."""
        heads = [p.pending[0].timestamp_ms for p in self._parts.values() if p.pending]
        return min(heads) if heads else None

    @staticmethod
    def complete(slot: Slot) -> None:
        slot.owner.complete(slot)

    def in_progress(self, tp: TopicPartitionKey) -> int:
        part = self._parts.get(tp)
        return part.in_progress if part else 0

    def pending_count(self, tp: TopicPartitionKey) -> int:
        part = self._parts.get(tp)
        return len(part.pending) if part else 0

    def commit_positions(self, only_changed: bool = True) -> dict[TopicPartitionKey, int]:
        """Positions to commit; marks them as handed out."""
        out: dict[TopicPartitionKey, int] = {}
        for tp, part in self._parts.items():
            pos = part.position
            if pos is None or (only_changed and pos == part.committed):
                continue
            out[tp] = pos
            part.committed = pos
        return out

    def position(self, tp: TopicPartitionKey) -> int | None:
        part = self._parts.get(tp)
        return part.position if part else None

    def forget(self, tp: TopicPartitionKey, *, log_gone: bool = False) -> None:
        """Drop a partition (revoked or lost, or its log gone); its slots complete into
        nothing afterwards."""
        part = self._parts.pop(tp, None)
        if part is not None:
            part.active = False
            part.log_gone = log_gone
