"""The broker the suite provisions is a real Kafka: produce, consume and commit round-trip."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

pytestmark = pytest.mark.kafka


def test_produce_consume_commit(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str
) -> None:
    topic = topic_factory("broker", partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i in range(30):
        producer.produce(topic, key=f"k{i % 5}".encode(), value=str(i).encode())
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: list[int] = []
    # One deadline for the group join and the reads: a busy broker's coordinator can take
    # seconds to answer a join.
    deadline = time.monotonic() + 60
    while len(seen) < 30 and time.monotonic() < deadline:
        msg = consumer.poll(1)
        if msg is None:
            continue
        assert msg.error() is None
        seen.append(int(msg.value()))
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    consumer.close()
    assert sorted(seen) == list(range(30))
    assert sum(tp.offset for tp in committed) == 30
