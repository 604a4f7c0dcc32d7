"""Checks of what the simulator applied against what was produced: the ordering oracle."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bridge.commands import Command


def expected_orders(commands: list[Command]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per session: eventIds of its session calls; per session: eventIds of its events."""
    sessions: dict[str, list[str]] = defaultdict(list)
    events: dict[str, list[str]] = defaultdict(list)
    for c in commands:
        if c.command_type in ("track_event", "track_event_v3"):
            events[c.session_id].append(c.event_id)
        else:
            sessions[c.session_id].append(c.event_id)
    return sessions, events


def assert_applied_in_order(commands: list[Command], journal: dict[str, Any]) -> None:
    """Each session's calls were applied exactly in input order; so were its events."""
    sessions, events = expected_orders(commands)
    applied_sessions = {
        sid: [e["eventId"] for e in entries] for sid, entries in journal["sessions"].items()
    }
    for sid, expected in sessions.items():
        got = applied_sessions.get(sid, [])
        assert got == expected, f"session {sid}: applied {got} but produced {expected}"
    # Events are journaled per profile; each session's events keep their relative order.
    position: dict[str, int] = {}
    for entries in journal["profiles"].values():
        for i, e in enumerate(entries):
            position[e["eventId"]] = i
    by_event_session = {c.event_id: c.session_id for c in commands}
    for sid, expected in events.items():
        assert all(e in position for e in expected), f"session {sid}: an event was not applied"
        profile_of = {by_event_session[e] for e in expected}
        assert profile_of == {sid}
        order = [position[e] for e in expected]
        assert order == sorted(order), f"session {sid}: events applied out of order"


def assert_order_allowing_replays(
    commands: list[Command], journal: dict[str, Any], dead_lettered: set[str] | None = None
) -> int:
    """Per session: first applications in input order, and repeats re-applied in order.

    After a crash without idempotency keys, the records after a partition's committed
    position are read and applied again: each session re-applies a tail of its commands, in
    their original order. A re-applied state change can then be refused by Talon.One (a
    second close), which dead-letters and parks the rest of the session: those commands must
    be in `dead_lettered`. Returns how many applications were repeats.
    """
    dead_lettered = dead_lettered or set()
    sessions, _ = expected_orders(commands)
    repeats = 0
    for sid, expected in sessions.items():
        got = [e["eventId"] for e in journal["sessions"].get(sid, [])]
        index = {e: i for i, e in enumerate(expected)}
        seen: set[str] = set()
        first: list[str] = []
        replayed: list[int] = []
        for e in got:
            if e in seen:
                replayed.append(index[e])
            else:
                seen.add(e)
                first.append(e)
        missing = expected[len(first) :]
        assert first == expected[: len(first)], f"session {sid}: applied {got}, produced {expected}"
        assert all(e in dead_lettered for e in missing), f"session {sid}: lost {missing}"
        assert replayed == sorted(replayed), f"session {sid}: a replay went out of order: {got}"
        repeats += len(replayed)
    return repeats
