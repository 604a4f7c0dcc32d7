"""The consumer thread reports a fatal stop as a typed error, and stops polling; it hands a
fetch to the loop whole, and what it read before a rebalance before the rebalance's news."""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import KafkaError, Message, TopicPartition

from bridge.errors import ConsumerFatalError, KafkaFatalError
from bridge.kafka.consumer import ConsumerThread
from bridge.kafka.records import InputRecord


class Listener:
    def __init__(self) -> None:
        self.fatal: list[Any] = []

    def on_fatal(self, error: ConsumerFatalError) -> None:
        self.fatal.append(error)


def _thread(listener: Listener, loop: asyncio.AbstractEventLoop) -> ConsumerThread:
    return ConsumerThread(
        {"bootstrap.servers": "127.0.0.1:1", "group.id": "g", "log_level": 0},  # no broker there
        ["orders"],
        listener,  # type: ignore[arg-type]
        loop,
        max_buffered=10,
        drain_timeout=1.0,
        commit_interval=1.0,
    )


def test_a_fatal_client_error_reaches_the_loop_as_consumer_fatal_error() -> None:
    loop = asyncio.new_event_loop()
    listener = Listener()
    try:
        thread = _thread(listener, loop)
        thread._on_error(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
        loop.run_until_complete(asyncio.sleep(0))
        thread._consumer.close()
    finally:
        loop.close()
    [error] = listener.fatal
    assert isinstance(error, ConsumerFatalError)
    assert isinstance(error, KafkaFatalError)
    assert "fenced" in str(error)
    assert thread._halt.is_set()


def test_a_transient_client_error_is_only_logged() -> None:
    loop = asyncio.new_event_loop()
    listener = Listener()
    try:
        thread = _thread(listener, loop)
        thread._on_error(KafkaError(KafkaError._TRANSPORT, "broker down"))
        loop.run_until_complete(asyncio.sleep(0))
        thread._consumer.close()
    finally:
        loop.close()
    assert listener.fatal == []
    assert not thread._halt.is_set()


class FetchedConsumer:
    """Nothing fetched at first; then one fetch of `records`, queued whole when it lands."""

    def __init__(self, records: list[str]) -> None:
        self.queued: list[str] = []
        self.fetch = records
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[str]:
        self.calls.append((num_messages, timeout))
        if timeout and not self.queued:
            self.queued, self.fetch = self.fetch, []  # the fetch lands while waiting
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken


def test_the_record_waited_for_comes_with_the_rest_of_its_fetch() -> None:
    loop = asyncio.new_event_loop()
    try:
        thread = _thread(Listener(), loop)
        thread._consumer.close()
        fake = FetchedConsumer([f"r{i}" for i in range(5)])
        thread._consumer = fake  # type: ignore[assignment]
        assert thread._poll() == ["r0", "r1", "r2", "r3", "r4"]  # type: ignore[comparison-overlap]
        assert fake.calls == [(500, 0), (1, 0.1), (499, 0)]
        assert thread._poll() == []
    finally:
        loop.close()


class RebalancedConsumer:
    """One record waited for; the call for the rest of its fetch serves a rebalance first
    (librdkafka runs the callbacks inside consume), then returns the rest."""

    def __init__(self, rebalance: Any) -> None:
        self.rebalance = rebalance
        self.first = [Message(topic="orders", partition=0, offset=7, timestamp=(1, 5))]
        self.rest = [Message(topic="orders", partition=1, offset=3, timestamp=(1, 5))]

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        if timeout:
            taken, self.first = self.first, []
            return taken
        if not self.first and self.rest:
            self.rebalance(self, [TopicPartition("orders", 0)])
            taken, self.rest = self.rest, []
            return taken
        return []


def test_records_read_before_a_rebalance_reach_the_loop_before_its_news() -> None:
    # Handed over after the callback, a record of a partition lost and assigned again in the
    # same call would reach the loop as if read under the new assignment.
    events: list[tuple[str, Any]] = []

    class Recording(Listener):
        def on_batch(self, records: list[InputRecord]) -> None:
            events.append(("batch", [(r.partition, r.offset) for r in records]))

        def on_lost(self, tps: list[tuple[str, int]]) -> None:
            events.append(("lost", tps))

    loop = asyncio.new_event_loop()
    try:
        thread = _thread(Recording(), loop)
        thread._consumer.close()
        fake = RebalancedConsumer(thread._on_lost)
        thread._consumer = fake  # type: ignore[assignment]
        thread._hand_over(thread._poll())
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert events == [("batch", [(0, 7)]), ("lost", [("orders", 0)]), ("batch", [(1, 3)])]
