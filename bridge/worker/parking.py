"""Session parking: once a session has a dead letter, its later commands follow it there.

Applying a session's later commands while an earlier one is missing would corrupt its state
at Talon.One (a return before its close, an old cart after a new one). So in `park` mode the
worker diverts them, in order, to the dead-letter topic, marked as parked behind the poison
record. The parked set lives in a compacted topic, keyed by session ID (a tombstone releases),
so it survives restarts and follows partitions across rebalances: every worker reads the whole
topic.

A parked session is a *chain*: the poison (position 0) and every record diverted behind it
(1, 2, ...). Each chain record's dead letter carries its position and a token, an HMAC of the
position, its source coordinates and its value under a secret drawn when the session was
parked; the secret lives only in the parking topic. `talon-bridge replay` copies position and
token into the re-sent record. While the session is parked, only the chain's next record runs
(one that already ran may run again: Talon.One's Idempotency-Key makes that a no-op); a chain
record out of turn, or one that fails again, is dead-lettered at its own place; any other
record, live or forged, goes to the end of the chain. The session is released once its last
record is back, or by a tombstone that `replay --discard` writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from bridge.kafka.clients import LIBRDKAFKA_LOGGER, Cluster, new_client

__all__ = ["ParkedSession", "ParkingLot", "ParkingReader", "encode_parked", "parking_topic_problem"]

log = logging.getLogger(__name__)

_PARTITION_EOF = KafkaError._PARTITION_EOF  # noqa: SLF001


@dataclass(frozen=True, slots=True)
class ParkedSession:
    """A parked session's chain. `secret` is None for entries written before chains existed."""

    poison: str  # topic/partition/offset of the record that failed
    since_ms: int
    reason: str
    event_id: str | None = None
    secret: str | None = None  # hex; keys the tokens of the chain's records
    size: int = 1  # records in the chain, the poison included
    next: int = 0  # position of the chain record due back next

    @classmethod
    def new(cls, poison: str, reason: str, event_id: str | None) -> ParkedSession:
        return cls(poison, int(time.time() * 1000), reason, event_id, secrets.token_hex(16))

    def token(self, position: int, source: str, value: bytes | None) -> str:
        """The token of the chain record at `position`, consumed at `source` with `value`."""
        if self.secret is None:
            return ""
        mac = hmac.new(bytes.fromhex(self.secret), digestmod=hashlib.sha256)
        mac.update(f"{position}|{source}|".encode())
        mac.update(value or b"")
        return mac.hexdigest()[:32]

    def position_of(
        self, of: str | None, position: str | None, token: str | None, value: bytes | None
    ) -> int | None:
        """The chain position a re-sent record proves with its replay headers, or None."""
        if self.secret is None or of is None or position is None or token is None:
            return None
        try:
            pos = int(position)
        except ValueError:
            return None
        if not 0 <= pos < self.size:
            return None
        return pos if hmac.compare_digest(token, self.token(pos, of, value)) else None

    def appended(self) -> ParkedSession:
        return dataclasses.replace(self, size=self.size + 1)

    def advanced(self) -> ParkedSession:
        return dataclasses.replace(self, next=self.next + 1)


def encode_parked(p: ParkedSession) -> bytes:
    return orjson.dumps(
        {
            "poison": p.poison,
            "since": p.since_ms,
            "reason": p.reason,
            "eventId": p.event_id,
            "secret": p.secret,
            "size": p.size,
            "next": p.next,
        }
    )


def _decode_parked(value: bytes) -> ParkedSession | None:
    try:
        d = orjson.loads(value)
        secret = d.get("secret")
        return ParkedSession(
            str(d["poison"]),
            int(d["since"]),
            str(d.get("reason", "")),
            d.get("eventId"),
            str(secret) if secret is not None else None,
            int(d.get("size", 1)),
            int(d.get("next", 0)),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class ParkingLot:
    """The parked sessions, as this worker knows them. Owned by the event loop.

    The worker's own writes come back through the reader, behind its in-memory state; they
    are counted out so that an echo never rolls a chain back (a stale size would hand out a
    position twice). Records of other writers still apply.
    """

    def __init__(self) -> None:
        self._parked: dict[bytes, ParkedSession] = {}
        self._echoes: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._parked)

    def get(self, session: bytes) -> ParkedSession | None:
        return self._parked.get(session)

    def put(self, session: bytes, parked: ParkedSession) -> None:
        """Set the session's chain; the caller writes it to the parking topic."""
        self._parked[session] = parked
        self._echoes[session] = self._echoes.get(session, 0) + 1

    def release(self, session: bytes) -> ParkedSession | None:
        """Release the session; the caller writes the tombstone to the parking topic."""
        self._echoes[session] = self._echoes.get(session, 0) + 1
        return self._parked.pop(session, None)

    def apply(self, session: bytes, value: bytes | None) -> None:
        """Apply one record of the parking topic (a tombstone releases)."""
        echoes = self._echoes.get(session, 0)
        if echoes:
            if echoes == 1:
                del self._echoes[session]
            else:
                self._echoes[session] = echoes - 1
            return
        if value is None:
            self._parked.pop(session, None)
            return
        parked = _decode_parked(value)
        if parked is None:
            log.warning("unreadable parking record ignored")
            return
        self._parked[session] = parked

    def waiting(self) -> int:
        """Chain records not back yet, over all parked sessions."""
        return sum(p.size - p.next for p in self._parked.values())

    def oldest_age(self, now: float | None = None) -> float:
        if not self._parked:
            return 0.0
        oldest = min(p.since_ms for p in self._parked.values())
        return max(0.0, (now or time.time()) - oldest / 1000)


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
