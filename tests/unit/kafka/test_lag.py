"""Lag gauges from librdkafka statistics."""

from __future__ import annotations

import orjson

from bridge.kafka.lag import LagReporter
from bridge.metrics import Metrics


def _stats(parts: dict[str, dict[str, object]]) -> str:
    return orjson.dumps({"topics": {"in": {"partitions": parts}}}).decode()


def test_lag_per_assigned_partition_and_removal() -> None:
    m = Metrics()
    report = LagReporter(m)
    report(
        _stats(
            {
                "0": {"fetch_state": "active", "consumer_lag": 12},
                "1": {"fetch_state": "active", "consumer_lag": 0},
                "2": {"fetch_state": "none", "consumer_lag": 99},
                "-1": {"fetch_state": "none", "consumer_lag": -1},
            }
        )
    )
    get = m.registry.get_sample_value
    assert get("bridge_consumer_lag_records", {"topic": "in", "partition": "0"}) == 12
    assert get("bridge_consumer_lag_records", {"topic": "in", "partition": "1"}) == 0
    assert get("bridge_consumer_lag_records", {"topic": "in", "partition": "2"}) is None
    report(_stats({"1": {"fetch_state": "active", "consumer_lag": 3}}))
    assert get("bridge_consumer_lag_records", {"topic": "in", "partition": "0"}) is None
    assert get("bridge_consumer_lag_records", {"topic": "in", "partition": "1"}) == 3
    report("not json")
