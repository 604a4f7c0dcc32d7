"""Fixtures for whole-bridge tests: the simulator as a real process, topics, worker env."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import worker_env
from tests.support.bridge import API_KEY, Bridge


@pytest.fixture
def simulator() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(
        api_key=API_KEY, args=["--latency-ms", "5", "--latency-jitter-ms", "2"]
    ) as sim:
        yield sim


@pytest.fixture
def bridge_factory(
    kafka_bootstrap: str, topic_factory: Callable[..., str], simulator: SimulatorProcess
) -> Callable[..., Bridge]:
    def make(partitions: int = 6, **env: str) -> Bridge:
        b = Bridge(
            bootstrap=kafka_bootstrap,
            env={},
            input=topic_factory("in", partitions),
            output=topic_factory("out", partitions),
            dlq=topic_factory("dlq", partitions),
            parking=topic_factory("park", 1, {"cleanup.policy": "compact"}),
            group=f"bridge-{uuid.uuid4().hex[:8]}",
            partitions=partitions,
        )
        roles = {"in": b.input, "out": b.output, "dlq": b.dlq, "park": b.parking}
        b.env = worker_env(
            kafka_bootstrap,
            roles,
            group=b.group,
            talon_url=simulator.base_url,
            api_key=API_KEY,
            # Tests may override these.
            **{"BRIDGE_COMMIT_INTERVAL": "0.5", "BRIDGE_DRAIN_TIMEOUT": "20", **env},
        )
        return b

    return make
