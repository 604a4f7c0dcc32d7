"""The Kafka side of `talon-bridge replay`: read a fixed DLQ snapshot, send, commit progress.

`DlqReader` fixes the stop point first (the high watermark of every DLQ partition), then reads
up to it and no further, so a run never chases its own output or dead letters that arrive
while it runs. It also reads the replay group's committed offsets (where an earlier run of
the same selection stopped) and commits new ones; it never joins the group (`assign` only).

`Sender` re-sends planned records with an idempotent producer (acks=all); a record's DLQ
offset becomes committable only once its send is acknowledged (`CommitTracker`). SIGINT or
SIGTERM stops it between chains (a poison and its parked records always go out together),
then it waits for the acknowledgements and commits; a second signal stops waiting.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

from bridge.avro.codec import Codec
from bridge.errors import BridgeError, ReadError, SelectionError
from bridge.kafka.dlq_reader import GroupReader
from bridge.kafka.errors import KafkaError, KafkaException
from bridge.kafka.producer import produce, settings_producer
from bridge.kafka.records import InputRecord
from bridge.logs import where
from bridge.replay.plan import Planned
from bridge.replay.progress import CommitTracker
from bridge.replay.records import DeadLetterRecord, replay_headers
from bridge.settings import KafkaSettings

__all__ = ["DlqReader", "ReadError", "SendResult", "Sender", "Snapshot", "Stopper"]

log = logging.getLogger(__name__)

_COMMIT_EVERY_S = 1.0
_PROGRESS_EVERY_S = 5.0


@dataclass(slots=True)
class Snapshot:
    """What one run works on: the DLQ records up to the stop point, and the group's progress."""

    records: list[DeadLetterRecord]
    start: dict[int, int]  # per partition: first offset the group has not handled
    end: dict[int, int]  # per partition: the stop point that was read up to


class DlqReader:
    """Reads one DLQ topic for one replay group, and commits that group's progress."""

    def __init__(self, settings: KafkaSettings, topic: str, group: str, codec: Codec) -> None:
        self.topic = topic
        self.group = group
        self._codec = codec
        self._reader = GroupReader(settings, group)

    def close(self) -> None:
        self._reader.close()

    def partitions(self, topic: str) -> int | None:
        """How many partitions `topic` has; None when it does not exist."""
        return self._reader.partitions(topic)

    def snapshot(
        self,
        ranges: Mapping[int, tuple[int, int | None]] | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> Snapshot:
        """Fix the stop point, then read every record before it (within `ranges`).

        Raises:
            SelectionError: The topic, or a partition named in `ranges`, does not exist.
            ReadError: The records could not be read, or `stop` was set meanwhile.
        """
        count = self.partitions(self.topic)
        if count is None:
            raise SelectionError(f"topic {self.topic!r} does not exist")
        parts = list(range(count))
        if ranges is not None:
            missing = sorted(set(ranges) - set(parts))
            if missing:
                raise SelectionError(
                    f"--offsets: {self.topic!r} has no partition {missing[0]} "
                    f"(partitions 0-{count - 1})"
                )
            parts = sorted(ranges)
        marks = self._reader.watermarks(self.topic, parts)
        committed = self._reader.committed(self.topic, parts)
        first: dict[int, int] = {}
        until: dict[int, int] = {}
        for p, (low, high) in marks.items():
            lo, hi = ranges.get(p, (0, None)) if ranges is not None else (0, None)
            first[p] = max(low, lo)
            until[p] = high if hi is None else min(high, hi + 1)
            if committed.get(p, 0) > high:
                log.warning(
                    "the replay group's offset is past the end of the partition; was the "
                    "topic recreated? Use --group to start afresh",
                    extra={"where": where(self.topic, p, committed[p]), "group": self.group},
                )
        start = {p: committed.get(p, marks[p][0]) for p in parts}
        log.info(
            "reading the dead-letter topic up to its stop point",
            extra={
                "topic": self.topic,
                "group": self.group,
                # Per partition, as text: JSON log lines need string keys.
                "stop": {str(p): until[p] for p in parts},
                "resume": {str(p): o for p, o in start.items()},
            },
        )
        records: list[DeadLetterRecord] = []

        def take(rec: InputRecord) -> None:
            records.append(self._record(rec, keep_value=rec.offset >= start[rec.partition]))

        end = self._reader.read(self.topic, first, until, take, stop)
        return Snapshot(records=records, start=start, end=end)

    def _record(self, rec: InputRecord, *, keep_value: bool) -> DeadLetterRecord:
        value = rec.value
        command_type, event_id = "unknown", None
        try:
            cmd = self._codec.decode_command(value)
            command_type, event_id = cmd.command_type, cmd.event_id
        except (BridgeError, ValueError):
            pass  # listed and replayed like any other record, as command type "unknown"
        return DeadLetterRecord.build(
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            timestamp_ms=rec.timestamp_ms,
            key=rec.key,
            # Records an earlier run already handled are kept for their headers only.
            value=value if keep_value else None,
            headers=rec.headers or [],
            command_type=command_type,
            event_id=event_id,
        )

    def commit(self, positions: Mapping[int, int]) -> None:
        """Commit the replay group's positions (synchronously)."""
        self._reader.commit(self.topic, positions)


class Stopper:
    """SIGINT/SIGTERM: the first asks to stop after the current chain, the second to hurry."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hurry = threading.Event()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop.is_set():
            log.warning("second signal: not waiting for acknowledgements any more")
            self.hurry.set()
            return
        log.warning(
            "stopping: finishing the current session, then committing what was acknowledged",
            extra={"signal": signal.Signals(signum).name},
        )
        self.stop.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Stopper]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach the main thread only
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


@dataclass(slots=True)
class SendResult:
    """What happened to each record handed to `Sender`."""

    acked: set[tuple[int, int]] = field(default_factory=set)
    failed: dict[tuple[int, int], str] = field(default_factory=dict)
    released: int = 0  # sessions whose tombstone was acknowledged
    interrupted: bool = False
    error: str | None = None


class Sender:
    """Sends planned records (or parking tombstones) and commits progress as acks arrive."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        commit: Callable[[Mapping[int, int]], None],
        tracker: CommitTracker,
        stopper: Stopper,
        on_ack: Callable[[int], None] | None = None,
        log_progress: bool = True,
    ) -> None:
        self._producer = settings_producer(settings)
        self._commit = commit
        self._tracker = tracker
        self._stopper = stopper
        self._on_ack = on_ack
        self._log_progress = log_progress
        self._next_commit = 0.0
        self._last_commit: dict[int, int] = {}
        self._route_header: str | None = None
        self.result = SendResult()

    # --- replay ----------------------------------------------------------------------------

    def replay(
        self,
        items: Sequence[Planned],
        *,
        replay_id: str,
        rate: float | None,
        route_header: str | None = None,
    ) -> None:
        """Send `items` in order, `rate` records per second at most, chains back-to-back;
        with `route_header`, each names the application it went to (`replay_headers`)."""
        self._route_header = route_header
        for it in items:
            self._tracker.hold(*it.record.position)
        started = time.monotonic()
        last_log = started
        sent = 0
        for chain in _chains(items):
            if self._stopper.stop.is_set() or self.result.error is not None:
                self.result.interrupted = self._stopper.stop.is_set()
                break
            if rate:
                self._wait_until(started + sent / rate)
                if self._stopper.stop.is_set():
                    self.result.interrupted = True
                    break
            for it in chain:
                self._produce_record(it, replay_id)
                sent += 1
            self._producer.poll(0)
            self._tick()
            if self._log_progress and time.monotonic() - last_log >= _PROGRESS_EVERY_S:
                log.info(
                    "replay progress",
                    extra={"sent": sent, "acknowledged": len(self.result.acked), "of": len(items)},
                )
                last_log = time.monotonic()
        self._drain()
        self._commit_progress()

    def _tick(self) -> None:
        """Commit what is acknowledged, at most every `_COMMIT_EVERY_S`."""
        now = time.monotonic()
        if now >= self._next_commit:
            self._commit_progress()
            self._next_commit = now + _COMMIT_EVERY_S

    def _wait_until(self, due: float) -> None:
        while not self._stopper.stop.is_set():
            delay = due - time.monotonic()
            if delay <= 0:
                return
            self._producer.poll(min(delay, 0.1))
            self._tick()

    def _produce_record(self, it: Planned, replay_id: str) -> None:
        r = it.record
        if it.target is None:
            raise ValueError("a record to replay has no target topic")
        pos = r.position
        headers: list[tuple[str, str | bytes | None]] = [
            *replay_headers(r, replay_id=replay_id, route_header=self._route_header)
        ]

        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is None:
                self._tracker.release(*pos)
                self.result.acked.add(pos)
                if self._on_ack is not None:
                    self._on_ack(1)
                return
            self.result.failed[pos] = str(err)
            if self.result.error is None:
                self.result.error = f"{where(r.topic, *pos)} -> {it.target}: {err}"
                log.error(
                    "a replayed record was not delivered; stopping",
                    extra={"where": where(r.topic, *pos), "target": it.target, "error": str(err)},
                )

        produce(
            self._producer,
            it.target,
            value=r.value,
            key=r.key,
            headers=headers,
            partition=it.target_partition,
            on_delivery=delivered,
        )

    # --- discard ---------------------------------------------------------------------------

    def discard(self, items: Sequence[Planned], releases: Sequence[bytes], parking: str) -> None:
        """Release `releases` with tombstones; once acknowledged, `items` count as handled."""
        for it in items:
            self._tracker.hold(*it.record.position)
        failures: list[str] = []

        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                failures.append(str(err))
            else:
                self.result.released += 1

        for key in releases:
            produce(self._producer, parking, key=key, value=None, on_delivery=delivered)
        self._drain()
        if failures or self.result.released < len(releases):
            self.result.error = f"parking tombstones not delivered: {failures[:1] or 'timeout'}"
            log.error("could not release the sessions; nothing committed", extra={"topic": parking})
            return
        for it in items:
            self._tracker.release(*it.record.position)
        self._commit_progress()

    # --- common ----------------------------------------------------------------------------

    def _drain(self) -> None:
        """Wait for every acknowledgement, unless told to hurry."""
        while len(self._producer) > 0 and not self._stopper.hurry.is_set():
            self._producer.flush(0.5)
        if len(self._producer) > 0:
            self._producer.purge()
            self._producer.flush(0)

    def _commit_progress(self) -> None:
        positions = self._tracker.positions()
        changed = {p: o for p, o in positions.items() if self._last_commit.get(p) != o}
        if not changed:
            return
        try:
            self._commit(changed)
            self._last_commit.update(changed)
        except KafkaException as exc:
            log.error("could not commit replay progress", extra={"error": str(exc)})
            if self.result.error is None:
                self.result.error = f"commit failed: {exc}"


def _chains(items: Sequence[Planned]) -> Iterator[list[Planned]]:
    """Consecutive items of one chain (a poison and its parked records) together."""
    chain: list[Planned] = []
    for it in items:
        if chain and it.chain != chain[0].chain:
            yield chain
            chain = []
        chain.append(it)
    if chain:
        yield chain
