"""The bridge's topics: names, shapes, and idempotent creation.

Input, output and dead-letter topics are ordinary delete-retention topics; the parking topic is
compacted (one record per parked session, a tombstone on release). `talon-bridge topics
create` (`bridge.tools.topics`) creates any that are missing, e.g. from a Helm pre-install Job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bridge.kafka.config import LIBRDKAFKA_LOGGER, new_client
from bridge.settings import KafkaSettings

__all__ = ["TopicSpec", "ensure_topics", "specs_for"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int = -1  # the broker's default.replication.factor
    config: dict[str, str] = field(default_factory=dict)


def specs_for(
    settings: KafkaSettings, *, partitions: int = 12, replication: int = -1
) -> list[TopicSpec]:
    week = str(7 * 24 * 3600 * 1000)
    specs = [TopicSpec(t, partitions, replication) for t in settings.input_topics]
    specs.append(TopicSpec(settings.output_topic, partitions, replication))
    specs.append(TopicSpec(settings.dlq_topic, partitions, replication, {"retention.ms": "-1"}))
    specs.append(
        TopicSpec(
            settings.parking_topic,
            max(1, min(partitions, 6)),
            replication,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "retention.ms": week},
        )
    )
    return specs


def ensure_topics(conf: dict[str, Any], specs: list[TopicSpec], timeout: float = 30) -> list[str]:
    """Create the topics that don't exist; returns the names created."""
    with_logger: dict[str, Any] = {**conf, "logger": LIBRDKAFKA_LOGGER}
    admin = new_client(AdminClient, with_logger)
    try:
        return _create_missing(admin, specs, timeout)
    finally:
        admin.poll(0)  # hands librdkafka's queued lines to the logger


def _create_missing(admin: AdminClient, specs: list[TopicSpec], timeout: float) -> list[str]:
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [s for s in specs if s.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=s.replication,
                config=s.config,
            )
            for s in wanted
        ],
        operation_timeout=timeout,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
