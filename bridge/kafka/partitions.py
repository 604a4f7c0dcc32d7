"""How many partitions the input topics have, as the cluster describes them now."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from bridge.kafka.cluster import topic_unreadable
from bridge.kafka.config import LIBRDKAFKA_LOGGER, client_errors, new_client

__all__ = ["PartitionCounts"]


class PartitionCounts:
    """Asks the cluster for topics' partition counts (blocking: call it in a thread)."""

    def __init__(self, conf: dict[str, Any], timeout: float = 10.0) -> None:
        self._admin = new_client(AdminClient, {**conf, "logger": LIBRDKAFKA_LOGGER})
        self._timeout = timeout

    def __call__(self, topics: Sequence[str]) -> dict[str, int] | None:
        """{topic: partitions} of the topics that can be read (0 for the others), or None
        when the cluster did not answer."""
        counts: dict[str, int] = {}
        try:
            for topic in topics:
                found = self._admin.list_topics(topic, timeout=self._timeout).topics.get(topic)
                unreadable = found is None or topic_unreadable(found) is not None
                counts[topic] = 0 if unreadable or found is None else len(found.partitions)
        except KafkaException as exc:
            client_errors.warning("cannot count the input partitions: %s", exc)
            return None
        finally:
            self._admin.poll(0)  # hands its log lines over
        return counts
