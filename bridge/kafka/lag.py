"""Consumer lag per partition, from librdkafka's statistics callback.

librdkafka reports, for every assigned partition, `consumer_lag`: the distance from the
committed offset to the high watermark (or last stable offset under read_committed). Using it
needs no extra broker requests and no external exporter.
"""

from __future__ import annotations

import logging

import orjson

from bridge.metrics import Metrics

__all__ = ["LagReporter"]

log = logging.getLogger(__name__)


class LagReporter:
    """Turns statistics JSON into `bridge_consumer_lag_records`; safe to call from any thread."""

    def __init__(self, metrics: Metrics) -> None:
        self._gauge = metrics.consumer_lag
        self._known: set[tuple[str, str]] = set()

    def __call__(self, stats_json: str) -> None:
        try:
            stats = orjson.loads(stats_json)
        except orjson.JSONDecodeError:
            log.warning("unreadable librdkafka statistics")
            return
        seen: set[tuple[str, str]] = set()
        for topic, tstats in (stats.get("topics") or {}).items():
            for pid, pstats in (tstats.get("partitions") or {}).items():
                if pid == "-1" or pstats.get("fetch_state") in (None, "none", "stopped"):
                    continue
                lag = pstats.get("consumer_lag", -1)
                if lag is None or lag < 0:
                    continue
                self._gauge.labels(topic, pid).set(lag)
                seen.add((topic, pid))
        # Partitions that moved to another worker stop being reported here.
        for gone in self._known - seen:
            self._gauge.remove(*gone)
        self._known = seen
