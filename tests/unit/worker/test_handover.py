"""Handing revoked partitions over: their finished work is committed before they leave."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from bridge.errors import KafkaFatalError
from bridge.kafka.consumer import ConsumerThread
from bridge.kafka.records import InputRecord
from bridge.types import TP

PART = ("orders", 0)


class FakeConsumer:
    """A consumer whose commits the group refuses a given number of times."""

    def __init__(self, refusals: int, committed: int = 40) -> None:
        self.refusals = refusals
        self.commits: list[list[TopicPartition]] = []
        self.committed_offset = committed
        self.generation = 0

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        self.commits.append(offsets)
        if self.refusals:
            self.refusals -= 1
            raise KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION))
        return offsets

    def committed(self, parts: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.committed_offset) for tp in parts]

    def consumer_group_metadata(self) -> str:
        self.generation += 1
        return f"generation {self.generation}"


class Listener:
    """The event loop's side: drains to position 100 and records the release."""

    def __init__(self, abort_first: int = 0) -> None:
        self.released: list[tuple[list[TP], int]] = []
        self.metadata: list[Any] = []
        self.abort_first = abort_first

    async def drain(self, partitions: list[TP], timeout: float) -> dict[TP, int]:
        return dict.fromkeys(partitions, 100)

    async def commit_transaction(self, group_metadata: Any) -> KafkaError | None:
        self.metadata.append(group_metadata)
        if self.abort_first:
            self.abort_first -= 1
            return KafkaError(KafkaError.ILLEGAL_GENERATION)
        return None

    def release(self, partitions: list[TP], reprocessed: int) -> None:
        self.released.append((partitions, reprocessed))

    def on_batch(self, records: list[InputRecord]) -> None: ...
    def on_assigned(self, partitions: list[TP]) -> None: ...
    def on_lost(self, partitions: list[TP]) -> None: ...
    def on_log_gone(self, partitions: list[TP]) -> None: ...
    def on_fatal(self, error: KafkaFatalError) -> None: ...


def _thread(
    listener: Listener, loop: asyncio.AbstractEventLoop, causes: list[str], **kw: Any
) -> ConsumerThread:
    return ConsumerThread(
        {"bootstrap.servers": "127.0.0.1:1", "group.id": "g", "log_level": 0},  # no broker there
        ["orders"],
        listener,  # type: ignore[arg-type]
        loop,
        max_buffered=10,
        drain_timeout=kw.pop("drain_timeout", 5.0),
        commit_interval=1.0,
        on_commit_failed=causes.append,
        **kw,
    )


def _handover(consumer: FakeConsumer, listener: Listener, **kw: Any) -> list[str]:
    """Revoke PART on a consumer thread against a running loop; the causes counted."""
    causes: list[str] = []
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        thread = _thread(listener, loop, causes, **kw)
        real, thread._consumer = thread._consumer, consumer  # type: ignore[assignment]
        thread.assignment.add(PART)
        thread._revoke_and_commit([PART])
        assert PART not in thread.assignment
        real.close()
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
    return causes


class Joined:
    """What the assign callback asks of a consumer that has joined."""

    def consumer_group_metadata(self) -> None:
        return None

    def pause(self, partitions: list[TopicPartition]) -> None: ...


def test_a_member_is_settled_once_it_holds_partitions() -> None:
    loop = asyncio.new_event_loop()
    try:
        thread = _thread(Listener(), loop, [])
        thread._on_assign(Joined(), [])  # type: ignore[arg-type]
        assert not thread.settled.is_set(), "joined, but the group may still move partitions"
        thread._on_assign(Joined(), [TopicPartition(*PART)])  # type: ignore[arg-type]
        assert thread.settled.is_set()
        thread._consumer.close()
    finally:
        loop.close()


def test_a_commit_refused_while_the_group_changes_is_made_before_the_partition_leaves() -> None:
    consumer, listener = FakeConsumer(refusals=2), Listener()
    causes = _handover(consumer, listener)
    assert [[tp.offset for tp in c] for c in consumer.commits] == [[100]] * 3
    assert causes == ["ILLEGAL_GENERATION"] * 2
    assert listener.released == [([PART], 0)]


def test_a_handover_the_group_never_accepts_counts_what_the_next_owner_redoes() -> None:
    consumer, listener = FakeConsumer(refusals=1000, committed=40), Listener()
    _handover(consumer, listener, drain_timeout=0.5)
    assert len(consumer.commits) >= 2
    assert listener.released == [([PART], 60)]  # finished up to 100, committed at 40


def test_exactly_once_retries_the_transaction_with_the_group_metadata_of_the_moment() -> None:
    consumer, listener = FakeConsumer(refusals=0), Listener(abort_first=1)
    _handover(consumer, listener, transactional=True)
    assert consumer.commits == [], "the transaction carries the offsets"
    assert listener.metadata == ["generation 1", "generation 2"]
    assert listener.released == [([PART], 0)]
