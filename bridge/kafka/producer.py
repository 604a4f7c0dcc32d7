"""Producing: one blocking `produce` for every producer, and the worker's poll thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from bridge.kafka.config import new_client
from bridge.types import Headers

__all__ = ["Delivered", "ProducerPoller", "new_producer", "produce"]


def new_producer(conf: dict[str, Any]) -> Producer:
    """A producer for `conf` (see `new_client`)."""
    return new_client(Producer, conf)


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
