"""Membership changes under load on the real broker: rolling updates and scaling.

A graceful change must redo nothing: no effects record published twice, no call sent to
Talon.One again, offsets committed to the end of the input and each session's order kept,
in both output modes, with the default (`classic`) group protocol.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import pytest

from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess
from tests.support.bridge import Bridge
from tests.support.membership import (
    assert_nothing_redone,
    finish,
    load,
    membership_bridge,
    slices,
)

# Ten rollouts start a dozen worker processes: longer than the default per-test limit.
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(420)]

MODES = pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "eos"])
# How long after the new member is ready the oldest gets SIGTERM: the rollout's pace.
ROLLOUT_DELAYS = (0.3, 1.5, 3.0)
# How often the autoscaler adds or removes a member: the scaling's pace, not a wait.
SCALE_STEP_S = 0.5
CYCLES = 10


@MODES
def test_rolling_updates_redo_nothing(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess, exactly_once: bool
) -> None:
    bridge = membership_bridge(bridge_factory, exactly_once)
    commands = load(1000, "rolling")
    chunks = slices(commands, CYCLES + 1)
    simulator.set_faults(latency_ms=20)
    members: deque[WorkerProcess] = deque()
    try:
        members.extend(WorkerProcess(bridge.env).start() for _ in range(2))
        bridge.produce(chunks[0])
        for cycle, chunk in enumerate(chunks[1:]):
            # A Deployment with maxSurge 1: a new pod, and once it is ready the oldest goes.
            members.append(WorkerProcess(bridge.env).start())
            bridge.produce(chunk)
            time.sleep(ROLLOUT_DELAYS[cycle % len(ROLLOUT_DELAYS)])  # the rollout's pace
            assert members.popleft().stop() == 0
        redone = finish(bridge, simulator, commands, members, exactly_once)
    finally:
        for member in members:
            member.kill()
    assert_nothing_redone(redone)


@MODES
@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_scaling_out_and_back_in_redoes_nothing(
    bridge_factory: Callable[..., Bridge],
    simulator: SimulatorProcess,
    exactly_once: bool,
    protocol: str,
) -> None:
    bridge = membership_bridge(bridge_factory, exactly_once, protocol)
    commands = load(600, "scale")
    chunks = slices(commands, 7)
    simulator.set_faults(latency_ms=20)
    members: deque[WorkerProcess] = deque()
    try:
        members.append(WorkerProcess(bridge.env).start())
        bridge.produce(chunks[0])
        # Out to four members one at a time, as an autoscaler adds replicas under load...
        for chunk in chunks[1:4]:
            members.append(WorkerProcess(bridge.env).start())
            bridge.produce(chunk)
            time.sleep(SCALE_STEP_S)
        # ...and back in to one, the newest leaving first, as a scale-in removes them.
        for chunk in chunks[4:]:
            bridge.produce(chunk)
            time.sleep(SCALE_STEP_S)
            assert members.pop().stop() == 0
        redone = finish(bridge, simulator, commands, members, exactly_once)
    finally:
        for member in members:
            member.kill()
    assert_nothing_redone(redone)
