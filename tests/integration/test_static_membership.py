"""Static membership on the real broker: a rolling restart moves no partitions.

Three members under load are restarted one after the other, as a StatefulSet does (SIGTERM,
then the same pod name again). With `BRIDGE_GROUP_INSTANCE_ID` the other members see no
rebalance, the restarted one takes back the partitions it had, and nothing is redone: it
drains and commits on SIGTERM although it does not leave the group. Without the id each
stop takes the member out of the group (and with `classic` moves the others' partitions every
time), which shows the checks can fail.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from bridge.commands import Command
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, wait_for
from tests.support.bridge import Bridge
from tests.support.membership import (
    assert_nothing_redone,
    finish,
    load,
    membership_bridge,
    slices,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(420)]

MEMBERS = 3
PARTITIONS = 12  # membership_bridge's


def _rebalances(member: WorkerProcess) -> float:
    return member.metric_sum("bridge_rebalances_total")


def _applied(simulator: SimulatorProcess, at_least: int) -> bool:
    return int(simulator.stats()["applied"]) >= at_least


def _members(bridge: Bridge) -> list[Any]:
    """The group's members as its coordinator lists them."""
    admin = AdminClient({**bridge.conf, "log_level": 0})
    group = admin.describe_consumer_groups([bridge.group])[bridge.group].result(timeout=10)
    return list(group.members)


def _assignments(bridge: Bridge) -> dict[str, frozenset[int]]:
    """Each static member's partitions, by instance id."""
    return {
        m.group_instance_id: frozenset(tp.partition for tp in m.assignment.topic_partitions)
        for m in _members(bridge)
        if m.group_instance_id is not None
    }


@dataclass
class Restart:
    # The group still counted the stopped member as one of its own (no membership change).
    kept_while_away: bool
    # Another member was given or lost partitions (its rebalance counter moved).
    others_rebalanced: bool


class Group:
    """Members started with or without an instance id, restarted in place like pods."""

    def __init__(self, bridge: Bridge, *, static: bool) -> None:
        self.bridge = bridge
        self.names = [f"talon-bridge-{i}" for i in range(MEMBERS)]
        self.static = static
        self.members: dict[str, WorkerProcess] = {}

    def start(self, name: str) -> WorkerProcess:
        env = dict(self.bridge.env)
        if self.static:
            env["BRIDGE_GROUP_INSTANCE_ID"] = name
        self.members[name] = WorkerProcess(env).start()
        return self.members[name]

    def settled(self) -> bool:
        """Every member holds its even share of the partitions."""
        share = PARTITIONS // MEMBERS
        return all(
            m.metric_sum("bridge_assigned_partitions") == share for m in self.members.values()
        )


def _restart_each(
    group: Group, simulator: SimulatorProcess, commands: list[Command]
) -> list[Restart]:
    """Restart every member in turn under load; what each restart did to the group."""
    bridge, static = group.bridge, group.static
    parts = slices(commands, MEMBERS + 1)
    for name in group.names:
        group.start(name)
    bridge.produce(parts[0])
    wait_for(group.settled, 60, "every member holding its share")
    restarts: list[Restart] = []
    produced = len(parts[0])
    # Highest ordinal first, as a StatefulSet rolls.
    for name, part in zip(reversed(group.names), parts[1:], strict=True):
        others = [m for n, m in group.members.items() if n != name]
        before = [_rebalances(m) for m in others]
        held = _assignments(bridge).get(name) if static else None
        assert held or not static, "the member is known by its instance id"
        bridge.produce(part)  # work in flight when SIGTERM comes
        produced += len(part)
        stopping = time.monotonic()
        assert group.members[name].stop() == 0
        kept = len(_members(bridge)) == MEMBERS
        starting = time.monotonic()
        member = group.start(name)  # ready: it holds partitions again
        # Reported, not checked: how long the partitions waited (the session timeout's floor).
        print(
            f"{name}: drained and stopped in {starting - stopping:.1f} s, ready again in "
            f"{time.monotonic() - starting:.1f} s"
        )
        if static:
            assert _assignments(bridge).get(name) == held
        # The restarted member works its share off: the group has done all it will do.
        wait_for(partial(_applied, simulator, produced), 120, "the backlog applied")
        restarts.append(Restart(kept, [_rebalances(m) for m in others] != before))
        assert member.metric_sum("bridge_assigned_partitions") > 0
    return restarts


# Each protocol and each output mode once: the four combinations cost twice the time and
# exercise no path the diagonal leaves out (the output mode only changes what a drain commits).
@pytest.mark.parametrize(
    ("protocol", "exactly_once"),
    [("classic", False), ("consumer", True)],
    ids=["classic-at-least-once", "consumer-eos"],
)
def test_a_static_member_restarts_without_a_rebalance_and_redoes_nothing(
    bridge_factory: Callable[..., Bridge],
    simulator: SimulatorProcess,
    protocol: str,
    exactly_once: bool,
) -> None:
    bridge = membership_bridge(bridge_factory, exactly_once, protocol)
    commands = load(600, "static")
    simulator.set_faults(latency_ms=20)
    group = Group(bridge, static=True)
    try:
        restarts = _restart_each(group, simulator, commands)
        members = deque(group.members.values())
        redone = finish(bridge, simulator, commands, members, exactly_once)
    finally:
        for member in group.members.values():
            member.kill()
    assert restarts == [Restart(kept_while_away=True, others_rebalanced=False)] * MEMBERS
    assert_nothing_redone(redone)


def test_without_an_instance_id_each_restart_rebalances(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    """`classic`: with `consumer` (KIP-848's sticky target assignment) the others' partitions
    can stay put when the replacement joins before they heartbeat again, so only the
    membership change itself would show, which the static test already contrasts."""
    bridge = membership_bridge(bridge_factory, False, "classic")
    commands = load(300, "dynamic")
    simulator.set_faults(latency_ms=20)
    group = Group(bridge, static=False)
    try:
        restarts = _restart_each(group, simulator, commands)
        finish(bridge, simulator, commands, deque(group.members.values()), False)
    finally:
        for member in group.members.values():
            member.kill()
    # Each stop is a membership change: the others rejoin and move partitions every time.
    assert not any(r.kept_while_away for r in restarts)
    assert all(r.others_rebalanced for r in restarts)


def test_a_crashed_static_member_takes_its_partitions_back_at_once(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    """`classic`: the replacement of a member killed without a goodbye takes its place (and
    partitions) as it joins, without waiting for the session timeout or moving the others'.
    (With `consumer` the broker refuses it until the session timeout: see docs/deployment.md.)"""
    bridge = membership_bridge(bridge_factory, False, "classic")
    commands = load(300, "crash")
    first, second = slices(commands, 2)
    simulator.set_faults(latency_ms=20)
    group = Group(bridge, static=True)
    try:
        for name in group.names:
            group.start(name)
        bridge.produce(first)
        wait_for(group.settled, 60, "every member holding its share")
        name = group.names[-1]
        others = [m for n, m in group.members.items() if n != name]
        before = [_rebalances(m) for m in others]
        held = _assignments(bridge)[name]
        bridge.produce(second)
        group.members[name].kill()  # no drain, no commit, no goodbye
        group.start(name)
        assert _assignments(bridge)[name] == held
        after = [_rebalances(m) for m in others]  # before `finish` stops them
        redone = finish(bridge, simulator, commands, deque(group.members.values()), False)
    finally:
        for member in group.members.values():
            member.kill()
    assert after == before
    # What the killed member had finished since its last commit is done again, in order.
    assert redone.offsets_short == 0
    assert redone.effects_missing == 0
