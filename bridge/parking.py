"""Session parking: once a session has a dead letter, its later commands follow it there.

Applying a session's later commands while an earlier one is missing would corrupt its state
at Talon.One (a return before its close, an old cart after a new one). So in `park` mode the
worker diverts them, in order, to the dead-letter topic, marked as parked behind the poison
record. The parked set lives in a compacted topic, keyed by session ID (a tombstone releases),
so it survives restarts and follows partitions across rebalances: every worker reads the whole
topic. A session is released when its poison record comes back through `talon-bridge replay`
(header `__talon.bridge.replay.of` naming the poison's coordinates), or by a tombstone that
`replay --discard` writes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from bridge.kafka_io import LIBRDKAFKA_LOGGER, new_client

__all__ = ["ParkedSession", "ParkingLot", "ParkingReader", "encode_parked"]

log = logging.getLogger(__name__)

_PARTITION_EOF = KafkaError._PARTITION_EOF  # noqa: SLF001


@dataclass(frozen=True, slots=True)
class ParkedSession:
    poison: str  # topic/partition/offset of the record that failed
    since_ms: int
    reason: str
    event_id: str | None = None


def encode_parked(p: ParkedSession) -> bytes:
    return orjson.dumps(
        {"poison": p.poison, "since": p.since_ms, "reason": p.reason, "eventId": p.event_id}
    )


def _decode_parked(value: bytes) -> ParkedSession | None:
    try:
        d = orjson.loads(value)
        return ParkedSession(
            str(d["poison"]), int(d["since"]), str(d.get("reason", "")), d.get("eventId")
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class ParkingLot:
    """The parked sessions, as this worker knows them. Owned by the event loop."""

    def __init__(self) -> None:
        self._parked: dict[bytes, ParkedSession] = {}

    def __len__(self) -> int:
        return len(self._parked)

    def get(self, session: bytes) -> ParkedSession | None:
        return self._parked.get(session)

    def park(self, session: bytes, parked: ParkedSession) -> bool:
        """Park `session`; False when it already was (the first poison stays the reference)."""
        if session in self._parked:
            return False
        self._parked[session] = parked
        return True

    def release(self, session: bytes) -> ParkedSession | None:
        return self._parked.pop(session, None)

    def apply(self, session: bytes, value: bytes | None) -> None:
        """Apply one record of the parking topic (a tombstone releases)."""
        if value is None:
            self._parked.pop(session, None)
            return
        parked = _decode_parked(value)
        if parked is None:
            log.warning("unreadable parking record ignored")
            return
        self._parked[session] = parked

    def oldest_age(self, now: float | None = None) -> float:
        if not self._parked:
            return 0.0
        oldest = min(p.since_ms for p in self._parked.values())
        return max(0.0, (now or time.time()) - oldest / 1000)


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
                raise RuntimeError(f"parking topic {self._topic!r} does not exist")
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
                        if err.code() != KafkaError._PARTITION_EOF:  # noqa: SLF001
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
        except Exception as exc:
            self.error = str(exc)
            log.exception("parking reader failed")
            self.caught_up.set()
        finally:
            c.close()
