"""The only module that touches confluent-kafka: client configs, the consumer thread, the producer.

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
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource  # not re-exported for typing

from bridge.errors import ConfigError, KafkaUnreachableError
from bridge.kafka.codes import PARTITION_EOF
from bridge.settings import KafkaSettings

__all__ = [
    "LIBRDKAFKA_LOGGER",
    "Cluster",
    "ConsumerThread",
    "InputRecord",
    "PartitionListener",
    "ProducerPoller",
    "consumer_config",
    "new_client",
    "producer_config",
]

C = TypeVar("C")

log = logging.getLogger(__name__)
# The clients' error callbacks: while a broker is down they fire for every reconnection
# attempt, so logging holds repeats back (see `bridge.logs.RepeatFilter`).
client_errors = logging.getLogger(f"{__name__}.errors")

# librdkafka's local error codes carry a leading underscore in the Python binding.
_NO_OFFSET = KafkaError._NO_OFFSET  # noqa: SLF001
_ALL_BROKERS_DOWN = KafkaError._ALL_BROKERS_DOWN  # noqa: SLF001
_AUTHENTICATION = KafkaError._AUTHENTICATION  # noqa: SLF001
_TOPIC_RECHECK_S = 10.0
_NOT_FOUND = "it does not exist"
# A commit refused because the group is changing under it: the member is still in the group,
# and the same commit succeeds once librdkafka holds the new generation (or member epoch).
# Until the member has revoked a partition, no other member is given it.
_GROUP_CHANGING = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.STALE_MEMBER_EPOCH,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TIMED_OUT,  # noqa: SLF001
    }
)
# How librdkafka reports a subscribed topic, or one of its partitions, gone from the cluster.
_UNKNOWN_TOPIC_CODES = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.UNKNOWN_TOPIC_ID,
        KafkaError._UNKNOWN_PARTITION,  # noqa: SLF001
        KafkaError._UNKNOWN_TOPIC,  # noqa: SLF001
    }
)

Headers = list[tuple[str, bytes]]
TP = tuple[str, int]

# librdkafka's own lines (connection failures, broker errors) go through Python logging, so
# they come out as JSON like every other line. The client hands them over on the thread that
# polls it: every client given this logger must be polled or consumed from continuously.
LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")

# Properties correctness depends on; they win over the pass-through.
_CONSUMER_ENFORCED: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "partition.assignment.strategy": "cooperative-sticky",
    "logger": LIBRDKAFKA_LOGGER,
}
_CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "max.poll.interval.ms": 300_000,
    "session.timeout.ms": 45_000,
    # Bounds librdkafka's prefetch so memory stays flat with a huge backlog.
    "queued.max.messages.kbytes": 16_384,
    "fetch.max.bytes": 16_777_216,
    "statistics.interval.ms": 15_000,
}
_PRODUCER_ENFORCED: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "logger": LIBRDKAFKA_LOGGER,
}
_PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "compression.type": "lz4",
    "delivery.timeout.ms": 120_000,
}


def new_client(factory: Callable[[dict[str, Any]], C], conf: dict[str, Any]) -> C:
    """`factory(conf)`; librdkafka refusing a property is a configuration error.

    Our own properties are fixed and valid, so a refused one came in through
    BRIDGE_KAFKA_CONFIG, and the CLI says so instead of printing a traceback.
    """
    try:
        return factory(conf)
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() == KafkaError._INVALID_ARG:  # noqa: SLF001
            raise ConfigError("BRIDGE_KAFKA_CONFIG", error.str()) from exc
        raise


# With the `consumer` group protocol (KIP-848) the broker assigns partitions and sets the
# session timeout; librdkafka refuses these client-side properties.
_CLASSIC_ONLY = ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms")


def consumer_config(settings: KafkaSettings, **extra: Any) -> dict[str, Any]:
    conf = {**_CONSUMER_DEFAULTS, **settings.librdkafka_common(), **extra}
    conf["group.id"] = settings.group_id
    conf["group.protocol"] = settings.group_protocol
    conf.update(_CONSUMER_ENFORCED)
    if settings.group_protocol == "consumer":
        for name in _CLASSIC_ONLY:
            conf.pop(name, None)
    return conf


def producer_config(settings: KafkaSettings, **extra: Any) -> dict[str, Any]:
    conf = {**_PRODUCER_DEFAULTS, **settings.librdkafka_common(), **extra}
    conf.update(_PRODUCER_ENFORCED)
    return conf


def _unreadable(found: Any) -> str | None:
    """Why a topic's metadata (None: not listed) says it cannot be read, or None.

    Other errors (a leader being elected) pass: they are transient.
    """
    code = found.error.code() if found is not None and found.error else None
    if found is None or code == KafkaError.UNKNOWN_TOPIC_OR_PART:
        return _NOT_FOUND
    if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return "the worker may not describe it"
    return None


def _unreachable(servers: str, exc: KafkaException, errors: list[KafkaError]) -> Exception:
    refused = [e for e in errors if e.code() == _AUTHENTICATION]
    if refused:
        return KafkaUnreachableError(servers, refused[-1].str(), credentials_refused=True)
    reasons = [e.str() for e in errors if e.code() != _ALL_BROKERS_DOWN]
    error = exc.args[0]
    fallback = error.str() if isinstance(error, KafkaError) else str(exc)
    return KafkaUnreachableError(servers, reasons[0] if reasons else fallback)


@dataclass(slots=True)
class InputRecord:
    """A consumed record, detached from librdkafka's Message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    timestamp_ms: int

    @classmethod
    def from_message(cls, msg: Message) -> InputRecord:
        topic = msg.topic()
        partition = msg.partition()
        offset = msg.offset()
        if topic is None or partition is None or offset is None:
            raise ValueError("consumed message without coordinates")
        raw_headers = msg.headers()
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            key=msg.key(),
            value=msg.value(),
            headers=_as_header_list(raw_headers) if raw_headers else None,
            timestamp_ms=msg.timestamp()[1],
        )


def _as_header_list(raw: Any) -> Headers:
    # A consumed message's headers are always a list of (str, bytes | None).
    return [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in raw]


class PartitionListener(Protocol):
    """What the consumer thread tells the event loop, and asks of it."""

    def on_batch(self, records: list[InputRecord]) -> None: ...

    def on_assigned(self, partitions: list[TP]) -> None: ...

    async def drain(self, partitions: list[TP], timeout: float) -> dict[TP, int]:
        """Finish what the partitions hold; their positions (they stay tracked)."""
        ...

    async def commit_transaction(self, group_metadata: Any) -> KafkaError | None:
        """Exactly-once: commit held outputs with their offsets; the error if it aborted."""
        ...

    def release(self, partitions: list[TP], reprocessed: int) -> None:
        """The partitions have left this worker; `reprocessed` finished records of theirs
        are not covered by the group's committed offsets."""
        ...

    def on_lost(self, partitions: list[TP]) -> None: ...

    def on_log_gone(self, partitions: list[TP]) -> None:
        """The partitions' topic was deleted: positions read from it must never be committed."""
        ...

    def on_fatal(self, error: str) -> None: ...

    @property
    def released(self) -> int:
        """How many handed-over records the loop no longer holds (finished, dropped, skipped)."""
        ...

    @property
    def intake_held(self) -> bool:
        """True while nothing new should be read (an API outage, a rejected key)."""
        ...


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
    ) -> None:
        super().__init__(name="kafka-consumer", daemon=True)
        if on_stats is not None:
            conf = {**conf, "stats_cb": on_stats}
        conf = {**conf, "error_cb": self._on_error, "on_commit": self._on_commit}
        self._group = str(conf["group.id"])
        self._consumer = new_client(Consumer, conf)
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
        self.assignment: set[TP] = set()
        self._group_metadata: Any = None
        # Set once the member has joined and holds its share: it has partitions, or the
        # group is stable without any for it. Until then a rollout must not stop another.
        self.settled = threading.Event()
        self._next_settle_check = math.inf
        self._admin: Any = None  # asks whether the group is stable; only until settled
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
                # Take what is already fetched without waiting; only when nothing is there,
                # wait for the next record (consume(n, t) would wait for n records or t).
                msgs = consumer.consume(self._batch_size, 0) or consumer.consume(1, 0.1)
                if msgs:
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
            # leaves the group, so the next owners start where this one finished.
            consumer.close()
        except Exception as exc:  # a crash here must not go unseen
            log.exception("consumer thread failed")
            self._loop.call_soon_threadsafe(self._listener.on_fatal, f"consumer: {exc}")
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
                    self._loop.call_soon_threadsafe(self._listener.on_fatal, str(err))
                    self._halt.set()
                    return
                client_errors.warning("consumer error: %s", err)
                self._note_unknown(err)
                continue
            records.append(InputRecord.from_message(msg))
        if records:
            self._handed += len(records)
            self._loop.call_soon_threadsafe(self._listener.on_batch, records)

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
                if (problem := _unreadable(found)) is not None:
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
            if why[topic] == _NOT_FOUND:
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
        if err.code() == _NO_OFFSET:
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
        if err is not None and err.code() != _NO_OFFSET:
            self._commit_failed(err)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
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
        from confluent_kafka import ConsumerGroupState
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = new_client(AdminClient, {**self._admin_conf, "logger": LIBRDKAFKA_LOGGER})
        try:
            futures = self._admin.describe_consumer_groups([self._group])
            found = futures[self._group].result(timeout=5)
        except KafkaException as exc:
            client_errors.warning("cannot describe the consumer group: %s", exc)
            return
        finally:
            self._admin.poll(0)  # hands its log lines over
        me = self._consumer.memberid()
        if found.state == ConsumerGroupState.STABLE and any(
            m.member_id == me for m in found.members
        ):
            self._settle()

    def _settle(self) -> None:
        self.settled.set()
        self._next_settle_check = math.inf
        self._admin = None

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
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
            err = self._with_retries(self._commit_transaction, deadline)
        else:
            offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
            err = self._with_retries(lambda: self._commit_sync(offsets), deadline)
        reprocessed = self._uncommitted(positions) if err is not None else 0
        if err is not None:
            log.warning(
                "could not commit revoked partitions; their next owner redoes finished records",
                extra={"cause": err.name(), "records": reprocessed},
            )
        self._loop.call_soon_threadsafe(self._listener.release, tps, reprocessed)
        self.assignment.difference_update(tps)

    def _with_retries(
        self, attempt: Callable[[], KafkaError | None], deadline: float
    ) -> KafkaError | None:
        delay = 0.1
        while True:
            err = attempt()
            if err is None or err.code() not in _GROUP_CHANGING:
                return err
            if time.monotonic() + delay > deadline:
                return err
            time.sleep(delay)  # the group settles meanwhile; nothing else runs here
            delay = min(1.0, delay * 2)

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
            return KafkaError(KafkaError._FAIL)  # noqa: SLF001
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
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.assignment.difference_update(tps)
        self._loop.call_soon_threadsafe(self._listener.on_lost, tps)
        log.warning("partitions lost", extra={"partitions": [f"{t}[{p}]" for t, p in tps]})

    def _note_unknown(self, err: KafkaError) -> None:
        if err.code() in _UNKNOWN_TOPIC_CODES:
            self._next_topic_check = 0.0  # checked on the thread's next turn

    def _on_error(self, err: KafkaError) -> None:
        self._note_unknown(err)
        if err.fatal():
            self._loop.call_soon_threadsafe(self._listener.on_fatal, str(err))
            self._halt.set()
        else:
            client_errors.warning("kafka client error: %s", err)


Delivered = tuple[Any, KafkaError | None]


class ProducerPoller(threading.Thread):
    """Owns the producer's poll loop; delivery reports reach the event loop in batches."""

    def __init__(
        self,
        producer: Producer,
        loop: asyncio.AbstractEventLoop,
        on_delivered: Callable[[list[Delivered]], None],
    ) -> None:
        super().__init__(name="kafka-producer", daemon=True)
        self.producer = producer
        self._loop = loop
        self._on_delivered = on_delivered
        self._batch: list[Delivered] = []
        self._halt = threading.Event()

    def callback(self, token: Any) -> Callable[[KafkaError | None, Message], None]:
        batch = self._batch

        def report(err: KafkaError | None, _msg: Message) -> None:
            batch.append((token, err))

        return report

    def run(self) -> None:
        while not self._halt.is_set():
            self.producer.poll(0.05)
            self._flush_batch()
        self.producer.flush(30)
        self._flush_batch()

    def _flush_batch(self) -> None:
        if self._batch:
            batch, self._batch[:] = list(self._batch), []
            self._loop.call_soon_threadsafe(self._on_delivered, batch)

    def stop(self) -> None:
        self._halt.set()


# How long a command waits at start for any broker to answer before it says it cannot reach
# them; a brief outage then ends in a restart, not in a worker that waits without saying why.
REACH_TIMEOUT_S = 10.0


class Cluster:
    """The cluster's metadata, asked once through an admin client (`admin`, `metadata`).

    Raises `KafkaUnreachableError` when no broker answers within `timeout`.
    """

    def __init__(self, conf: dict[str, Any], timeout: float = REACH_TIMEOUT_S) -> None:
        self._timeout = timeout
        # Why a connection failed (refused, unresolvable, authentication) only reaches the
        # error callback; the metadata error itself says "Broker transport failure".
        errors: list[KafkaError] = []
        self.admin = new_client(
            AdminClient, {**conf, "logger": LIBRDKAFKA_LOGGER, "error_cb": errors.append}
        )
        try:
            self.metadata = self.admin.list_topics(timeout=timeout)
        except KafkaException as exc:
            self.admin.poll(0)  # serves the error callback and hands queued lines to the logger
            raise _unreachable(str(conf["bootstrap.servers"]), exc, errors) from None
        self.admin.poll(0)

    def topic_problem(self, topic: str) -> str | None:
        """Why the worker cannot use `topic` as the cluster describes it, or None."""
        return _unreadable(self.metadata.topics.get(topic))

    def topic_config(self, topic: str, name: str) -> str | None:
        """One configuration value of a topic; None when the worker may not describe it."""
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        try:
            future = self.admin.describe_configs([resource], request_timeout=self._timeout)
            entries = future[resource].result(self._timeout)
        except KafkaException as exc:
            client_errors.warning("cannot describe topic %s: %s", topic, exc.args[0].str())
            return None
        entry = entries.get(name)
        return None if entry is None else str(entry.value)
