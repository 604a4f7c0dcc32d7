"""The produced topics' limits: read at start, read again, and shared with the outputs."""

from __future__ import annotations

import asyncio
import logging

import pytest
from confluent_kafka import Producer

from bridge.kafka.delivery import Sender
from bridge.worker.topic_limits import TopicLimits


class Scripted(TopicLimits):
    """Limits whose readings come from a script; the last one repeats."""

    def __init__(self, *readings: dict[str, int]) -> None:
        super().__init__({}, ["out", "dlq"], dict(readings[0]))
        self.readings = list(readings[1:])
        self.reads = 0

    def read(self) -> dict[str, int]:
        self.reads += 1
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def test_a_limit_read_again_replaces_the_one_known(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.worker.topic_limits")
    limits = Scripted({"out": 1_000, "dlq": 5_000}, {})
    shared = limits.limits
    limits.update({"out": 2_000})  # raised; dlq not described this time
    assert shared == {"out": 2_000, "dlq": 5_000}, "the same dict, so the outputs see it"
    limits.update({"out": 2_000, "dlq": 4_000})  # lowered below the start's
    assert shared == {"out": 2_000, "dlq": 4_000}
    lines = [(r.levelname, r.getMessage(), r.__dict__["topic"]) for r in caplog.records]
    assert [(level, topic) for level, _, topic in lines] == [("INFO", "out"), ("WARNING", "dlq")]
    assert "restart" in lines[1][1]


def test_a_topic_not_described_at_start_is_taken_when_it_is() -> None:
    limits = Scripted({}, {})
    limits.update({"out": 300})
    assert limits.limits == {"out": 300}


async def test_the_limits_are_read_again_while_the_worker_runs() -> None:
    limits = Scripted({"out": 300}, {"out": 300}, {"out": 1_048_588})
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0})
    sender = Sender(producer, asyncio.get_running_loop(), limits.limits)
    assert sender.over_limit("out", b"k", b"x" * 1_000, None)
    task = asyncio.create_task(limits.run(every=0.001))
    while limits.reads < 3:
        await asyncio.sleep(0.001)
    task.cancel()
    assert not sender.over_limit("out", b"k", b"x" * 1_000, None), "raised: it fits now"
