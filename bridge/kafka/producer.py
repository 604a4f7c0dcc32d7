"""Producing: one blocking `produce` for every producer, and the worker's poll thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from bridge.kafka.config import new_client, new_producer_client
from bridge.settings import KafkaSettings
from bridge.types import Headers

__all__ = [
    "Delivered",
    "ProducerPoller",
    "new_producer",
    "produce",
    "settings_producer",
    "wire_size",
]

# A v2 record's largest framing around its key, value and headers, as librdkafka counts it.
_RECORD_OVERHEAD = 36


def new_producer(conf: dict[str, Any]) -> Producer:
    """A producer for `conf` (see `new_client`)."""
    return new_client(Producer, conf)


def settings_producer(settings: KafkaSettings, **extra: Any) -> Producer:
    """A producer for `settings` with `extra` properties (see `new_producer_client`)."""
    return new_producer_client(Producer, settings, **extra)


def produce(
    producer: Producer,
    topic: str,
    *,
    value: bytes | None,
    key: bytes | None = None,
    headers: Headers | list[tuple[str, str | bytes | None]] | None = None,
    partition: int | None = None,
    on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    poll_timeout: float = 0.05,
) -> None:
    """`producer.produce(...)`, waiting while librdkafka's local queue is full.

    A full queue raises BufferError; polling serves delivery reports, which frees room, so
    the record is offered again after each poll of up to `poll_timeout` seconds. Callers on
    the event loop pass a short one: the loop is blocked meanwhile.
    """
    kwargs: dict[str, Any] = {"value": value, "key": key}
    # Passed only when given: librdkafka's defaults (no headers, the partitioner, the
    # producer's default report callback) apply otherwise.
    if headers is not None:
        kwargs["headers"] = headers
    if partition is not None:
        kwargs["partition"] = partition
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(topic, **kwargs)
            return
        except BufferError:
            producer.poll(poll_timeout)


def _varint_size(n: int) -> int:
    zigzag = (n << 1) ^ (n >> 63)
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def _length_size(data: str | bytes | None) -> int:
    if data is None:
        return _varint_size(-1)
    # The client passes a str as a C string: it ends at its first NUL.
    n = len(data.split("\0", 1)[0].encode()) if isinstance(data, str) else len(data)
    return _varint_size(n) + n


def wire_size(
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, str | bytes | None]] | None = None,
) -> int:
    """The size librdkafka checks against message.max.bytes before it takes a record.

    A transactional producer sends a record only at commit, so a refusal must be foreseen
    when the record is held; tests check this against a real producer.
    """
    size = _RECORD_OVERHEAD + len(key or b"") + len(value or b"")
    for name, data in headers or ():
        size += _length_size(name) + _length_size(data)
    return size


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
