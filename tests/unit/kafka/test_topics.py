"""`talon-bridge topics create`: librdkafka's own lines go through Python logging."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaException

from bridge.kafka.topics import ensure_topics, specs_for
from bridge.settings import KafkaSettings
from bridge.tools.ports import free_port


def test_librdkafka_lines_reach_the_python_logger(caplog: pytest.LogCaptureFixture) -> None:
    conf = {"bootstrap.servers": f"127.0.0.1:{free_port()}"}  # nothing listens there
    specs = specs_for(KafkaSettings(kafka_bootstrap_servers=conf["bootstrap.servers"]))
    with caplog.at_level(logging.WARNING, logger="librdkafka"), pytest.raises(KafkaException):
        ensure_topics(conf, specs, timeout=1)
    lines = [r for r in caplog.records if r.name == "librdkafka"]
    assert lines, "librdkafka's connection errors should come through Python logging"
    assert any("Connection refused" in r.getMessage() for r in lines)
