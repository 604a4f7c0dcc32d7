"""The parking topic on Kafka: its checks at start, and the thread that follows it.

The parked set itself, and what parking means, live in `bridge.worker.parking`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from bridge.kafka.cluster import Cluster
from bridge.kafka.codes import PARTITION_EOF
from bridge.kafka.config import LIBRDKAFKA_LOGGER, new_client

__all__ = ["ParkingReader", "parking_topic_problem"]

# Its lines keep the logger name they had next to the parked set.
log = logging.getLogger("bridge.worker.parking")


class _Unreadable(Exception):
    """The parking topic cannot be read; said in one line, without a traceback."""


def parking_topic_problem(cluster: Cluster, topic: str) -> str | None:
    """Why `topic` cannot hold the parked set, or None when it can (or cannot be told)."""
    problem = cluster.topic_problem(topic)
    if problem is not None:
        return (
            f"topic {topic!r}: {problem}; create it compacted (`talon-bridge topics create`) "
            "and let the worker read and write it, or set BRIDGE_ON_POISON=skip"
        )
    policy = cluster.topic_config(topic, "cleanup.policy")
    if policy is not None and policy != "compact":
        # With deletion (`delete`, or `compact,delete`) retention drops parked sessions, and a
        # restarted worker would release them silently. `talon-bridge doctor` says the same.
        return (
            f"topic {topic!r} has cleanup.policy={policy}: must be compact, or parked "
            "sessions are lost to retention"
        )
    return None


class ParkingReader(threading.Thread):
    """Reads the whole parking topic from the beginning and keeps following it."""

    def __init__(
        self,
        conf: dict[str, Any],
        topic: str,
        loop: asyncio.AbstractEventLoop,
        apply: Callable[[list[tuple[bytes, bytes | None]]], None],
    ) -> None:
        super().__init__(name="parking-reader", daemon=True)
        self._consumer = new_client(
            Consumer,
            {
                **conf,
                "group.id": f"talon-bridge-parking-{id(self)}",  # never commits; assign() only
                "logger": LIBRDKAFKA_LOGGER,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # EOF events tell when the end is reached even if compaction removed the
                # records just below the high watermark.
                "enable.partition.eof": True,
            },
        )
        self._topic = topic
        self._loop = loop
        self._apply = apply
        self._halt = threading.Event()
        self.caught_up = threading.Event()
        self.error: str | None = None

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        c = self._consumer
        try:
            md = c.list_topics(self._topic, timeout=30)
            tmd = md.topics.get(self._topic)
            if tmd is None or tmd.error is not None:
                raise _Unreadable(f"parking topic {self._topic!r} does not exist")
            parts = sorted(tmd.partitions)
            ends = {
                p: c.get_watermark_offsets(TopicPartition(self._topic, p), timeout=30)[1]
                for p in parts
            }
            c.assign([TopicPartition(self._topic, p, 0) for p in parts])
            positions = dict.fromkeys(parts, 0)
            if all(e == 0 for e in ends.values()):
                self.caught_up.set()
            while not self._halt.is_set():
                batch: list[tuple[bytes, bytes | None]] = []
                for msg in c.consume(500, 0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() != PARTITION_EOF:
                            log.warning("parking reader: %s", err)
                        continue
                    key = msg.key()
                    if key is not None:
                        batch.append((key, msg.value()))
                    positions[msg.partition() or 0] = (msg.offset() or 0) + 1
                if batch:
                    self._loop.call_soon_threadsafe(self._apply, batch)
                if not self.caught_up.is_set() and all(positions[p] >= ends[p] for p in parts):
                    # Hand the last batch over before declaring the lot complete.
                    self._loop.call_soon_threadsafe(self.caught_up.set)
        except (KafkaException, _Unreadable) as exc:  # expected: no traceback
            self.error = exc.args[0].str() if isinstance(exc, KafkaException) else str(exc)
            log.error("parking reader failed: %s", self.error)
            self.caught_up.set()
        except Exception as exc:
            self.error = str(exc)
            log.exception("parking reader failed")
            self.caught_up.set()
        finally:
            c.close()
