"""Several worker processes in one pod (`BRIDGE_WORKERS=2`) on the real broker and simulator:
both are members of the group, one endpoint shows both, and they stop together."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.avro.codec import Codec
from bridge.commands import Command
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import (
    WorkerProcess,
    committed_offsets,
    end_offsets,
    read_topic,
    wait_for,
)
from bridge.tools.produce import LoadSpec, generate
from tests.support.bridge import Bridge
from tests.support.oracle import assert_applied_in_order

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]

PARTITIONS = 6
PROCESSED = "bridge_commands_processed_total"


def _per_worker(pod: WorkerProcess, name: str) -> dict[str, float]:
    """`name`'s value summed per `worker` label of the pod's one /metrics page."""
    out: Counter[str] = Counter()
    for series, value in pod.metrics().items():
        if series.startswith(name + "{") and 'worker="' in series:
            out[series.split('worker="', 1)[1].split('"', 1)[0]] += value
    return dict(out)


def _children(pid: int) -> list[int]:
    """The process ids whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _load(run_id: str) -> list[Command]:
    return list(generate(LoadSpec(sessions=1200, max_cart_updates=8, run_id=run_id)))


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "eos"])
def test_two_processes_share_the_group_and_drain_together(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess, exactly_once: bool
) -> None:
    env = {"BRIDGE_WORKERS": "2", "BRIDGE_DRAIN_TIMEOUT": "60", "BRIDGE_MAX_IN_FLIGHT": "16"}
    if exactly_once:
        # Each process derives its own id from it; one id shared would fence the other.
        env |= {"BRIDGE_EXACTLY_ONCE": "true", "BRIDGE_TRANSACTIONAL_ID": "it-workers"}
    bridge = bridge_factory(partitions=PARTITIONS, **env)
    commands = _load("workers")
    simulator.set_faults(latency_ms=40, latency_jitter_ms=10)
    pod = WorkerProcess(bridge.env).start()
    try:
        status, body = pod._get("/readyz")
        assert status == 200
        assert json.loads(body) == {"ready": True, "workers": [True, True]}
        # Both processes are members: each holds partitions, and together all of them.
        wait_for(
            lambda: (
                _per_worker(pod, "bridge_assigned_partitions")
                in ({"0": a, "1": PARTITIONS - a} for a in range(1, PARTITIONS))
            ),
            60,
            "both processes to hold partitions",
        )
        metrics = pod.metrics()
        assert _per_worker(pod, "bridge_build_info").keys() == {"0", "1"}
        assert _per_worker(pod, "process_cpu_seconds_total").keys() == {"0", "1", "supervisor"}
        assert _per_worker(pod, "bridge_ready") == {"0": 1.0, "1": 1.0}
        assert all(key.count("worker=") == 1 for key in metrics)
        bridge.produce(commands)
        wait_for(
            lambda: min(_per_worker(pod, PROCESSED).values()) > 0, 60, "both processes to work"
        )
        wait_for(
            lambda: simulator.stats()["applied"] > len(commands) / 3, 120, "progress under load"
        )
        # SIGTERM mid-stream: both drain what they hold, commit, and the pod exits cleanly.
        assert pod.stop(timeout=120) == 0
        print(f"applied when stopped: {simulator.stats()['applied']} of {len(commands)}")
        with WorkerProcess(bridge.env):
            wait_for(
                lambda: simulator.stats()["applied"] >= len(commands), 180, "all commands applied"
            )
    finally:
        pod.kill()
    stats = simulator.stats()
    assert stats["conflicts_by_kind"]["session"] == 0, stats["conflicts_by_kind"]
    assert stats["applied_event_ids_repeated"] == 0, stats["repeated_event_ids"]
    assert stats["idempotency_keys_reused"] == 0, "a graceful drain re-sends no call"
    assert_applied_in_order(commands, simulator.journal())
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    records = read_topic(bridge.conf, bridge.output, timeout=90, idle=3.0, isolation=isolation)
    ids = Counter(Codec().decode_effects(m.value()).event_id for m in records)
    assert set(ids) == {c.event_id for c in commands}
    assert max(ids.values()) == 1, "an effects record was published twice"
    ends = end_offsets(bridge.conf, bridge.input)
    assert committed_offsets(bridge.conf, bridge.group, bridge.input) == ends


def test_a_process_that_dies_takes_the_pod_down_after_the_others_drain(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=PARTITIONS, BRIDGE_WORKERS="2")
    pod = WorkerProcess(bridge.env).start()
    try:
        assert pod.proc is not None
        children = _children(pod.proc.pid)
        assert len(children) == 2
        os.kill(children[0], signal.SIGKILL)
        # The pod exits failing, so Kubernetes restarts it; the other process drained.
        assert pod.proc.wait(60) != 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)
        lines = [json.loads(line) for line in pod.log_text().splitlines() if line.startswith("{")]
        said = [(line["msg"], line.get("exit_code")) for line in lines]
        assert (
            "worker process exited unasked; stopping the others so the pod restarts",
            -9,
        ) in said
        assert ("worker process stopped", 0) in said, "the other process drained"
    finally:
        pod.kill()
