"""The Kafka side of reading the dead-letter topic for replay, for a group that never joins.

The reader assigns partitions itself (`assign`, never `subscribe`): it reads and commits the
replay group's offsets, but no member joins that group, so no one is ever rebalanced. It
reads each partition from a given offset up to a fixed stop point and no further.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from bridge.errors import ReadError
from bridge.kafka.codes import COORDINATOR_BUSY, PARTITION_EOF, TOPIC_NOT_FOUND
from bridge.kafka.config import LIBRDKAFKA_LOGGER
from bridge.kafka.records import InputRecord
from bridge.settings import KafkaSettings

__all__ = ["GroupReader", "with_group_retries"]

# The replay's lines keep the name they had before the Kafka side moved here.
log = logging.getLogger("bridge.replay.kafka")

_T = TypeVar("_T")

_METADATA_TIMEOUT = 15.0
# A read that gets nothing for this long while records are still due has lost the broker.
_READ_STALL_S = 60.0
_GROUP_RETRY_S = 30.0


def with_group_retries(call: Callable[[], _T]) -> _T:
    """`call()`, again while the group coordinator is moving or loading (a new group)."""
    deadline = time.monotonic() + _GROUP_RETRY_S
    delay = 0.1
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            busy = isinstance(err, KafkaError) and (
                err.code() in COORDINATOR_BUSY or err.retriable()
            )
            if not busy or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)  # backoff between attempts, not a synchronisation
        delay = min(delay * 2, 2.0)


class GroupReader:
    """Reads partitions up to stop points, and reads and commits one group's offsets.

    Raises KafkaException for what the cluster refuses (the caller reports it).
    """

    def __init__(self, settings: KafkaSettings, group: str) -> None:
        self.group = group
        self._consumer = Consumer(
            {
                **settings.librdkafka_common(),
                "group.id": group,
                "logger": LIBRDKAFKA_LOGGER,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                # Short fetch long-polls: metadata requests wait behind them on the connection.
                "fetch.wait.max.ms": 100,
            }
        )

    def close(self) -> None:
        self._consumer.close()

    def partitions(self, topic: str) -> int | None:
        """How many partitions `topic` has; None when it does not exist."""
        md = self._consumer.list_topics(topic, timeout=_METADATA_TIMEOUT)
        tmd = md.topics.get(topic)
        if tmd is None:
            return None
        if tmd.error is not None:
            if tmd.error.code() in TOPIC_NOT_FOUND:
                return None
            raise KafkaException(tmd.error)
        return len(tmd.partitions)

    def watermarks(self, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """Per partition: its low and high watermark, asked of the broker."""
        return {
            p: self._consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=_METADATA_TIMEOUT, cached=False
            )
            for p in partitions
        }

    def committed(self, topic: str, partitions: list[int]) -> dict[int, int]:
        """The group's committed offsets of the partitions that have one."""
        wanted = [TopicPartition(topic, p) for p in partitions]
        c = self._consumer
        return {
            tp.partition: tp.offset
            for tp in with_group_retries(lambda: c.committed(wanted, timeout=_METADATA_TIMEOUT))
            if tp.offset >= 0
        }

    def read(
        self,
        topic: str,
        first: dict[int, int],
        until: dict[int, int],
        on_record: Callable[[InputRecord], None],
        interrupt: threading.Event | None = None,
    ) -> dict[int, int]:
        """Hand every record from `first` up to `until` (per partition) to `on_record`.

        Returns where each partition was read up to: `until`, or earlier where read_committed
        stops before an open transaction.

        Raises:
            ReadError: The records could not be read, or `interrupt` was set meanwhile.
        """
        c = self._consumer
        end = dict(until)
        due = {p for p in first if first[p] < until[p]}
        if not due:
            return end
        c.assign([TopicPartition(topic, p, first[p]) for p in sorted(due)])
        last_progress = time.monotonic()
        try:
            while due:
                if interrupt is not None and interrupt.is_set():
                    raise ReadError("interrupted while reading the dead-letter topic; nothing sent")
                msgs = c.consume(500, 0.1)
                if msgs:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > _READ_STALL_S:
                    raise ReadError(
                        f"no records from {topic!r} for {_READ_STALL_S:.0f}s with "
                        f"partitions {sorted(due)} not read to their stop point"
                    )
                for msg in msgs:
                    p = msg.partition() or 0
                    offset = msg.offset() or 0
                    err = msg.error()
                    if err is not None:
                        if err.code() == PARTITION_EOF:
                            if p in due:
                                # read_committed stops before an open transaction.
                                end[p] = min(until[p], offset)
                                self._finish(topic, p, due)
                            continue
                        if err.fatal():
                            raise ReadError(str(err))
                        log.warning("reading the dead-letter topic: %s", err)
                        continue
                    if p not in due or offset >= until[p]:
                        self._finish(topic, p, due)
                        continue
                    on_record(InputRecord.from_message(msg))
                    if offset + 1 >= until[p]:
                        self._finish(topic, p, due)
        finally:
            c.unassign()
        return end

    def _finish(self, topic: str, partition: int, due: set[int]) -> None:
        if partition in due:
            due.discard(partition)
            self._consumer.pause([TopicPartition(topic, partition)])

    def commit(self, topic: str, positions: Mapping[int, int]) -> None:
        """Commit the group's positions (synchronously)."""
        if not positions:
            return
        offsets = [TopicPartition(topic, p, o) for p, o in sorted(positions.items())]

        def commit() -> None:
            done = self._consumer.commit(offsets=offsets, asynchronous=False) or []
            for tp in done:
                if tp.error is not None:
                    raise KafkaException(tp.error)

        with_group_retries(commit)
