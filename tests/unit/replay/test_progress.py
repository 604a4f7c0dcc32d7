"""A selection's committable progress per DLQ partition."""

from __future__ import annotations

from bridge.replay.progress import CommitTracker


def test_commit_positions_cover_the_handled_prefix_only() -> None:
    t = CommitTracker(start={0: 5, 1: 0}, end={0: 20, 1: 9})
    t.hold(0, 7)
    t.hold(0, 9)
    assert t.positions() == {0: 7, 1: 9}
    t.release(0, 9)
    assert t.positions() == {0: 7, 1: 9}, "out-of-order acknowledgements wait for the gap"
    t.release(0, 7)
    assert t.positions() == {0: 20, 1: 9}
    assert CommitTracker(start={0: 30}, end={0: 20}).positions() == {0: 30}, "never backwards"
