"""The librdkafka error codes the bridge reacts to, named once, and the retries of a commit
through a group change.

librdkafka's local error codes carry a leading underscore in the Python binding; giving them
public names here keeps the `noqa` in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import KafkaError

__all__ = [
    "ALL_BROKERS_DOWN",
    "AUTHENTICATION",
    "COORDINATOR_BUSY",
    "FAIL",
    "GROUP_CHANGING",
    "INVALID_ARG",
    "NO_OFFSET",
    "PARTITION_EOF",
    "TIMED_OUT",
    "TOPIC_NOT_FOUND",
    "UNKNOWN_TOPIC_CODES",
    "retry_commit",
]

# A consumer with `enable.partition.eof` reached the end of a partition: an event, not an error.
PARTITION_EOF = KafkaError._PARTITION_EOF  # noqa: SLF001
# A commit with nothing to commit.
NO_OFFSET = KafkaError._NO_OFFSET  # noqa: SLF001
ALL_BROKERS_DOWN = KafkaError._ALL_BROKERS_DOWN  # noqa: SLF001
AUTHENTICATION = KafkaError._AUTHENTICATION  # noqa: SLF001
# librdkafka refused a configuration property.
INVALID_ARG = KafkaError._INVALID_ARG  # noqa: SLF001
FAIL = KafkaError._FAIL  # noqa: SLF001
# A request got no answer in time (the client's own timeout, not the broker's).
TIMED_OUT = KafkaError._TIMED_OUT  # noqa: SLF001

# A commit refused because the group is changing under it: the member is still in the group,
# and the same commit succeeds once librdkafka holds the new generation (or member epoch).
# Until the member has revoked a partition, no other member is given it.
GROUP_CHANGING = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.STALE_MEMBER_EPOCH,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.REQUEST_TIMED_OUT,
        TIMED_OUT,
    }
)


def retry_commit(attempt: Callable[[], KafkaError | None], deadline: float) -> KafkaError | None:
    """`attempt` (a commit) until it is not refused for `GROUP_CHANGING`, or until the
    monotonic `deadline`; its last error, or None."""
    delay = 0.1
    while True:
        err = attempt()
        if err is None or err.code() not in GROUP_CHANGING:
            return err
        if time.monotonic() + delay > deadline:
            return err
        time.sleep(delay)  # the group settles meanwhile; nothing else runs here
        delay = min(1.0, delay * 2)


# How librdkafka reports a subscribed topic, or one of its partitions, gone from the cluster.
UNKNOWN_TOPIC_CODES = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.UNKNOWN_TOPIC_ID,
        KafkaError._UNKNOWN_PARTITION,  # noqa: SLF001
        KafkaError._UNKNOWN_TOPIC,  # noqa: SLF001
    }
)
# A topic the cluster does not have, as a metadata request reports it.
TOPIC_NOT_FOUND = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,  # noqa: SLF001
    }
)
# The group coordinator is moving or loading (a new group): asking again soon succeeds.
COORDINATOR_BUSY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
        TIMED_OUT,
        KafkaError._TRANSPORT,  # noqa: SLF001
    }
)
