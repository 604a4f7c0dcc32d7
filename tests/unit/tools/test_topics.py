"""`talon-bridge topics create`: what it prints for created and existing topics, and errors."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from bridge.cli import main
from bridge.kafka.topics import TopicSpec
from bridge.tools import topics


@pytest.fixture
def env(env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    env.setenv("BRIDGE_KAFKA_BOOTSTRAP_SERVERS", "unused:9092")
    env.setenv("BRIDGE_INPUT_TOPICS", "cmds")
    return env


def test_reports_each_topic_created_or_existing(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[list[TopicSpec]] = []

    def ensure(conf: dict[str, Any], specs: list[TopicSpec]) -> list[str]:
        asked.append(specs)
        return ["cmds"]

    env.setattr(topics, "ensure_topics", ensure)
    assert main(["topics", "create", "--partitions", "3", "--replication-factor", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "cmds: created"
    assert all(line.endswith(": exists") for line in out[1:]) and len(out) == 4
    assert {s.partitions for s in asked[0] if s.name == "cmds"} == {3}


def test_a_kafka_error_is_one_line_and_exit_1(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def ensure(conf: dict[str, Any], specs: list[TopicSpec]) -> list[str]:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))

    env.setattr(topics, "ensure_topics", ensure)
    assert main(["topics", "create"]) == 1
    assert capsys.readouterr().err == "talon-bridge topics: error: broker down\n"
