"""Replay selection: filter arguments, what each filter matches, the selection digest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge import dlq
from bridge.errors import SelectionError
from bridge.replay.records import DeadLetterRecord
from bridge.replay.selection import (
    OffsetRange,
    Selection,
    parse_header_filter,
    parse_instant,
    parse_offsets,
    parse_status,
    selection_digest,
)
from tests.support.letters import DLQ, T0, letter, select

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


def test_selection_digest_is_stable_and_order_free() -> None:
    a = selection_digest({"reasons": ["permanent"], "to": None, "force": False})
    b = selection_digest({"force": False, "to": None, "reasons": ["permanent"]})
    assert a == b and len(a) == 12
    assert a != selection_digest({"reasons": ["parked"], "to": None, "force": False})


def test_application_filter_selects_the_dead_letters_of_an_application() -> None:
    records = [
        letter(0, "a", application="de"),
        letter(1, "b", application="fr"),
        letter(2, "c"),  # routed to none
    ]
    assert select(records, applications=frozenset({"fr"})) == [1]
    assert select(records, applications=frozenset({"de", "fr"})) == [0, 1]
    assert select(records) == [0, 1, 2]
