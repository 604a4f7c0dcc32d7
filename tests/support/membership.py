"""Membership changes under load: the deployment, its load, and what a change redid.

A graceful change must redo nothing: no effects record published twice, no call sent to
Talon.One again, offsets committed to the end of the input and each session's order kept.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from bridge.avro.codec import Codec
from bridge.commands import Command
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, committed_offsets, end_offsets, read_topic, wait_for
from bridge.tools.produce import LoadSpec, generate
from tests.support.bridge import Bridge
from tests.support.oracle import assert_applied_in_order


@dataclass
class Redone:
    effects_twice: int
    calls_resent: int
    offsets_short: int
    # Exactly-once: effects whose transaction never committed (their records are short).
    effects_missing: int

    def __str__(self) -> str:
        return (
            f"effects published twice: {self.effects_twice}, calls re-sent: "
            f"{self.calls_resent}, offsets short: {self.offsets_short}, "
            f"effects missing: {self.effects_missing}"
        )


def membership_bridge(
    make: Callable[..., Bridge], exactly_once: bool, protocol: str = "classic"
) -> Bridge:
    # Few calls at once, so each member holds work in flight when the group changes.
    env = {"BRIDGE_MAX_IN_FLIGHT": "16", "BRIDGE_GROUP_PROTOCOL": protocol}
    if exactly_once:
        env["BRIDGE_EXACTLY_ONCE"] = "true"
    return make(partitions=12, **env)


def load(sessions: int, run_id: str) -> list[Command]:
    return list(generate(LoadSpec(sessions=sessions, max_cart_updates=6, run_id=run_id)))


def slices(commands: list[Command], n: int) -> list[list[Command]]:
    # Slices of the input in order: each session's commands stay in order across slices.
    size = -(-len(commands) // n)
    return [commands[i : i + size] for i in range(0, len(commands), size)]


def finish(
    bridge: Bridge,
    simulator: SimulatorProcess,
    commands: list[Command],
    members: deque[WorkerProcess],
    exactly_once: bool,
) -> Redone:
    """Let the remaining members finish everything, stop them, and count what was redone."""
    wait_for(lambda: simulator.stats()["applied"] >= len(commands), 180, "every command applied")
    while members:
        assert members.popleft().stop() == 0
    # Every member has stopped: what the group committed is final.
    ends = end_offsets(bridge.conf, bridge.input)
    committed = committed_offsets(bridge.conf, bridge.group, bridge.input)
    short = sum(end - max(committed.get(p, 0), 0) for p, end in ends.items())
    codec = Codec()
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    records = read_topic(bridge.conf, bridge.output, timeout=90, idle=3.0, isolation=isolation)
    ids = Counter(codec.decode_effects(m.value()).event_id for m in records)
    stats = simulator.stats()
    redone = Redone(
        effects_twice=sum(n - 1 for n in ids.values()),
        calls_resent=stats["idempotency_keys_reused"],
        offsets_short=short,
        effects_missing=len({c.event_id for c in commands} - set(ids)),
    )
    print(redone)
    assert stats["applied_event_ids_repeated"] == 0
    assert_applied_in_order(commands, simulator.journal())
    return redone


def assert_nothing_redone(redone: Redone) -> None:
    assert redone.effects_twice == 0, redone
    assert redone.calls_resent == 0, redone
    assert redone.offsets_short == 0, redone
    assert redone.effects_missing == 0, redone
