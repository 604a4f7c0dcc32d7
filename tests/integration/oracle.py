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
        if c.command_type == "track_event":
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


def collapse_immediate_repeats(ids: list[str]) -> list[str]:
    """A redelivered command may repeat only right after itself; fold such repeats."""
    out: list[str] = []
    for i in ids:
        if not out or out[-1] != i:
            out.append(i)
    return out


def assert_order_allowing_repeats(commands: list[Command], journal: dict[str, Any]) -> int:
    """Per-session order holds once immediate repeats are folded; returns the repeat count."""
    sessions, _ = expected_orders(commands)
    repeats = 0
    for sid, expected in sessions.items():
        got = [e["eventId"] for e in journal["sessions"].get(sid, [])]
        folded = collapse_immediate_repeats(got)
        repeats += len(got) - len(folded)
        assert folded == expected, f"session {sid}: applied {got} but produced {expected}"
    return repeats
