"""Replay selection and ordering: filters, parked records behind their poison, safety, headers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from bridge import dlq
from bridge.dlq import DeadLetter, coordinates, dead_letter_headers, header
from bridge.errors import SelectionError
from bridge.replay.plan import (
    SKIP_BRIDGE_TOPIC,
    SKIP_DUPLICATE,
    SKIP_MAX_REPLAYS,
    SKIP_NO_ORIGINAL_TOPIC,
    SKIP_PARKED_WITHOUT_POISON,
    SKIP_POISON_SKIPPED,
    SKIP_UNKNOWN_TARGET,
    Plan,
    Policy,
    plan,
)
from bridge.replay.progress import CommitTracker
from bridge.replay.records import DeadLetterRecord, replay_headers
from bridge.replay.selection import (
    OffsetRange,
    Selection,
    parse_header_filter,
    parse_instant,
    parse_offsets,
    parse_status,
    selection_digest,
)

DLQ = "talon.commands.dlq"
IN = "talon.commands"
T0 = 1_800_000_000_000


def letter(
    offset: int,
    session: str | None = "s1",
    *,
    partition: int = 0,
    reason: str = "permanent",
    source: tuple[str, int, int] | None = None,
    behind: DeadLetterRecord | None = None,
    status: int | None = 400,
    error_class: str = "PermanentApiError",
    ts: int | None = None,
    command_type: str = "update_customer_session",
    extra: list[tuple[str, bytes]] | None = None,
    original_headers: bool = True,
    chain: tuple[int, str] | None = None,
) -> DeadLetterRecord:
    """A dead letter as the worker writes it; `behind` makes it a parked record."""
    topic, part, off = source or (IN, partition, 1000 + offset)
    if behind is not None:
        reason, status, error_class = "parked", None, "SessionParked"
    hs = dead_letter_headers(
        [("trace", b"t-%d" % offset), *(extra or [])],
        DeadLetter(
            "parked" if behind else "api",
            error_class,
            reason,
            "failed",
            http_status=status,
            parked_behind=behind.original if behind else None,
            chain_position=chain[0] if chain else None,
            chain_token=chain[1] if chain else None,
        ),
        topic=topic,
        partition=part,
        offset=off,
        timestamp_ms=T0,
        group="g",
        version="0",
    )
    if not original_headers:
        hs = [(k, v) for k, v in hs if not k.startswith("__connect.errors.")]
    return DeadLetterRecord.build(
        topic=DLQ,
        partition=partition,
        offset=offset,
        timestamp_ms=T0 + offset * 1000 if ts is None else ts,
        key=session.encode() if session is not None else None,
        value=b"v%d" % offset,
        headers=hs,
        command_type=command_type,
        event_id=f"e{offset}",
    )


def positions(p: Plan, action: str | None = None) -> list[tuple[int, int]]:
    return [i.record.position for i in p.items if action is None or i.action == action]


def select(records: list[DeadLetterRecord], **filters: object) -> list[int]:
    chosen = plan(records, Selection(**filters), Policy())  # type: ignore[arg-type]
    return [i.record.offset for i in chosen.items]


# --- parsing ---------------------------------------------------------------------------------


def test_instants_iso_and_relative() -> None:
    now = T0
    assert parse_instant("2026-01-31T08:00:00Z", now) == int(
        datetime(2026, 1, 31, 8, tzinfo=UTC).timestamp() * 1000
    )
    assert parse_instant("2026-01-31T08:00:00", now) == parse_instant("2026-01-31T08:00Z", now)
    assert parse_instant("2026-01-31T09:00:00+01:00", now) == parse_instant(
        "2026-01-31T08:00Z", now
    )
    assert parse_instant("2026-01-31", now) == int(
        datetime(2026, 1, 31, tzinfo=UTC).timestamp() * 1000
    )
    assert parse_instant("2h", now) == now - 7_200_000
    assert parse_instant("90m", now) == now - 5_400_000
    assert parse_instant("1d12h", now) == now - 129_600_000
    assert parse_instant("1w", now) == now - 604_800_000
    for bad in ("yesterday", "2x", "", "h2", "2026-13-01"):
        with pytest.raises(SelectionError):
            parse_instant(bad, now)


def test_offset_ranges() -> None:
    assert parse_offsets("3") == OffsetRange(3, 0, None)
    assert parse_offsets("3:10-20") == OffsetRange(3, 10, 20)
    assert parse_offsets("3:10-") == OffsetRange(3, 10, None)
    assert parse_offsets("3:-20") == OffsetRange(3, 0, 20)
    assert parse_offsets(" 0:5-5 ").contains(0, 5)
    for bad in ("x", "3:", "3:a-b", "-1", "3:20-10", "3:1-2-3"):
        with pytest.raises(SelectionError):
            parse_offsets(bad)


def test_status_and_header_syntax() -> None:
    assert parse_status("400") == "400"
    assert parse_status("4XX") == "4xx"
    for bad in ("40", "4x", "600", "abc"):
        with pytest.raises(SelectionError):
            parse_status(bad)
    assert parse_header_filter("tenant=eu=1") == ("tenant", "eu=1")
    assert parse_header_filter("empty=") == ("empty", "")
    for bad in ("novalue", "=v"):
        with pytest.raises(SelectionError):
            parse_header_filter(bad)


def test_selection_checks_its_own_consistency() -> None:
    with pytest.raises(SelectionError, match="--since is later"):
        Selection(since_ms=2, until_ms=1)
    with pytest.raises(SelectionError, match="--command-type"):
        Selection(command_types=frozenset({"close_session"}))


# --- filters ---------------------------------------------------------------------------------


def test_time_filters_use_the_dlq_timestamp() -> None:
    records = [letter(i, f"s{i}") for i in range(5)]
    assert select(records, since_ms=T0 + 2000) == [2, 3, 4]
    assert select(records, until_ms=T0 + 2000) == [0, 1, 2]
    assert select(records, since_ms=T0 + 1000, until_ms=T0 + 3000) == [1, 2, 3]


def test_session_filter_matches_the_key() -> None:
    records = [letter(0, "a"), letter(1, "b"), letter(2, None), letter(3, "c")]
    assert select(records, sessions=frozenset({"a", "c"})) == [0, 3]


def test_error_class_matches_either_header_case_insensitively() -> None:
    connect_only = letter(2, "c")
    connect_only = DeadLetterRecord.build(
        topic=DLQ,
        partition=0,
        offset=2,
        timestamp_ms=T0,
        key=b"c",
        value=b"",
        headers=[(dlq.H_EXCEPTION_CLASS, b"SerializationException")],
    )
    records = [letter(0, "a"), letter(1, "b", error_class="ServerError"), connect_only]
    assert select(records, error_classes=frozenset({"permanentapierror"})) == [0]
    assert select(records, error_classes=frozenset({"SerializationException"})) == [2]
    assert select(records, error_classes=frozenset({"ServerError", "PermanentApiError"})) == [
        0,
        1,
    ]


def test_reason_status_and_command_type_filters() -> None:
    records = [
        letter(0, "a", reason="permanent", status=400),
        letter(1, "b", reason="retries-exhausted", status=503, error_class="ServerError"),
        letter(2, "c", reason="validation", status=None, command_type="track_event"),
        letter(3, "d", reason="truncated", status=None, command_type="unknown"),
        letter(4, "e", reason="permanent", status=422, command_type="return_cart_items"),
    ]
    assert select(records, reasons=frozenset({"permanent"})) == [0, 4]
    assert select(records, reasons=frozenset({"validation", "truncated"})) == [2, 3]
    assert select(records, statuses=frozenset({"400"})) == [0]
    assert select(records, statuses=frozenset({"4xx"})) == [0, 4]
    assert select(records, statuses=frozenset({"5xx", "422"})) == [1, 4]
    assert select(records, command_types=frozenset({"unknown"})) == [3]
    assert select(records, command_types=frozenset({"track_event", "return_cart_items"})) == [
        2,
        4,
    ]


def test_header_filters_must_all_match() -> None:
    records = [
        letter(0, "a", extra=[("tenant", b"eu"), ("shop", b"1")]),
        letter(1, "b", extra=[("tenant", b"eu"), ("shop", b"2")]),
        letter(2, "c", extra=[("tenant", b"us")]),
    ]
    assert select(records, headers=(("tenant", "eu"),)) == [0, 1]
    assert select(records, headers=(("tenant", "eu"), ("shop", "2"))) == [1]
    assert select(records, headers=((dlq.H_REASON, "permanent"),)) == [0, 1, 2]


def test_offsets_filter_is_per_dlq_partition() -> None:
    records = [letter(i, f"s{i}", partition=i % 2) for i in range(8)]
    assert select(records, offsets=(OffsetRange(0, 2, 4),)) == [2, 4]
    assert select(records, offsets=(OffsetRange(1, 5), OffsetRange(0, 0, 0))) == [0, 5, 7]
    sel = Selection(offsets=(OffsetRange(0, 2, 4), OffsetRange(0, 10, None), OffsetRange(3, 1, 2)))
    assert sel.read_ranges() == {0: (2, None), 3: (1, 2)}
    assert Selection().read_ranges() is None


def test_filters_combine_with_and() -> None:
    records = [
        letter(0, "a", reason="permanent"),
        letter(1, "a", reason="retries-exhausted", status=503),
        letter(2, "b", reason="permanent"),
    ]
    assert select(records, sessions=frozenset({"a"}), reasons=frozenset({"permanent"})) == [0]


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


# --- headers ---------------------------------------------------------------------------------


def test_replay_headers_strip_errors_and_add_replay_headers() -> None:
    before = letter(
        7,
        "a",
        partition=3,
        source=(IN, 2, 41),
        extra=[
            (dlq.H_REPLAY_COUNT, b"1"),
            (dlq.H_REPLAY_ID, b"old-run"),
            (dlq.H_REPLAY_OF, b"talon.commands/0/1"),
            (dlq.H_REPLAY_DLQ, b"talon.commands.dlq/0/0"),
        ],
    )
    out = replay_headers(before, replay_id="run-2")
    names = [k for k, _ in out]
    assert out[0] == ("trace", b"t-7"), "the record's own headers first, in order"
    assert not [n for n in names if n.startswith("__connect.errors.")]
    assert [n for n in names if n.startswith("__talon.bridge.")] == [
        dlq.H_REPLAY_OF,
        dlq.H_REPLAY_ID,
        dlq.H_REPLAY_COUNT,
        dlq.H_REPLAY_DLQ,
    ], "error headers gone, replay headers once each"
    assert header(out, dlq.H_REPLAY_OF) == coordinates(IN, 2, 41)
    assert header(out, dlq.H_REPLAY_ID) == "run-2"
    assert header(out, dlq.H_REPLAY_COUNT) == "2"
    assert header(out, dlq.H_REPLAY_DLQ) == coordinates(DLQ, 3, 7)
    first = replay_headers(letter(1, "b"), replay_id="r")
    assert header(first, dlq.H_REPLAY_COUNT) == "1"
    # Without source coordinates, an earlier replay.of is the best reference there is.
    bare = letter(2, "c", original_headers=False, extra=[(dlq.H_REPLAY_OF, b"in/0/3")])
    assert header(replay_headers(bare, replay_id="r"), dlq.H_REPLAY_OF) == "in/0/3"
    assert (
        header(
            replay_headers(letter(3, "d", original_headers=False), replay_id="r"), dlq.H_REPLAY_OF
        )
        is None
    )


def test_replay_headers_carry_the_chain_position_and_token_once() -> None:
    poison = letter(0, "a", source=(IN, 1, 50), chain=(0, "t0"))
    follower = letter(
        1,
        "a",
        source=(IN, 1, 51),
        behind=poison,
        chain=(1, "t1"),
        extra=[(dlq.H_REPLAY_POSITION, b"9"), (dlq.H_REPLAY_TOKEN, b"stale")],
    )
    assert (follower.chain_position, follower.chain_token) == (1, "t1")
    out = replay_headers(follower, replay_id="r")
    assert [v for k, v in out if k == dlq.H_REPLAY_POSITION] == [b"1"]
    assert [v for k, v in out if k == dlq.H_REPLAY_TOKEN] == [b"t1"]
    assert header(out, dlq.H_REPLAY_OF) == coordinates(IN, 1, 51)
    legacy = replay_headers(letter(2, "b"), replay_id="r")
    assert header(legacy, dlq.H_REPLAY_TOKEN) is None


def test_selection_digest_is_stable_and_order_free() -> None:
    a = selection_digest({"reasons": ["permanent"], "to": None, "force": False})
    b = selection_digest({"force": False, "to": None, "reasons": ["permanent"]})
    assert a == b and len(a) == 12
    assert a != selection_digest({"reasons": ["parked"], "to": None, "force": False})
