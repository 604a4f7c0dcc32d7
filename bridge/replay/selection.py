"""Which dead letters a replay selects: its filters and how their arguments are read. No I/O.

Filters (`Selection`) are combined with AND; a filter given several values matches any.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

import orjson

from bridge.dlq import header
from bridge.errors import SelectionError
from bridge.replay.records import DeadLetterRecord
from bridge.types import RecordCommandType

__all__ = [
    "COMMAND_TYPES",
    "OffsetRange",
    "Selection",
    "parse_header_filter",
    "parse_instant",
    "parse_offsets",
    "parse_status",
    "selection_digest",
]

COMMAND_TYPES: tuple[RecordCommandType, ...] = get_args(RecordCommandType)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_instant(text: str, now_ms: int) -> int:
    """Milliseconds since the epoch for ISO-8601 `text`, or `now_ms` minus a duration.

    Durations are a number and a unit (s, m, h, d, w), possibly several: ``90m``, ``2h``,
    ``1d12h``. An ISO-8601 time without a zone is taken as UTC.
    """
    value = text.strip()
    if value and _DURATION_PART.sub("", value) == "":
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
        return now_ms - int(seconds * 1000)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise SelectionError(
            f"{text!r} is neither an ISO-8601 time (2026-01-31T08:00:00Z) "
            "nor a duration ago (30m, 2h, 7d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """DLQ partition `partition`, offsets `first` to `last` inclusive (None: open)."""

    partition: int
    first: int = 0
    last: int | None = None

    def contains(self, partition: int, offset: int) -> bool:
        return (
            partition == self.partition
            and offset >= self.first
            and (self.last is None or offset <= self.last)
        )

    def __str__(self) -> str:
        return f"{self.partition}:{self.first}-{'' if self.last is None else self.last}"


_OFFSETS = re.compile(r"(\d+)(?::(\d*)-(\d*))?")


def parse_offsets(text: str) -> OffsetRange:
    """``P`` (the whole partition), ``P:FROM-TO`` (inclusive), ``P:FROM-`` or ``P:-TO``."""
    m = _OFFSETS.fullmatch(text.strip())
    if m is None:
        raise SelectionError(
            f"--offsets {text!r}: expected PARTITION[:FROM-TO], e.g. 0:100-250, 3:500- or 2"
        )
    partition, first, last = m.group(1), m.group(2), m.group(3)
    rng = OffsetRange(int(partition), int(first) if first else 0, int(last) if last else None)
    if rng.last is not None and rng.last < rng.first:
        raise SelectionError(f"--offsets {text!r}: the range ends before it starts")
    return rng


def parse_header_filter(text: str) -> tuple[str, str]:
    """``name=value``: the record's last header `name` must equal `value`."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise SelectionError(f"--header {text!r}: expected NAME=VALUE")
    return name.strip(), value


_STATUS = re.compile(r"[1-5](?:\d\d|xx)")


def parse_status(text: str) -> str:
    """An HTTP status (``400``) or a status class (``4xx``)."""
    value = text.strip().lower()
    if not _STATUS.fullmatch(value):
        raise SelectionError(f"--status {text!r}: expected a status such as 400 or a class: 4xx")
    return value


@dataclass(frozen=True, slots=True)
class Selection:
    """The filters; empty ones match everything."""

    since_ms: int | None = None
    until_ms: int | None = None
    sessions: frozenset[str] = frozenset()
    error_classes: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    command_types: frozenset[str] = frozenset()
    headers: tuple[tuple[str, str], ...] = ()
    offsets: tuple[OffsetRange, ...] = ()
    applications: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if (
            self.since_ms is not None
            and self.until_ms is not None
            and self.since_ms > self.until_ms
        ):
            raise SelectionError("--since is later than --until")
        unknown = self.command_types - set(COMMAND_TYPES)
        if unknown:
            raise SelectionError(
                f"--command-type {sorted(unknown)[0]!r}: expected one of {', '.join(COMMAND_TYPES)}"
            )

    def matches(self, r: DeadLetterRecord) -> bool:
        if self.since_ms is not None and r.timestamp_ms < self.since_ms:
            return False
        if self.until_ms is not None and r.timestamp_ms > self.until_ms:
            return False
        if self.sessions and r.session not in self.sessions:
            return False
        if self.error_classes:
            classes = {c.lower() for c in (r.error_class, r.exception_class) if c}
            if not classes & {c.lower() for c in self.error_classes}:
                return False
        if self.reasons and (r.reason or "").lower() not in {x.lower() for x in self.reasons}:
            return False
        if self.statuses and not any(_status_matches(s, r.status) for s in self.statuses):
            return False
        if self.command_types and r.command_type not in self.command_types:
            return False
        if self.applications and r.application not in self.applications:
            return False
        if any(header(r.headers, k) != v for k, v in self.headers):
            return False
        return not self.offsets or any(o.contains(r.partition, r.offset) for o in self.offsets)

    def read_ranges(self) -> dict[int, tuple[int, int | None]] | None:
        """Per partition, the DLQ offsets worth reading (first, last inclusive); None: all."""
        if not self.offsets:
            return None
        out: dict[int, tuple[int, int | None]] = {}
        for o in self.offsets:
            if o.partition not in out:
                out[o.partition] = (o.first, o.last)
                continue
            first, last = out[o.partition]
            out[o.partition] = (
                min(first, o.first),
                None if last is None or o.last is None else max(last, o.last),
            )
        return out


def _status_matches(pattern: str, status: int | None) -> bool:
    if status is None:
        return False
    if pattern.endswith("xx"):
        return status // 100 == int(pattern[0])
    return status == int(pattern)


def selection_digest(arguments: Mapping[str, Any]) -> str:
    """A stable short hash of the arguments that decide what a run selects and does."""
    canonical = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:12]
