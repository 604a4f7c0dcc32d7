"""The worker's producer: building it, sending with delivery reports, and transactions.

Delivery failures and aborted transactions leave here as plain values, so the worker's
output policy (`bridge.worker.output`) never handles librdkafka's types itself.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from bridge.errors import KafkaFatalError, OutputTooLargeError
from bridge.kafka.config import DEFAULT_MESSAGE_MAX_BYTES, message_max_bytes, producer_config
from bridge.kafka.producer import ProducerPoller, produce, settings_producer, wire_size
from bridge.settings import KafkaSettings, Settings
from bridge.types import TP

__all__ = [
    "BATCH_OVERHEAD",
    "Delivered",
    "DeliveryError",
    "OutputHeaders",
    "RecordLimits",
    "Sender",
    "TransactionError",
    "Transactions",
    "worker_producer",
    "worker_transactions",
]

log = logging.getLogger(__name__)

OutputHeaders = list[tuple[str, str | bytes | None]]
# Sends run on the event loop, which a full local queue blocks while it drains.
_LOOP_POLL_TIMEOUT = 0.01
# Why a transaction aborted, as the consumer thread's handover retries expect it.
TransactionError = KafkaError
# A v2 record batch's header: the broker counts it against a topic's max.message.bytes.
BATCH_OVERHEAD = 61
# Each produced topic's max.message.bytes as last read; a topic missing was not described.
RecordLimits = Mapping[str, int]
_DEFAULT_BATCH_SIZE = 1_000_000  # librdkafka's batch.size


@dataclass(frozen=True, slots=True)
class DeliveryError:
    """A record the producer could not deliver."""

    reason: str  # librdkafka's words
    detail: str  # with the error's name and code
    fatal: bool  # the producer cannot go on
    too_large: bool = False  # the broker refused it as larger than the topic takes


# (the token given to `Sender.send`, None or why it failed)
Delivered = tuple[Any, DeliveryError | None]


def _fits(limits: RecordLimits, topic: str, size: int) -> bool:
    """Whether a record of wire size `size` fits `topic` alone (True when its limit is unknown)."""
    limit = limits.get(topic)
    return limit is None or size + BATCH_OVERHEAD <= limit


def batch_cap(settings: KafkaSettings, limits: RecordLimits) -> int | None:
    """The batch.size that keeps every batch of more than one record within the smallest
    produced topic's limit, or None when the configured one already does.

    librdkafka never splits a batch the broker refuses as too large, so the refusal falls on
    every record in it. Capped, a batch the broker refuses holds one record, too large alone.
    """
    if not limits:
        return None
    configured = int(producer_config(settings).get("batch.size", _DEFAULT_BATCH_SIZE))
    cap = max(1, min(limits.values()) - BATCH_OVERHEAD)
    return cap if cap < configured else None


def worker_producer(settings: Settings, limits: RecordLimits | None = None) -> Producer:
    """The worker's producer (transactional with `BRIDGE_EXACTLY_ONCE`), its batches within
    the `limits` of the topics it produces to."""
    extra: dict[str, Any] = {}
    limits = limits or {}
    cap = batch_cap(settings, limits)
    if cap is not None:
        extra["batch.size"] = cap
        topic = min(limits, key=limits.__getitem__)
        log.info(
            "producer batches capped under a topic's max.message.bytes",
            extra={"batch_size": cap, "topic": topic, "max_message_bytes": limits[topic]},
        )
    if settings.exactly_once:
        extra |= {
            "transactional.id": settings.transactional_id
            or f"{settings.group_id}-{uuid.uuid4().hex[:12]}",
            # An abandoned transaction (a crashed worker) blocks read_committed readers
            # until it times out: keep that short.
            "transaction.timeout.ms": 15_000,
            "delivery.timeout.ms": 15_000,  # librdkafka requires <= transaction timeout
        }
    return settings_producer(settings, **extra)


class Sender:
    """Produces records; their delivery reports reach `on_delivered` on the event loop, in
    batches, from the producer's poll thread."""

    def __init__(
        self,
        producer: Producer,
        loop: asyncio.AbstractEventLoop,
        limits: RecordLimits | None = None,
    ) -> None:
        self.producer = producer
        self._limits = limits if limits is not None else {}  # shared: read again as it runs
        self.on_delivered: Callable[[list[Delivered]], None] = lambda batch: None
        self._poller = ProducerPoller(producer, loop, self._delivered)

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: OutputHeaders | None,
        token: Any,
    ) -> None:
        """Raises `OutputTooLargeError` for a record the producer will never take."""
        try:
            produce(
                self.producer,
                topic,
                value=value,
                key=key,
                headers=headers,
                on_delivery=self._poller.callback(token),
                poll_timeout=_LOOP_POLL_TIMEOUT,
            )
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                raise OutputTooLargeError(err.str()) from None
            raise

    def over_limit(
        self, topic: str, key: bytes | None, value: bytes | None, headers: OutputHeaders | None
    ) -> bool:
        """Whether the record is larger than `topic`'s limit as last read (False when
        unknown). One that the topic refused as too large and is over it will never fit: its
        batch held it alone (`batch_cap`). One under it means the limit was lowered since."""
        return topic in self._limits and not _fits(
            self._limits, topic, wire_size(key, value, headers)
        )

    def _delivered(self, batch: list[tuple[Any, KafkaError | None]]) -> None:
        if any(err is not None for _, err in batch):
            self.on_delivered(
                [(token, None if e is None else _delivery_error(e)) for token, e in batch]
            )
        else:
            self.on_delivered(cast(list[Delivered], batch))

    def start(self) -> None:
        self._poller.start()

    def stop(self) -> None:
        """Stop polling once the producer has flushed what it holds."""
        self._poller.stop()

    def join(self) -> None:
        self._poller.join()


def _delivery_error(e: KafkaError) -> DeliveryError:
    too_large = e.code() == KafkaError.MSG_SIZE_TOO_LARGE
    return DeliveryError(e.str(), str(e), e.fatal(), too_large)


class Transactions:
    """The producer's transaction calls; every one blocks, so callers run them in a thread."""

    def __init__(
        self,
        producer: Producer,
        timeout: float = 30.0,
        max_bytes: int = DEFAULT_MESSAGE_MAX_BYTES,
        limits: RecordLimits | None = None,
    ) -> None:
        self._producer = producer
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._limits = limits if limits is not None else {}  # shared: read again as it runs

    def check(
        self, topic: str, key: bytes | None, value: bytes | None, headers: OutputHeaders | None
    ) -> None:
        """Raises `OutputTooLargeError` for a record the producer or `topic` would refuse, as
        it is held: at commit the refusal would fail every record of the transaction.

        The topic's limit is checked against the uncompressed size, so with compression a
        record that would have fit compressed can be refused here."""
        size = wire_size(key, value, headers)
        if size > self._max_bytes:
            raise OutputTooLargeError(
                f"Message size too large: {size} bytes over message.max.bytes {self._max_bytes}"
            )
        if not _fits(self._limits, topic, size):
            raise OutputTooLargeError(
                f"Message size too large: {size} bytes over {topic}'s max.message.bytes "
                f"{self._limits[topic]} with the batch header"
            )

    def start(self) -> None:
        self._producer.init_transactions(self._timeout)
        self._producer.begin_transaction()

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: OutputHeaders | None
    ) -> None:
        produce(
            self._producer,
            topic,
            value=value,
            key=key,
            headers=headers,
            poll_timeout=_LOOP_POLL_TIMEOUT,
        )

    def commit(self, positions: dict[TP, int], group_metadata: Any) -> TransactionError | None:
        """Commit what was sent with `positions`, and begin the next transaction. Returns why
        it must be aborted (abortable, or timed out), or None; raises `KafkaFatalError`."""
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            if offsets:
                self._producer.send_offsets_to_transaction(offsets, group_metadata, self._timeout)
            self._producer.commit_transaction(self._timeout)
            self._producer.begin_transaction()
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.fatal():
                raise KafkaFatalError(f"transaction: {err}") from exc
            return err
        return None

    def abort(self) -> None:
        try:
            self._producer.abort_transaction(self._timeout)
        finally:
            self._producer.begin_transaction()


def worker_transactions(
    producer: Producer, settings: Settings, limits: RecordLimits | None = None
) -> Transactions:
    """The transaction calls of the worker's producer."""
    return Transactions(producer, max_bytes=message_max_bytes(settings), limits=limits)
