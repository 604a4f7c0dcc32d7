"""The consumer thread: polling, rebalance callbacks, backpressure, commits.

The consumer runs in its own thread, because librdkafka calls the rebalance callbacks from
inside `consume()`, and a revoke must block until the event loop has drained the partitions'
in-flight calls and published their effects. Everything else about a record happens on the
event loop; the threads hand over whole batches to keep the cross-thread cost per record low.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from bridge.errors import ConfigError, ConsumerFatalError
from bridge.kafka.cluster import NOT_FOUND, GroupWatch, topic_unreadable
from bridge.kafka.codes import FAIL, NO_OFFSET, PARTITION_EOF, UNKNOWN_TOPIC_CODES, retry_commit
from bridge.kafka.config import client_errors, new_client
from bridge.kafka.records import InputRecord, PartitionListener
from bridge.types import TP

__all__ = ["ConsumerThread"]

# Operators know the consumer's lines by this name; it stays as it was before the package split.
log = logging.getLogger("bridge.kafka.clients")

_TOPIC_RECHECK_S = 10.0


class ConsumerThread(threading.Thread):
    """Polls Kafka, hands batches to the loop, pauses on backpressure, commits positions."""

    def __init__(
        self,
        conf: dict[str, Any],
        topics: Sequence[str],
        listener: PartitionListener,
        loop: asyncio.AbstractEventLoop,
        *,
        max_buffered: int,
        drain_timeout: float,
        commit_interval: float,
        batch_size: int = 500,
        transactional: bool = False,
        admin_conf: dict[str, Any] | None = None,
        on_stats: Callable[[str], None] | None = None,
        on_commit_failed: Callable[[str], None] | None = None,
        on_consumed: Callable[[list[InputRecord]], None] | None = None,
        blame: Callable[[ConfigError], ConfigError] = lambda exc: exc,
    ) -> None:
        super().__init__(name="kafka-consumer", daemon=True)
        self._on_consumed = on_consumed
        if on_stats is not None:
            conf = {**conf, "stats_cb": on_stats}
        conf = {**conf, "error_cb": self._on_error, "on_commit": self._on_commit}
        self._group = str(conf["group.id"])
        self._consumer = new_client(Consumer, conf, blame=blame)
        self._topics = list(topics)
        self._listener = listener
        self._loop = loop
        self._max_buffered = max_buffered
        self._resume_below = max(1, max_buffered // 2)
        self._drain_timeout = drain_timeout
        self._commit_interval = commit_interval
        self._batch_size = batch_size
        self._transactional = transactional
        self._admin_conf = admin_conf
        self._on_commit_failed = on_commit_failed or (lambda cause: None)
        # Subscribed topics the cluster does not have: nothing is read from them, silently,
        # until they are created, so the worker reports them and is not ready meanwhile.
        self.missing_topics: frozenset[str] = frozenset()
        # When to ask the cluster again: every 10 s while a topic is missing, at once when the
        # client reports an unknown topic or partition (a topic deleted under us), else never.
        self._next_topic_check = 0.0
        # Deleted while assigned: paused until the topic is back, then read from its start.
        self._gone: set[str] = set()
        self._commits: queue.SimpleQueue[dict[TP, int]] = queue.SimpleQueue()
        self._halt = threading.Event()
        self._paused = False
        self._handed = 0  # records handed to the loop, ever
        self._held: list[Message] = []  # read, not yet handed over (inside `_poll`)
        self.assignment: set[TP] = set()
        self._group_metadata: Any = None
        # Set once the member has joined and holds its share: it has partitions, or the
        # group is stable without any for it. Until then a rollout must not stop another.
        self.settled = threading.Event()
        self._next_settle_check = math.inf
        self._group_watch: GroupWatch | None = None  # only until settled
        self.finished = threading.Event()

    # --- called from the event loop ------------------------------------------------------

    def request_commit(self, positions: dict[TP, int]) -> None:
        if positions:
            self._commits.put(positions)

    def stop(self) -> None:
        self._halt.set()

    @property
    def paused(self) -> bool:
        return self._paused

    def group_metadata(self) -> Any:
        """The group metadata for transactional offset commits, as of the last rebalance.

        Read on the consumer thread: calling into the consumer from another thread while it
        is inside consume() blocks until that call returns.
        """
        return self._group_metadata

    # --- the thread ----------------------------------------------------------------------

    def run(self) -> None:
        consumer = self._consumer
        try:
            self._subscribe()
            last_commit = time.monotonic()
            while not self._halt.is_set():
                if msgs := self._poll():
                    self._hand_over(msgs)
                self._backpressure()
                now = time.monotonic()
                if now >= self._next_topic_check:
                    self._check_topics()
                if now >= self._next_settle_check:
                    self._check_settled()
                if now - last_commit >= self._commit_interval:
                    self._group_metadata = consumer.consumer_group_metadata()
                    self._commit_pending(sync=False)
                    last_commit = now
            # Shutdown: close() revokes everything through the rebalance callback (drained
            # and committed there, while this member still belongs to the group), then
            # leaves the group, so the next owners start where this one finished. A static
            # member does not leave: its partitions wait for it, already committed.
            consumer.close()
        except Exception as exc:  # a crash here must not go unseen
            log.exception("consumer thread failed")
            fatal = ConsumerFatalError(f"consumer: {exc}")
            self._loop.call_soon_threadsafe(self._listener.on_fatal, fatal)
        finally:
            self.finished.set()

    def _hand_over(self, msgs: list[Message]) -> None:
        records: list[InputRecord] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == PARTITION_EOF:
                    continue
                if err.fatal():
                    self._loop.call_soon_threadsafe(
                        self._listener.on_fatal, ConsumerFatalError(str(err))
                    )
                    self._halt.set()
                    return
                client_errors.warning("consumer error: %s", err)
                self._note_unknown(err)
                continue
            records.append(InputRecord.from_message(msg))
        if records:
            if self._on_consumed is not None:
                self._on_consumed(records)
            self._handed += len(records)
            self._loop.call_soon_threadsafe(self._listener.on_batch, records)

    def _poll(self) -> list[Message]:
        """What is fetched; if nothing, the next record and the rest of its fetch with it."""
        msgs: list[Message] = self._consumer.consume(self._batch_size, 0)
        if not msgs and (msgs := self._consumer.consume(1, 0.1)):  # (n, t) waits for n or t
            self._held = msgs  # a rebalance callback in the next call hands these over first
            rest = self._consumer.consume(self._batch_size - 1, 0)
            msgs, self._held = self._held + rest, []
        return msgs

    def _hand_over_held(self) -> None:
        """First in every rebalance callback: records read before it reach the loop before
        its news, as they would have without the second call in `_poll`."""
        held, self._held = self._held, []
        if held:
            self._hand_over(held)

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            self._topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _check_topics(self) -> None:
        """Ask the cluster which subscribed topics we can read: at start, again every 10 s
        while not all, and whenever the client reports a topic or partition unknown.

        A topic that appears is subscribed to again, so its partitions are assigned at once
        rather than after librdkafka's next metadata refresh (5 minutes by default).
        """
        self._next_topic_check = time.monotonic() + _TOPIC_RECHECK_S
        why: dict[str, str] = {}
        try:
            for topic in self._topics:
                found = self._consumer.list_topics(topic, timeout=5).topics.get(topic)
                if (problem := topic_unreadable(found)) is not None:
                    why[topic] = problem
        except KafkaException as exc:  # the cluster did not answer: keep what we knew
            client_errors.warning("cannot check the input topics: %s", exc)
            return
        missing = set(why)
        for topic in sorted(missing - self.missing_topics):
            log.error(
                "input topic unreadable: %s; nothing is read from it",
                why[topic],
                extra={"topic": topic},
            )
            if why[topic] == NOT_FOUND:
                self._log_gone(topic)
        appeared = self.missing_topics - missing
        for topic in sorted(appeared):
            log.info("input topic exists now", extra={"topic": topic})
        self.missing_topics = frozenset(missing)
        for topic in sorted(self._gone - missing):
            self._read_new_log(topic)
        if appeared:
            self._subscribe()
        if not missing and not self._gone:
            self._next_topic_check = math.inf

    def _log_gone(self, topic: str) -> None:
        """A topic deleted under us: forget its positions, and fetch nothing until it is back.

        librdkafka keeps its fetch position across a delete and re-create (librdkafka#3255),
        so a new log that grew past it would be read from there, its first records skipped.
        """
        tps = sorted(tp for tp in self.assignment if tp[0] == topic)
        if not tps:
            return
        self._gone.add(topic)
        self._consumer.pause([TopicPartition(t, p) for t, p in tps])
        self._loop.call_soon_threadsafe(self._listener.on_log_gone, tps)

    def _read_new_log(self, topic: str) -> None:
        """Start a re-created topic's partitions from the group's offsets, else the start."""
        parts = [TopicPartition(t, p) for t, p in sorted(self.assignment) if t == topic]
        try:
            # Kafka drops a deleted topic's committed offsets, so these are normally unset.
            for tp in self._consumer.committed(parts, timeout=10) if parts else []:
                offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:  # still paused; tried again at the next check
            client_errors.warning("cannot position the re-created topic %s: %s", topic, exc)
            return
        self._gone.discard(topic)
        if parts and not self._paused:
            self._consumer.resume(parts)

    def _backpressure(self) -> None:
        # Counted here, not by the loop: the loop may not have seen the last batches yet.
        held = self._handed - self._listener.released
        stop = self._listener.intake_held
        if not self._paused and (stop or held >= self._max_buffered):
            self._set_paused(True)
        elif self._paused and not stop and held < self._resume_below:
            self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        parts = [TopicPartition(t, p) for t, p in self.assignment if t not in self._gone]
        if parts:
            (self._consumer.pause if paused else self._consumer.resume)(parts)
        self._paused = paused

    def _commit_pending(self, *, sync: bool, exclude: set[TP] | None = None) -> None:
        merged: dict[TP, int] = {}
        while True:
            try:
                merged.update(self._commits.get_nowait())
            except queue.Empty:
                break
        # Never commit for partitions we no longer own: that could rewind the new owner.
        offsets = [
            TopicPartition(t, p, o)
            for (t, p), o in merged.items()
            if (t, p) in self.assignment and (exclude is None or (t, p) not in exclude)
        ]
        if not offsets:
            return
        if not sync:
            # The outcome arrives in _on_commit.
            self._consumer.commit(offsets=offsets, asynchronous=True)
            return
        self._commit_sync(offsets)

    def _commit_sync(self, offsets: list[TopicPartition]) -> KafkaError | None:
        """One synchronous commit; the error (counted and logged) if Kafka refused it."""
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
        else:
            failed = [tp.error for tp in result or () if tp.error is not None]
            if not failed:
                return None
            err = failed[0]
        if err.code() == NO_OFFSET:
            return None
        self._commit_failed(err)
        return err

    def _commit_failed(self, err: KafkaError) -> None:
        log.warning("offset commit failed: %s", err, extra={"cause": err.name()})
        self._on_commit_failed(err.name())

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        # Asynchronous commits only (librdkafka reports synchronous ones to the caller). A
        # refused periodic commit is not sent again: it may be older than one made since, and
        # a partition's handover commits its position in any case.
        if err is None:
            err = next((tp.error for tp in partitions if tp.error is not None), None)
        if err is not None and err.code() != NO_OFFSET:
            self._commit_failed(err)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._hand_over_held()
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.assignment.update(tps)
        self._group_metadata = consumer.consumer_group_metadata()
        self._loop.call_soon_threadsafe(self._listener.on_assigned, tps)
        if self._paused and partitions:
            consumer.pause(partitions)
        if tps:
            self._settle()
        elif not self.settled.is_set():
            self._next_settle_check = 0.0  # nothing for us yet: is the group done?
        log.info("partitions assigned", extra={"partitions": [f"{t}[{p}]" for t, p in tps]})

    def _check_settled(self) -> None:
        """Joined with no partitions: settled once the group is stable with this member in
        it (more members than partitions). Asked every second until then."""
        self._next_settle_check = time.monotonic() + 1.0
        if self.settled.is_set() or self._admin_conf is None:
            self._settle()
            return
        if self._group_watch is None:
            self._group_watch = GroupWatch(self._admin_conf, self._group)
        if self._group_watch.stable_with(self._consumer.memberid()):
            self._settle()

    def _settle(self) -> None:
        self.settled.set()
        self._next_settle_check = math.inf
        self._group_watch = None

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._hand_over_held()
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self._group_metadata = consumer.consumer_group_metadata()
        self._revoke_and_commit(tps)
        log.info("partitions revoked", extra={"partitions": [f"{t}[{p}]" for t, p in tps]})

    def _revoke_and_commit(self, tps: list[TP]) -> None:
        """Hand revoked partitions over: finish their work, then commit it before returning.

        Called from the revoke callback, so no other member is given these partitions
        until it returns. A commit the group refuses while it changes is tried again until
        the drain's time is up: librdkafka takes up the new generation meanwhile."""
        if not tps:
            return
        started = time.monotonic()
        # Positions computed before the drain may be stale for these partitions; commit the rest.
        self._commit_pending(sync=True, exclude=set(tps))
        future = asyncio.run_coroutine_threadsafe(
            self._listener.drain(tps, self._drain_timeout), self._loop
        )
        try:
            positions = future.result(self._drain_timeout + 10)
        except Exception:
            log.exception("drain on revoke failed; committing nothing for revoked partitions")
            positions = {}
        deadline = started + self._drain_timeout
        if self._transactional:
            err = retry_commit(self._commit_transaction, deadline)
        else:
            offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
            err = retry_commit(lambda: self._commit_sync(offsets), deadline)
        reprocessed = self._uncommitted(positions) if err is not None else 0
        if err is not None:
            log.warning(
                "could not commit revoked partitions; their next owner redoes finished records",
                extra={"cause": err.name(), "records": reprocessed},
            )
        self._loop.call_soon_threadsafe(self._listener.release, tps, reprocessed)
        self.assignment.difference_update(tps)

    def _commit_transaction(self) -> KafkaError | None:
        metadata = self._consumer.consumer_group_metadata()
        self._group_metadata = metadata
        future = asyncio.run_coroutine_threadsafe(
            self._listener.commit_transaction(metadata), self._loop
        )
        try:
            result: KafkaError | None = future.result(self._drain_timeout + 10)
        except Exception:
            log.exception("transaction on revoke failed")
            return KafkaError(FAIL)
        return result

    def _uncommitted(self, positions: dict[TP, int]) -> int:
        """Finished records the group's committed offsets leave out: the next owner reads
        them again. Asked only after a handover commit failed."""
        parts = [TopicPartition(t, p) for t, p in positions]
        try:
            committed = self._consumer.committed(parts, timeout=5) if parts else []
        except KafkaException as exc:
            client_errors.warning("cannot read the committed offsets: %s", exc)
            return 0
        return sum(
            max(0, positions[(tp.topic, tp.partition)] - max(tp.offset, 0)) for tp in committed
        )

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._hand_over_held()
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.assignment.difference_update(tps)
        self._loop.call_soon_threadsafe(self._listener.on_lost, tps)
        log.warning("partitions lost", extra={"partitions": [f"{t}[{p}]" for t, p in tps]})

    def _note_unknown(self, err: KafkaError) -> None:
        if err.code() in UNKNOWN_TOPIC_CODES:
            self._next_topic_check = 0.0  # checked on the thread's next turn

    def _on_error(self, err: KafkaError) -> None:
        self._note_unknown(err)
        if err.fatal():
            self._loop.call_soon_threadsafe(self._listener.on_fatal, ConsumerFatalError(str(err)))
            self._halt.set()
        else:
            client_errors.warning("kafka client error: %s", err)
