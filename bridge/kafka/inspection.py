"""Looking at topics and groups from outside a worker: for the harness, the demo and tests.

These clients are short-lived and not polled, so they are not given the librdkafka logger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from bridge.kafka.codes import TIMED_OUT

__all__ = [
    "committed_offsets",
    "committed_offsets_if_answered",
    "end_offsets",
    "quiet_admin",
    "read_topic",
]

log = logging.getLogger(__name__)


def _partitions(conf: Mapping[str, Any], topic: str) -> list[int]:
    c = Consumer({**conf, "group.id": "talon-bridge-inspect"})
    try:
        md = c.list_topics(topic, timeout=10)
        return sorted(md.topics[topic].partitions)
    finally:
        c.close()


def end_offsets(conf: Mapping[str, Any], topic: str) -> dict[int, int]:
    c = Consumer({**conf, "group.id": "talon-bridge-inspect"})
    try:
        md = c.list_topics(topic, timeout=10)
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in md.topics[topic].partitions
        }
    finally:
        c.close()


def committed_offsets(conf: Mapping[str, Any], group: str, topic: str) -> dict[int, int]:
    parts = _partitions(conf, topic)
    c = Consumer({**conf, "group.id": group})
    try:
        res = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in res}
    finally:
        c.close()


def committed_offsets_if_answered(
    conf: Mapping[str, Any], group: str, topic: str
) -> dict[int, int] | None:
    """`committed_offsets`, or None when the query timed out.

    A broker still loading its group or transaction coordinators can let one offset query
    time out; that means "not known yet", not a failure.
    """
    try:
        return committed_offsets(conf, group, topic)
    except KafkaException as exc:
        if exc.args[0].code() != TIMED_OUT:
            raise
        return None


def read_topic(
    conf: Mapping[str, Any],
    topic: str,
    *,
    expected: int | None = None,
    timeout: float = 60,
    idle: float = 2.0,
    isolation: str = "read_uncommitted",
) -> list[Any]:
    """Every record of `topic` from the beginning: up to `expected`, or until idle.

    Reads its partitions by assignment, not as a group member: a group join waits on the
    coordinator, which a busy broker can keep for longer than a test's deadline.
    """
    c = Consumer(
        {
            **conf,
            "group.id": "talon-bridge-inspect",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    out: list[Any] = []
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(parts)])
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            if expected is not None and len(out) >= expected:
                break
            msgs = c.consume(1000, 0.5)
            good = [m for m in msgs if m.error() is None]
            for m in msgs:
                if m.error() is not None:
                    log.warning("reading %s: %s", topic, m.error())
            if good:
                out.extend(good)
                last = time.monotonic()
            elif expected is None and out and time.monotonic() - last > idle:
                break
            elif expected is None and not out and time.monotonic() - last > idle * 5:
                break
    finally:
        c.close()
    return out


def quiet_admin(bootstrap: str) -> AdminClient:
    """An admin client that logs nothing: a broker still starting refuses connections."""
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
