"""Replay plans: parked records behind their poison, targets, safety, order, duplicates."""

from __future__ import annotations

import dataclasses

from bridge import dlq
from bridge.replay.plan import (
    SKIP_BRIDGE_TOPIC,
    SKIP_DUPLICATE,
    SKIP_MAX_REPLAYS,
    SKIP_NO_ORIGINAL_TOPIC,
    SKIP_PARKED_WITHOUT_POISON,
    SKIP_POISON_SKIPPED,
    SKIP_UNKNOWN_TARGET,
    SKIP_VALUE_OMITTED,
    Policy,
    plan,
)
from bridge.replay.records import DeadLetterRecord
from bridge.replay.selection import OffsetRange, Selection
from tests.support.letters import DLQ, IN, letter, positions

# --- parked records and their poison ---------------------------------------------------------


def parked_session() -> list[DeadLetterRecord]:
    """s1: a poison, then three records parked behind it; s2: an unrelated dead letter."""
    poison = letter(10, "s1")
    return [
        poison,
        letter(11, "s2", reason="retries-exhausted", status=503, error_class="ServerError"),
        letter(12, "s1", behind=poison),
        letter(13, "s1", behind=poison, command_type="track_event"),
        letter(14, "s1", behind=poison),
    ]


def test_parked_records_follow_their_selected_poison() -> None:
    records = parked_session()
    p = plan(records, Selection(reasons=frozenset({"permanent"})), Policy())
    assert positions(p) == [(0, 10), (0, 12), (0, 13), (0, 14)]
    assert [i.action for i in p.items] == ["replay"] * 4
    assert [i.pulled_in for i in p.items] == [False, True, True, True]
    assert {i.chain for i in p.items} == {(0, 10)}, "sent back-to-back as one chain"
    # Even when a filter excludes them (here: the command type of the poison).
    p = plan(records, Selection(command_types=frozenset({"update_customer_session"})), Policy())
    assert (0, 13) in positions(p, "replay")


def test_a_parked_record_without_its_poison_is_refused_unless_forced() -> None:
    records = parked_session()
    only_parked = Selection(reasons=frozenset({"parked"}))
    p = plan(records, only_parked, Policy())
    assert positions(p) == [(0, 12), (0, 13), (0, 14)]
    assert {i.action for i in p.items} == {"skip"}
    assert {i.skip_reason for i in p.items} == {SKIP_PARKED_WITHOUT_POISON}
    forced = plan(records, only_parked, Policy(force=True))
    assert {i.action for i in forced.items} == {"replay"}
    # A parked record whose poison is not in the DLQ any more is refused the same way.
    orphan = letter(5, "s9", behind=letter(1, "s9", source=(IN, 0, 7)))
    assert plan([orphan], Selection(), Policy()).items[0].skip_reason == (
        SKIP_PARKED_WITHOUT_POISON
    )


def test_parked_records_stay_behind_a_refused_poison() -> None:
    records = parked_session()
    refused = letter(
        10, "s1", extra=[(dlq.H_REPLAY_COUNT, b"3")]
    )  # the poison, replayed 3 times already
    records[0] = refused
    for r in records[2:]:
        assert r.parked_behind == refused.original
    p = plan(records, Selection(sessions=frozenset({"s1"})), Policy(max_replays=3))
    reasons = [i.skip_reason for i in p.items]
    assert reasons == [
        SKIP_MAX_REPLAYS,
        SKIP_POISON_SKIPPED,
        SKIP_POISON_SKIPPED,
        SKIP_POISON_SKIPPED,
    ]
    forced = plan(records, Selection(sessions=frozenset({"s1"})), Policy(force=True))
    assert [i.action for i in forced.items] == ["replay"] * 4


def test_max_replays() -> None:
    records = [
        letter(0, "a", extra=[(dlq.H_REPLAY_COUNT, b"1")]),
        letter(1, "b", extra=[(dlq.H_REPLAY_COUNT, b"2")]),
        letter(2, "c"),
    ]
    p = plan(records, Selection(), Policy(max_replays=2))
    assert [i.action for i in p.items] == ["replay", "skip", "replay"]
    assert p.items[1].skip_reason == SKIP_MAX_REPLAYS
    assert [i.action for i in plan(records, Selection(), Policy(max_replays=1)).items] == [
        "skip",
        "skip",
        "replay",
    ]
    assert {
        i.action for i in plan(records, Selection(), Policy(max_replays=1, force=True)).items
    } == {"replay"}


# --- targets ---------------------------------------------------------------------------------


def test_targets_and_partitions() -> None:
    back = letter(0, "a", source=(IN, 4, 77))
    p = plan([back], Selection(), Policy(topics={IN: 6}))
    assert (p.items[0].target, p.items[0].target_partition) == (IN, 4), "next to its session"
    p = plan([back], Selection(), Policy(topics={IN: 3}))
    assert p.items[0].target_partition is None, "fewer partitions now: partition by key"
    p = plan([back], Selection(), Policy(to="elsewhere", topics={"elsewhere": 12}))
    assert (p.items[0].target, p.items[0].target_partition) == ("elsewhere", None)
    p = plan([back], Selection(), Policy(topics={}))
    assert (p.items[0].action, p.items[0].skip_reason) == ("skip", SKIP_UNKNOWN_TARGET)


def test_no_original_topic_is_skipped_unless_a_target_is_given() -> None:
    bare = letter(0, "a", original_headers=False)
    assert bare.original_topic is None and bare.original is None
    p = plan([bare], Selection(), Policy())
    assert (p.items[0].action, p.items[0].skip_reason) == ("skip", SKIP_NO_ORIGINAL_TOPIC)
    p = plan([bare], Selection(), Policy(to="retry"))
    assert (p.items[0].action, p.items[0].target) == ("replay", "retry")


def test_a_letter_sent_without_its_value_is_refused_even_forced_but_may_be_discarded() -> None:
    bare = DeadLetterRecord.build(
        topic=DLQ,
        partition=0,
        offset=3,
        timestamp_ms=0,
        key=None,
        value=None,
        headers=[*letter(3, "a").headers, (dlq.H_OMITTED, b"value,headers,key")],
    )
    assert bare.omitted == "value,headers,key"
    for policy in (Policy(), Policy(force=True), Policy(to="retry")):
        p = plan([bare], Selection(), policy)
        assert (p.items[0].action, p.items[0].skip_reason) == ("skip", SKIP_VALUE_OMITTED)
    assert plan([bare], Selection(), Policy(discard=True)).items[0].action == "discard"


# --- order, progress, duplicates ---------------------------------------------------------------


def test_order_is_dlq_order_per_session_with_each_poison_first() -> None:
    a0 = letter(0, "a", partition=1)
    b0 = letter(0, "b", partition=0)
    records = [
        letter(3, "a", partition=1, behind=a0),
        b0,
        letter(1, "b", partition=0, behind=b0),
        a0,
        letter(2, "c", partition=1),
        letter(4, "a", partition=1, behind=a0),
    ]
    p = plan(records, Selection(), Policy())
    per_session: dict[str | None, list[int]] = {}
    for i in p.items:
        per_session.setdefault(i.record.session, []).append(i.record.offset)
    assert per_session == {"b": [0, 1], "a": [0, 3, 4], "c": [2]}
    # A parked record written to a lower position than its poison still goes after it.
    poison = letter(9, "x", partition=1)
    early = letter(1, "x", partition=0, behind=poison)
    assert positions(plan([early, poison], Selection(), Policy())) == [(1, 9), (0, 1)]


def test_records_an_earlier_run_handled_are_done() -> None:
    records = parked_session()
    p = plan(records, Selection(sessions=frozenset({"s1"})), Policy(), start={0: 13})
    assert [(i.record.offset, i.action) for i in p.items] == [
        (10, "done"),
        (12, "done"),
        (13, "replay"),
        (14, "replay"),
    ], "the poison was replayed before: its parked records still follow it"


def test_a_second_dead_letter_of_the_same_record_is_a_duplicate() -> None:
    first = letter(0, "a", source=(IN, 1, 50))
    again = letter(1, "a", source=(IN, 1, 50))
    p = plan([first, again], Selection(), Policy())
    assert [(i.action, i.skip_reason) for i in p.items] == [
        ("replay", None),
        ("skip", SKIP_DUPLICATE),
    ]


def test_a_record_diverted_twice_keeps_both_chain_positions() -> None:
    """Redelivered after a restart, a record is parked again at a new position with a new
    token; its session waits for both, so both are sent (Talon.One applies it once)."""
    poison = letter(0, "a", source=(IN, 1, 50), chain=(0, "t0"))
    first = letter(1, "a", source=(IN, 1, 51), behind=poison, chain=(1, "t1"))
    again = letter(2, "a", source=(IN, 1, 51), behind=poison, chain=(2, "t2"))
    copy = letter(3, "a", source=(IN, 1, 51), behind=poison, chain=(2, "t2"))
    p = plan([poison, first, again, copy], Selection(), Policy())
    assert [(i.action, i.skip_reason) for i in p.items] == [
        ("replay", None),
        ("replay", None),
        ("replay", None),
        ("skip", SKIP_DUPLICATE),
    ]


def test_a_chain_record_dead_lettered_again_is_sent_at_its_place() -> None:
    poison = letter(0, "a", source=(IN, 1, 50), chain=(0, "t0"))
    f1 = letter(1, "a", source=(IN, 1, 51), behind=poison, chain=(1, "t1"))
    f2 = letter(2, "a", source=(IN, 1, 52), behind=poison, chain=(2, "t2"))
    live = letter(3, "a", source=(IN, 1, 60), behind=poison, chain=(3, "t3"))
    # Replayed, f1 failed again (consumed at 70) and f2 came back behind it, out of turn (71).
    f1_again = dataclasses.replace(
        letter(4, "a", source=(IN, 1, 70), behind=poison, chain=(1, "t1b")),
        reason="permanent",
        value=f1.value,
    )
    f2_again = dataclasses.replace(
        letter(5, "a", source=(IN, 1, 71), behind=poison, chain=(2, "t2b")), value=f2.value
    )
    records = [poison, f1, f2, live, f1_again, f2_again]
    again = plan(records, Selection(), Policy(), start={0: 3})
    assert [(i.record.offset, i.action) for i in again.items] == [
        (0, "done"),
        (1, "done"),
        (4, "replay"),
        (2, "done"),
        (5, "replay"),
        (3, "replay"),
    ], "the next run of the selection: the new copies, at their places, then the rest"
    fresh = plan(records, Selection(), Policy())
    assert [(i.record.offset, i.action, i.skip_reason) for i in fresh.items] == [
        (0, "replay", None),
        (1, "replay", None),
        (4, "skip", SKIP_DUPLICATE),
        (2, "replay", None),
        (5, "skip", SKIP_DUPLICATE),
        (3, "replay", None),
    ], "a new selection: one copy per place"
    other = dataclasses.replace(
        letter(6, "a", source=(IN, 1, 80), behind=poison, chain=(3, "t3c")), value=b"another"
    )
    clash = plan([poison, live, other], Selection(), Policy())
    assert [(i.record.offset, i.action) for i in clash.items] == [
        (0, "replay"),
        (3, "replay"),
        (6, "replay"),
    ], "two different commands given one place (a stale view after a rebalance): both go"


def test_the_bridges_own_topics_are_refused_as_targets_unless_forced() -> None:
    out = letter(0, "a", source=("talon.effects", 0, 5))
    back = letter(1, "b", source=(IN, 0, 6))
    bridge_topics = frozenset({"talon.effects", "talon.bridge.parked", DLQ})
    p = plan([out, back], Selection(), Policy(protected=bridge_topics))
    assert [(i.action, i.skip_reason, i.target) for i in p.items] == [
        ("skip", SKIP_BRIDGE_TOPIC, "talon.effects"),
        ("replay", None, IN),
    ]
    p = plan([out], Selection(), Policy(protected=bridge_topics, force=True))
    assert p.items[0].action == "replay"
    p = plan([back], Selection(), Policy(to=DLQ, protected=bridge_topics))
    assert (p.items[0].action, p.items[0].skip_reason) == ("skip", SKIP_BRIDGE_TOPIC)


def test_discard_releases_sessions_whose_latest_poison_goes() -> None:
    records = parked_session()
    p = plan(records, Selection(sessions=frozenset({"s1"})), Policy(discard=True))
    assert {i.action for i in p.items} == {"discard"}
    assert p.releases == (b"s1",)
    # A session with a later poison still in the DLQ stays parked behind that one.
    later = letter(20, "s1", source=(IN, 2, 5000))
    first_poison_only = Selection(sessions=frozenset({"s1"}), offsets=(OffsetRange(0, 0, 14),))
    p = plan([*records, later], first_poison_only, Policy(discard=True))
    assert positions(p, "discard") == [(0, 10), (0, 12), (0, 13), (0, 14)]
    assert p.releases == ()
    assert plan(records, Selection(), Policy()).releases == (), "replaying never tombstones"
