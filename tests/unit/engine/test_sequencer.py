"""The sequencer: sessions are ordered, profiles only exclude, stuck sessions block no one."""

from __future__ import annotations

from bridge.engine.sequencer import Sequencer


def test_session_order_and_profile_exclusion() -> None:
    seq: Sequencer[str] = Sequencer()
    a1 = seq.add("a1", [("s", "a")], [("p", "x")])
    b1 = seq.add("b1", [("s", "b")], [("p", "x")])
    a2 = seq.add("a2", [("s", "a")])
    assert a1.runnable and not b1.runnable and not a2.runnable
    assert {e.item for e in seq.release(a1)} == {"b1", "a2"}


def test_a_stuck_session_does_not_hold_its_profile() -> None:
    seq: Sequencer[str] = Sequencer()
    stuck = seq.add("a1", [("s", "a")])  # e.g. retrying for a long time
    a_event = seq.add("a2", [("s", "a")], [("p", "x")])  # waits for a1, not yet eligible
    b_event = seq.add("b1", [("s", "b")], [("p", "x")])
    assert stuck.runnable and not a_event.runnable
    assert b_event.runnable, "the profile is free while a2 cannot run anyway"
    assert seq.release(stuck) == []  # a2 is eligible now but b1 holds the profile
    assert [e.item for e in seq.release(b_event)] == ["a2"]


def test_removing_a_lock_holder_wakes_its_waiters() -> None:
    seq: Sequencer[str] = Sequencer()
    seq.add("a1", [("s", "a")], [("p", "x")])
    b1 = seq.add("b1", [("s", "b")], [("p", "x")])
    removed, became = seq.remove_where(lambda item: item == "a1")
    assert [e.item for e in removed] == ["a1"]
    assert became == [b1] and b1.runnable
    assert len(seq) == 1


def test_a_quota_admits_its_holders_and_wakes_the_next_on_release() -> None:
    waits: list[int] = []
    seq: Sequencer[str] = Sequencer(quota=2, on_quota_wait=lambda: waits.append(1))
    a = seq.add("a", [("s", "a")], quotas=[("q", "x")])
    b = seq.add("b", [("s", "b")], quotas=[("q", "x")])
    c = seq.add("c", [("s", "c")], quotas=[("q", "x")])
    other = seq.add("d", [("s", "d")], quotas=[("q", "y")])
    assert a.runnable and b.runnable and not c.runnable and other.runnable
    assert len(waits) == 1
    assert seq.release(a) == [c]
    removed, became = seq.remove_where(lambda item: item == "b")
    assert [e.item for e in removed] == ["b"] and became == []
    e = seq.add("e", [("s", "e")], quotas=[("q", "x")])
    assert e.runnable, "the removed holder gave its place back"


def test_an_event_keeps_its_profile_lock_inside_the_quota() -> None:
    seq: Sequencer[str] = Sequencer(quota=4)
    ev1 = seq.add("ev1", [("s", "a")], [("p", "x")], [("q", "x")])
    ev2 = seq.add("ev2", [("s", "b")], [("p", "x")], [("q", "x")])
    upd = seq.add("upd", [("s", "c")], quotas=[("q", "x")])
    assert ev1.runnable and not ev2.runnable and upd.runnable
    assert seq.release(ev1) == [ev2]


def test_without_a_quota_quota_keys_are_ignored() -> None:
    seq: Sequencer[str] = Sequencer()
    entries = [seq.add(str(i), [("s", i)], quotas=[("q", "x")]) for i in range(5)]
    assert all(e.runnable for e in entries)
