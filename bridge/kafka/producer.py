"""Producing: one blocking `produce` for every producer of the bridge and its tools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from bridge.types import Headers

__all__ = ["produce"]


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
