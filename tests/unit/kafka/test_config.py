"""Client configuration shared by the worker's Kafka clients."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from pydantic import ValidationError

from bridge.errors import ConfigError
from bridge.kafka.config import (
    LIBRDKAFKA_LOGGER,
    blame_consumer_config,
    consumer_config,
    message_max_bytes,
    new_client,
    new_producer_client,
    producer_config,
)
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


def _with(
    shared: dict[str, Any], own: dict[str, Any], consumer: dict[str, Any] | None = None
) -> KafkaSettings:
    return KafkaSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        group_id="g",
        kafka_config=shared,
        kafka_producer_config=own,
        kafka_consumer_config=consumer or {},
    )


def test_the_producers_own_properties_reach_only_the_producer() -> None:
    settings = _with({"linger.ms": 20, "client.id": "c"}, {"linger.ms": 50, "batch.size": 10})
    produced = producer_config(settings)
    assert (produced["linger.ms"], produced["batch.size"], produced["client.id"]) == (50, 10, "c")
    consumed = consumer_config(settings)
    assert (consumed["linger.ms"], consumed["client.id"]) == (20, "c")
    assert "batch.size" not in consumed
    assert message_max_bytes(_with({}, {"message.max.bytes": 2_000_000})) == 2_000_000
    assert message_max_bytes(_with({}, {})) == 1_000_000


@pytest.mark.parametrize(
    ("client", "shared", "own", "blamed"),
    [
        ("producer", {}, {"no.such.property": 1}, "BRIDGE_KAFKA_PRODUCER_CONFIG"),
        ("producer", {}, {"linger.ms": -5}, "BRIDGE_KAFKA_PRODUCER_CONFIG"),
        ("producer", {"no.such.property": 1}, {"linger.ms": 50}, "BRIDGE_KAFKA_CONFIG"),
        ("producer", {"no.such.property": 1}, {}, "BRIDGE_KAFKA_CONFIG"),
        ("consumer", {}, {"no.such.property": 1}, "BRIDGE_KAFKA_CONSUMER_CONFIG"),
        ("consumer", {}, {"fetch.wait.max.ms": -5}, "BRIDGE_KAFKA_CONSUMER_CONFIG"),
        ("consumer", {"no.such.property": 1}, {"fetch.wait.max.ms": 20}, "BRIDGE_KAFKA_CONFIG"),
        ("consumer", {"no.such.property": 1}, {}, "BRIDGE_KAFKA_CONFIG"),
    ],
)
def test_a_refused_property_names_the_pass_through_it_came_from(
    client: str, shared: dict[str, Any], own: dict[str, Any], blamed: str
) -> None:
    if client == "producer":
        with pytest.raises(ConfigError) as caught:
            new_producer_client(Producer, _with(shared, own))
        assert caught.value.setting == blamed
        return
    settings = _with(shared, {}, own)
    with pytest.raises(ConfigError) as caught:
        new_client(Consumer, consumer_config(settings))
    assert blame_consumer_config(caught.value, settings).setting == blamed


def test_a_secret_is_refused_in_the_producers_properties() -> None:
    with pytest.raises(ValidationError, match=r"sasl\.password is a secret"):
        _with({}, {"sasl.password": "hunter2"})


def test_the_consumers_own_properties_reach_only_the_input_consumer() -> None:
    settings = _with(
        {"fetch.wait.max.ms": 100, "client.id": "c"},
        {},
        {"fetch.wait.max.ms": 20, "fetch.min.bytes": 1_048_576, "enable.auto.commit": True},
    )
    consumed = consumer_config(settings)
    assert (consumed["fetch.wait.max.ms"], consumed["fetch.min.bytes"]) == (20, 1_048_576)
    assert consumed["client.id"] == "c"
    assert consumed["enable.auto.commit"] is False  # what correctness needs still wins
    assert "fetch.min.bytes" not in producer_config(settings)
    assert "fetch.min.bytes" not in settings.librdkafka_common()


def test_a_secret_is_refused_in_the_consumers_properties() -> None:
    with pytest.raises(ValidationError, match=r"ssl\.key\.password is a secret"):
        _with({}, {}, {"ssl.key.password": "hunter2"})
