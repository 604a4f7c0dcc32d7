"""The blocking produce: a full local queue is waited out, never dropped or reordered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaException, Producer
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import OutputTooLargeError
from bridge.kafka.delivery import BATCH_OVERHEAD, Sender, batch_cap, worker_producer
from bridge.kafka.producer import produce, wire_size
from bridge.settings import KafkaSettings, Settings


class FullThenFree:
    """A producer whose queue is full for the first `full` attempts."""

    def __init__(self, full: int) -> None:
        self.full = full
        self.produced: list[tuple[str, dict[str, Any]]] = []
        self.polls: list[float] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        if self.full > 0:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.produced.append((topic, kwargs))

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        return 0


def test_a_full_queue_is_polled_until_the_record_is_taken() -> None:
    producer = FullThenFree(full=3)
    produce(producer, "t", value=b"v", key=b"k", poll_timeout=0.01)
    assert producer.produced == [("t", {"value": b"v", "key": b"k"})]
    assert producer.polls == [0.01, 0.01, 0.01]


def test_a_free_queue_takes_the_record_without_polling() -> None:
    producer = FullThenFree(full=0)
    produce(producer, "t", value=None, key=b"k")
    assert producer.produced == [("t", {"value": None, "key": b"k"})]
    assert producer.polls == []


def test_optional_arguments_are_passed_only_when_given() -> None:
    producer = FullThenFree(full=1)

    def report(err: object, msg: object) -> None:
        pass

    headers = [("h", b"1")]
    produce(
        producer,
        "t",
        value=b"v",
        headers=headers,
        partition=2,
        on_delivery=report,
    )
    assert producer.produced == [
        (
            "t",
            {"value": b"v", "key": None, "headers": headers, "partition": 2, "on_delivery": report},
        )
    ]
    assert producer.polls == [0.05]


class Accepted:
    """A real producer that counts the records it took (its queue length also counts events)."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.taken = 0

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.producer.produce(topic, **kwargs)
        self.taken += 1

    def poll(self, timeout: float) -> int:
        return self.producer.poll(timeout)


async def test_a_record_over_the_size_limit_is_refused_by_name_not_queued() -> None:
    # A real librdkafka producer checks message.max.bytes before any broker is involved.
    conf = {"bootstrap.servers": "127.0.0.1:1", "message.max.bytes": 1_000, "log_level": 0}
    producer = Accepted(Producer(conf))
    sender = Sender(producer, asyncio.get_running_loop())  # type: ignore[arg-type]
    with pytest.raises(OutputTooLargeError, match="too large"):
        sender.send("out", b"k", b"x" * 2_000, None, token=None)
    assert producer.taken == 0
    sender.send("out", b"k", b"x" * 100, None, token=None)
    assert producer.taken == 1


_LIMIT = 4_000


@pytest.fixture(scope="module")
def oracle() -> Iterator[Producer]:
    # Refusals happen before queueing; what is taken stays queued, so the queue gets room.
    producer = Producer(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "message.max.bytes": _LIMIT,
            "queue.buffering.max.messages": 10_000_000,
            "queue.buffering.max.kbytes": 2_000_000,
            "log_level": 0,  # no broker listens there: keep the connection failures quiet
        }
    )
    yield producer
    producer.purge()


def _taken(
    producer: Producer,
    key: bytes | None,
    value: bytes,
    headers: list[tuple[str, str | bytes | None]],
) -> bool:
    try:
        producer.produce("t", key=key, value=value, headers=headers)
    except KafkaException:
        return False
    return True


_header_values = st.one_of(st.none(), st.binary(max_size=300), st.text(max_size=100))


@settings(max_examples=150, deadline=None)
@given(
    key=st.one_of(st.none(), st.binary(max_size=700)),
    headers=st.lists(st.tuples(st.text(min_size=1, max_size=80), _header_values), max_size=6),
)
def test_wire_size_is_the_size_librdkafka_refuses_by(
    oracle: Producer, key: bytes | None, headers: list[tuple[str, str | bytes | None]]
) -> None:
    # The largest value `wire_size` allows is taken; one byte more is refused.
    room = _LIMIT - wire_size(key, b"", headers)
    assert room > 0
    assert _taken(oracle, key, b"v" * room, headers)
    assert not _taken(oracle, key, b"v" * (room + 1), headers)


def _kafka(**producer: Any) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap_servers="127.0.0.1:1", kafka_producer_config=producer)


def test_batches_are_capped_below_the_smallest_produced_topics_limit() -> None:
    # librdkafka never splits a batch the broker refuses: every record in it would fail.
    assert batch_cap(_kafka(), {}) is None, "no limit read"
    assert batch_cap(_kafka(), {"out": 1_048_588, "dlq": 2_000_000}) is None, "the default fits"
    assert batch_cap(_kafka(), {"out": 100_000, "dlq": 50_000}) == 50_000 - BATCH_OVERHEAD
    assert batch_cap(_kafka(**{"batch.size": 10_000}), {"out": 50_000}) is None
    assert batch_cap(_kafka(), {"out": 10}) == 1


def test_the_worker_producer_takes_a_capped_batch_size(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        input_topics=["in"],
        talon_base_url="https://talon.test",
        talon_api_key="k",
        kafka_producer_config={"log_level": 0},
    )
    caplog.set_level(logging.INFO, logger="bridge.kafka.delivery")
    for limits in ({"out": 10}, {"out": 5_000, "dlq": 1_048_588}):
        worker_producer(settings, limits).flush(0)
    capped = [r.__dict__ for r in caplog.records if "capped" in r.getMessage()]
    assert [(r["batch_size"], r["topic"]) for r in capped] == [(1, "out"), (4_939, "out")]
    worker_producer(settings, {"out": 1_048_588}).flush(0)
    assert len([r for r in caplog.records if "capped" in r.getMessage()]) == 2, "not capped"


async def test_a_record_is_over_its_topics_limit_only_when_the_limit_is_known() -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0})
    sender = Sender(producer, asyncio.get_running_loop(), {"out": 1_000})
    fits = 1_000 - BATCH_OVERHEAD - wire_size(b"k", b"")
    assert not sender.over_limit("out", b"k", b"x" * fits, None), "lowered since start"
    assert sender.over_limit("out", b"k", b"x" * (fits + 1), None)
    assert not sender.over_limit("dlq", b"k", b"x" * 5_000, None), "its limit is unknown"
