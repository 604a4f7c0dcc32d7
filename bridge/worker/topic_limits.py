"""The produced topics' record size limits: read before the worker starts, and again while
it runs.

The producer's batches are capped under the smallest limit read at start (`batch_cap`), and
the outputs check records against the limits (`Sender.over_limit`, `Transactions.check`),
which share the one dict kept here. A limit raised later is seen at the next reading, so
records between the two limits are published from then on. A limit lowered below the one
read at start is seen too, but the producer's batches stay as they were built: the log asks
for a restart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bridge.errors import ConfigError, KafkaUnreachableError
from bridge.kafka.cluster import Cluster
from bridge.kafka.parking_log import parking_topic_problem
from bridge.settings import Settings
from bridge.worker.decoding import in_thread

__all__ = ["REREAD_S", "TopicLimits", "check_cluster"]

log = logging.getLogger(__name__)

# Topic configurations change by hand, rarely: one DescribeConfigs request a minute is enough.
REREAD_S = 60.0


class TopicLimits:
    """The max.message.bytes of each produced topic the worker may describe (`limits`)."""

    def __init__(self, conf: dict[str, Any], topics: list[str], limits: dict[str, int]) -> None:
        self._conf = conf
        self._topics = topics
        self.limits = limits
        self._at_start = dict(limits)

    async def run(self, every: float = REREAD_S) -> None:
        """Read the limits again every `every` seconds, until cancelled."""
        while True:
            await asyncio.sleep(every)
            self.update(await in_thread(self.read))

    def read(self) -> dict[str, int]:
        """The limits as the cluster gives them now; blocking. A fresh admin client each
        time: one kept idle between readings would queue its log lines unserved."""
        try:
            return Cluster(self._conf).record_limits(self._topics)
        except KafkaUnreachableError:
            return {}  # the consumer and the producer report the outage

    def update(self, found: dict[str, int]) -> None:
        """Take the limits just read; a topic not described keeps the last one known."""
        for topic, limit in found.items():
            was = self.limits.get(topic)
            if limit == was:
                continue
            extra = {"topic": topic, "was": was, "now": limit}
            if limit < self._at_start.get(topic, limit):
                log.warning(
                    "topic's max.message.bytes lowered since start: restart the workers, "
                    "so the producer's batches fit it",
                    extra=extra,
                )
            else:
                log.info("topic's max.message.bytes changed", extra=extra)
            self.limits[topic] = limit


def check_cluster(settings: Settings, park: bool) -> TopicLimits:
    """Before anything starts: the brokers answer, and the parked set has a topic. Returns
    the produced topics' limits, which the producer's batches keep within."""
    conf = settings.librdkafka_common()
    cluster = Cluster(conf)
    if park:
        problem = parking_topic_problem(cluster, settings.parking_topic)
        if problem is not None:
            raise ConfigError("BRIDGE_PARKING_TOPIC", problem)
    topics = [
        settings.output_topic,
        settings.dlq_topic,
        *([settings.parking_topic] if park else []),
    ]
    return TopicLimits(conf, topics, cluster.record_limits(topics))
