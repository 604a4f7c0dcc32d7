"""Client configuration shared by the worker's Kafka clients."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import Producer

from bridge.kafka.config import LIBRDKAFKA_LOGGER, consumer_config, producer_config
from bridge.settings import KafkaSettings


def _settings() -> KafkaSettings:
    # Nothing listens on port 1: librdkafka logs the refused connection at once.
    return KafkaSettings(kafka_bootstrap_servers="127.0.0.1:1", group_id="g")


def test_both_clients_log_through_python_logging() -> None:
    assert consumer_config(_settings())["logger"] is LIBRDKAFKA_LOGGER
    assert producer_config(_settings())["logger"] is LIBRDKAFKA_LOGGER


def test_librdkafka_lines_reach_the_python_logger(caplog: pytest.LogCaptureFixture) -> None:
    producer = Producer(producer_config(_settings()))
    with caplog.at_level(logging.WARNING, logger="librdkafka"):
        # Lines are handed over by poll(); the first refused connection comes within a poll.
        for _ in range(100):
            producer.poll(0.1)
            if any(r.name == "librdkafka" for r in caplog.records):
                break
    line = next(r for r in caplog.records if r.name == "librdkafka")
    assert line.levelno >= logging.WARNING
    assert "127.0.0.1:1" in line.getMessage()
    producer.flush(0)


def test_the_consumer_protocol_leaves_assignment_and_session_to_the_broker() -> None:
    classic = consumer_config(_settings())
    assert classic["group.protocol"] == "classic"
    assert classic["partition.assignment.strategy"] == "cooperative-sticky"
    kip848 = consumer_config(
        KafkaSettings(
            kafka_bootstrap_servers="127.0.0.1:1",
            group_id="g",
            group_protocol="consumer",
            kafka_config={"session.timeout.ms": 10_000},
        )
    )
    assert kip848["group.protocol"] == "consumer"
    assert not {"partition.assignment.strategy", "session.timeout.ms"} & set(kip848)
