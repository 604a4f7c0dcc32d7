"""Read-only questions `talon-bridge doctor` asks the cluster, answered in plain values.

Topics with their shape and the operations the broker allows on them (KIP-430), topic
configs, the worker's group and its committed offsets, and the newest record of each input
partition. Nothing here writes, joins a group or commits. confluent-kafka's failures come
out as `KafkaRequestError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

# The package re-exports these without naming them in __all__, which mypy --strict rejects.
from confluent_kafka.admin._acl import AclOperation
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType

from bridge.errors import KafkaRequestError
from bridge.kafka.codes import TOPIC_NOT_FOUND
from bridge.kafka.config import LIBRDKAFKA_LOGGER, new_client

__all__ = [
    "AclOperation",
    "AdminClient",
    "GroupInfo",
    "NewestRecords",
    "TopicInfo",
    "committed_partitions",
    "describe_configs",
    "describe_group",
    "describe_topics",
]

_T = TypeVar("_T")

# Coordinator errors that go away once the group coordinator has loaded.
_COORDINATOR_BUSY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic as described: its partition IDs, the smallest replica count, allowed ops."""

    partitions: tuple[int, ...]
    replication: int
    authorized: list[AclOperation] | None  # None: the broker did not say


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A consumer group as described: its state (lower case), members and allowed ops."""

    state: str
    members: int
    authorized: list[AclOperation] | None


def _error(exc: KafkaException, denied: int | None = None) -> KafkaRequestError:
    """`exc` as ours; `denied` is the code that means the principal may not ask this."""
    error = exc.args[0] if exc.args else None
    if not isinstance(error, KafkaError):
        return KafkaRequestError(str(exc))
    return KafkaRequestError(
        str(error.str()),
        unauthorized=denied is not None and error.code() == denied,
        unknown_topic=error.code() in TOPIC_NOT_FOUND,
    )


def describe_topics(
    admin: AdminClient, names: Sequence[str], timeout: float
) -> dict[str, TopicInfo | KafkaRequestError]:
    """Each topic's description, or why it could not be described."""
    futures = admin.describe_topics(
        TopicCollection(list(dict.fromkeys(names))),
        include_authorized_operations=True,
        request_timeout=timeout,
    )
    out: dict[str, TopicInfo | KafkaRequestError] = {}
    for name, future in futures.items():
        try:
            described = future.result(timeout)
        except KafkaException as exc:
            out[name] = _error(exc, KafkaError.TOPIC_AUTHORIZATION_FAILED)
            continue
        out[name] = TopicInfo(
            partitions=tuple(sorted(p.id for p in described.partitions)),
            replication=min((len(p.replicas) for p in described.partitions), default=0),
            authorized=described.authorized_operations,
        )
    return out


def describe_configs(
    admin: AdminClient, names: Sequence[str], timeout: float
) -> dict[str, dict[str, str] | str]:
    """Each topic's configs, or the reason they could not be read."""
    if not names:
        return {}
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, n) for n in names], request_timeout=timeout
    )
    out: dict[str, dict[str, str] | str] = {}
    for resource, future in futures.items():
        try:
            entries = future.result(timeout)
            out[resource.name] = {k: str(v.value) for k, v in entries.items()}
        except KafkaException as exc:
            out[resource.name] = _error(exc).reason
    return out


def _retry_coordinator(call: Callable[[], _T], timeout: float) -> _T:
    """`call()`, again while the group coordinator is still being found or loaded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            if exc.args[0].code() not in _COORDINATOR_BUSY or time.monotonic() > deadline:
                raise _error(exc, KafkaError.GROUP_AUTHORIZATION_FAILED) from None
        time.sleep(0.2)  # backoff before asking the coordinator again


def describe_group(admin: AdminClient, group: str, timeout: float) -> GroupInfo:
    """The group as described. Raises `KafkaRequestError`."""
    described = _retry_coordinator(
        lambda: admin.describe_consumer_groups(
            [group], include_authorized_operations=True, request_timeout=timeout
        )[group].result(timeout),
        timeout,
    )
    return GroupInfo(
        state=described.state.name.lower() if described.state is not None else "unknown",
        members=len(described.members or []),
        authorized=described.authorized_operations,
    )


def committed_partitions(
    admin: AdminClient, group: str, partitions: Sequence[tuple[str, int]], timeout: float
) -> list[tuple[str, int]]:
    """Those of `partitions` the group has committed an offset for. Raises `KafkaRequestError`."""
    wanted = [TopicPartition(t, p) for t, p in partitions]
    listed = _retry_coordinator(
        lambda: admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, wanted)], request_timeout=timeout
        )[group].result(timeout),
        timeout,
    )
    return [(tp.topic, tp.partition) for tp in listed.topic_partitions if tp.offset >= 0]


class NewestRecords:
    """Reads the newest record of chosen partitions by assignment: no group, no commits."""

    def __init__(self, conf: Mapping[str, Any]) -> None:
        self._consumer = new_client(
            Consumer,
            {
                **conf,
                "group.id": "talon-bridge-doctor",  # required by the client; never joined
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "logger": LIBRDKAFKA_LOGGER,
            },
        )

    def close(self) -> None:
        self._consumer.close()

    def last_offset(self, topic: str, partition: int, timeout: float) -> int | None:
        """The newest record's offset; None when the partition holds none.

        Raises `KafkaRequestError`.
        """
        try:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout
            )
        except KafkaException as exc:
            raise _error(exc) from None
        return high - 1 if high > low else None

    def read(
        self, topic: str, wanted: Mapping[int, int], timeout: float
    ) -> Iterator[tuple[int, int | None, bytes | None]]:
        """(partition, offset, value) of the record at each wanted offset, at most once each.

        Compaction or retention may have removed an offset asked for: stops at `timeout`.
        """
        self._consumer.assign([TopicPartition(topic, p, o) for p, o in wanted.items()])
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        try:
            while len(seen) < len(wanted) and time.monotonic() < deadline:
                for msg in self._consumer.consume(len(wanted), 0.5):
                    partition = msg.partition()
                    if msg.error() is not None or partition is None or partition in seen:
                        continue
                    seen.add(partition)
                    yield partition, msg.offset(), msg.value()
        finally:
            self._consumer.unassign()
