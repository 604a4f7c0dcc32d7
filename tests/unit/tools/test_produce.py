"""The load generator: deterministic, valid lifecycles, interleaved sessions."""

from __future__ import annotations

import itertools
from collections import defaultdict

from bridge.commands import ReturnCartItems, UpdateCustomerSession
from bridge.tools.produce import LoadSpec, generate

_ALLOWED = {
    None: {"open", "closed"},
    "open": {"open", "closed", "cancelled"},
    "closed": {"cancelled", "returned"},
    "returned": {"returned", "cancelled"},
    "cancelled": set(),
}


def test_deterministic_for_a_seed() -> None:
    a = [c.event_id for c in generate(LoadSpec(sessions=50, seed=7))]
    b = [c.event_id for c in generate(LoadSpec(sessions=50, seed=7))]
    assert a == b
    assert len(set(a)) == len(a), "eventIds are unique"


def test_lifecycles_follow_the_session_state_machine() -> None:
    state: dict[str, str | None] = defaultdict(lambda: None)
    for cmd in generate(LoadSpec(sessions=500, seed=3)):
        p = cmd.payload
        if isinstance(p, UpdateCustomerSession):
            nxt = p.state
        elif isinstance(p, ReturnCartItems):
            nxt = "returned"
        else:
            continue
        assert nxt in _ALLOWED[state[cmd.session_id]], (cmd.session_id, state[cmd.session_id], nxt)
        state[cmd.session_id] = nxt


def test_sessions_interleave_and_total_caps() -> None:
    cmds = list(generate(LoadSpec(sessions=200, total=300, seed=1)))
    assert len(cmds) == 300
    switches = sum(1 for a, b in itertools.pairwise(cmds) if a.session_id != b.session_id)
    assert switches > 200
