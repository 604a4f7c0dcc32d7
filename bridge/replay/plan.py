"""What `talon-bridge replay` sends, in which order, and with which headers. No I/O.

A replay reads the dead-letter topic (DLQ) up to a fixed stop point, turns each record into a
`DeadLetterRecord`, and `plan` decides per record: replay, discard, skip (with a reason), or
done (handled by an earlier run of the same selection). The rules:

* Filters (`Selection`) are combined with AND; a filter given several values matches any.
* A parked record (reason ``parked``) follows its poison, the dead letter whose source
  coordinates it names in ``__talon.bridge.parked.behind``: selecting the poison selects its
  parked records too, whatever the filters say, and they are sent right after it. A parked
  record selected without its poison is refused (``parked-without-poison``) unless forced,
  since the worker would only divert it again while the session waits for its poison.
* Within a session, records keep their DLQ order (the worker writes a session's dead letters,
  in order, to one DLQ partition), with each poison ahead of its parked records, and these in
  chain order (``__talon.bridge.parked.position``), one copy per place.
* `replay_headers` strips the error headers and adds the replay headers; the key, value and
  the record's own headers are kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from bridge.dlq import (
    H_ERROR_CLASS,
    H_EXCEPTION_CLASS,
    H_HTTP_STATUS,
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    H_PARKED_BEHIND,
    H_PARKED_POSITION,
    H_PARKED_TOKEN,
    H_REASON,
    H_REPLAY_COUNT,
    H_REPLAY_DLQ,
    H_REPLAY_ID,
    H_REPLAY_OF,
    H_REPLAY_POSITION,
    H_REPLAY_TOKEN,
    coordinates,
    header,
)

__all__ = [
    "COMMAND_TYPES",
    "PARKED",
    "SAFE_SKIPS",
    "SKIP_BRIDGE_TOPIC",
    "SKIP_DUPLICATE",
    "SKIP_MAX_REPLAYS",
    "SKIP_NO_ORIGINAL_TOPIC",
    "SKIP_PARKED_WITHOUT_POISON",
    "SKIP_POISON_SKIPPED",
    "SKIP_UNKNOWN_TARGET",
    "Action",
    "CommitTracker",
    "DeadLetterRecord",
    "OffsetRange",
    "Plan",
    "Planned",
    "Policy",
    "Selection",
    "SelectionError",
    "parse_header_filter",
    "parse_instant",
    "parse_offsets",
    "parse_status",
    "plan",
    "replay_headers",
    "selection_digest",
]

COMMAND_TYPES = ("track_event", "update_customer_session", "return_cart_items", "unknown")
PARKED = "parked"

SKIP_NO_ORIGINAL_TOPIC = "no-original-topic"
SKIP_UNKNOWN_TARGET = "unknown-target-topic"
SKIP_MAX_REPLAYS = "max-replays"
SKIP_PARKED_WITHOUT_POISON = "parked-without-poison"
SKIP_POISON_SKIPPED = "poison-skipped"
SKIP_DUPLICATE = "duplicate"
SKIP_BRIDGE_TOPIC = "bridge-topic"
# Skips that leave nothing undone: a second dead letter of the same source record.
SAFE_SKIPS = frozenset({SKIP_DUPLICATE})

_ERROR_PREFIXES = ("__connect.errors.", "__talon.bridge.")

Action = Literal["replay", "discard", "skip", "done"]


class SelectionError(ValueError):
    """A filter or option value that cannot be understood; the CLI exits 2 with it."""


# --- parsing filter arguments ------------------------------------------------------------

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


# --- records -----------------------------------------------------------------------------


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One DLQ record with its headers read. Build it with `DeadLetterRecord.build`."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    command_type: str
    event_id: str | None
    reason: str | None
    error_class: str | None
    exception_class: str | None
    status: int | None
    original_topic: str | None
    original_partition: int | None
    original: str | None  # topic/partition/offset it was consumed at before dead-lettering
    parked_behind: str | None
    replay_count: int
    chain_position: int | None = None  # place in its session's parking chain (0: the poison)
    chain_token: str | None = None

    @classmethod
    def build(
        cls,
        *,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes | None]] | None,
        command_type: str = "unknown",
        event_id: str | None = None,
    ) -> DeadLetterRecord:
        hs = tuple((k, v if v is not None else b"") for k, v in headers or ())
        o_topic = header(hs, H_ORIGINAL_TOPIC) or None
        o_partition = _int(header(hs, H_ORIGINAL_PARTITION))
        o_offset = _int(header(hs, H_ORIGINAL_OFFSET))
        original = (
            coordinates(o_topic, o_partition, o_offset)
            if o_topic is not None and o_partition is not None and o_offset is not None
            else None
        )
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp_ms,
            key=key,
            value=value,
            headers=hs,
            command_type=command_type,
            event_id=event_id,
            reason=header(hs, H_REASON),
            error_class=header(hs, H_ERROR_CLASS),
            exception_class=header(hs, H_EXCEPTION_CLASS),
            status=_int(header(hs, H_HTTP_STATUS)),
            original_topic=o_topic,
            original_partition=o_partition,
            original=original,
            parked_behind=header(hs, H_PARKED_BEHIND),
            replay_count=max(0, _int(header(hs, H_REPLAY_COUNT)) or 0),
            chain_position=_int(header(hs, H_PARKED_POSITION)),
            chain_token=header(hs, H_PARKED_TOKEN),
        )

    @property
    def session(self) -> str | None:
        """The Kafka key, the customer-session ID."""
        return self.key.decode(errors="replace") if self.key is not None else None

    @property
    def dlq(self) -> str:
        """This record's own `topic/partition/offset`."""
        return coordinates(self.topic, self.partition, self.offset)

    @property
    def position(self) -> tuple[int, int]:
        return (self.partition, self.offset)

    @property
    def is_parked(self) -> bool:
        """Diverted behind its session's poison rather than failed by itself."""
        return self.reason == PARKED or self.parked_behind is not None


# --- selection -----------------------------------------------------------------------------


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


# --- planning ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """How selected records are handled.

    Args:
        to: Send every record to this topic instead of its original topic.
        discard: Drop the records (and release their sessions) instead of sending them.
        force: Send records the safety rules would refuse (parked without their poison,
            replayed `max_replays` times already).
        max_replays: Refuse records whose replay count has reached this.
        topics: Partition count of each existing target topic; None skips the check.
        protected: Topics refused as targets unless forced: the bridge's own output,
            parking and dead-letter topics, and the topic read.
    """

    to: str | None = None
    discard: bool = False
    force: bool = False
    max_replays: int = 3
    topics: Mapping[str, int] | None = None
    protected: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Planned:
    """The decision about one selected record."""

    record: DeadLetterRecord
    action: Action
    skip_reason: str | None = None
    target: str | None = None
    target_partition: int | None = None  # None: the producer partitions by key
    pulled_in: bool = False  # selected only because its poison was
    chain: tuple[int, int] = (0, 0)  # DLQ position of the chain's head; sent back-to-back


@dataclass(frozen=True, slots=True)
class Plan:
    """The selected records in sending order, and the sessions a discard releases."""

    items: tuple[Planned, ...]
    releases: tuple[bytes, ...] = ()
    scanned: int = 0

    def by_action(self, action: Action) -> list[Planned]:
        return [p for p in self.items if p.action == action]


def plan(
    records: Sequence[DeadLetterRecord],
    selection: Selection,
    policy: Policy,
    start: Mapping[int, int] | None = None,
) -> Plan:
    """Decide about every record of `records` (one DLQ topic).

    Args:
        records: The DLQ records read, in any order.
        selection: The filters.
        policy: What to do with selected records.
        start: Per DLQ partition, the first offset an earlier run of this selection has not
            handled yet; records before it are reported as ``done``.
    """
    start = start or {}
    ordered = sorted(records, key=lambda r: r.position)
    matched = {r.position: selection.matches(r) for r in ordered}
    poisons: dict[str, DeadLetterRecord] = {}
    for r in ordered:
        if not r.is_parked and r.original is not None:
            poisons.setdefault(r.original, r)

    def poison_of(r: DeadLetterRecord) -> DeadLetterRecord | None:
        return poisons.get(r.parked_behind) if r.parked_behind else None

    chosen: list[tuple[DeadLetterRecord, DeadLetterRecord | None]] = []
    for r in ordered:
        poison = poison_of(r) if r.is_parked else None
        if matched[r.position] or (poison is not None and matched[poison.position]):
            chosen.append((r, poison))

    def order(pair: tuple[DeadLetterRecord, DeadLetterRecord | None]) -> tuple[int, ...]:
        r, poison = pair
        head = poison if poison is not None and matched[poison.position] else r
        # Behind the poison, the chain's order: a record that failed again or came back out
        # of turn is dead-lettered anew, later in the DLQ, but keeps its place.
        place = r.chain_position if r is not head and r.chain_position is not None else -1
        return (*head.position, r is not head, place, *r.position)

    decided: dict[tuple[int, int], Planned] = {}
    seen_originals: set[tuple[str, str | None]] = set()
    places: dict[tuple[tuple[int, int], int], Planned] = {}
    items: list[Planned] = []
    for r, poison in sorted(chosen, key=order):
        follows = poison is not None and matched[poison.position]
        head = poison if follows and poison is not None else r
        item = replace(
            _decide(r, poison if follows else None, decided, seen_originals, policy),
            pulled_in=follows and not matched[r.position],
            chain=head.position,
        )
        place = (head.position, r.chain_position) if r.chain_position is not None else None
        earlier = places.get(place) if place is not None else None
        if earlier is not None and earlier.action == "replay" and earlier.record.value == r.value:
            # One copy per place is enough; a copy an earlier run sent (done) is not, and two
            # different commands at one place (a worker's stale view) both go.
            item = replace(item, action="skip", skip_reason=SKIP_DUPLICATE)
        decided[r.position] = item
        if r.offset < start.get(r.partition, 0):
            item = replace(item, action="done")  # a skip keeps its reason
        if place is not None:
            places[place] = item
        items.append(item)
    releases = _releases(ordered, items, decided) if policy.discard else ()
    return Plan(
        items=tuple(items),
        releases=releases,
        scanned=len(ordered),
    )


def _decide(
    r: DeadLetterRecord,
    poison: DeadLetterRecord | None,
    decided: Mapping[tuple[int, int], Planned],
    seen_originals: set[tuple[str, str | None]],
    policy: Policy,
) -> Planned:
    def skip(reason: str) -> Planned:
        return Planned(record=r, action="skip", skip_reason=reason)

    if r.original is not None:
        # A record diverted twice (redelivered after a restart) holds two chain positions,
        # and its session waits for both: only copies with the same token are duplicates.
        copy = (r.original, r.chain_token)
        if copy in seen_originals:
            return skip(SKIP_DUPLICATE)
        seen_originals.add(copy)
    if r.is_parked:
        if poison is None:
            if not policy.force:
                return skip(SKIP_PARKED_WITHOUT_POISON)
        elif decided[poison.position].action == "skip":
            return skip(SKIP_POISON_SKIPPED)
    if policy.discard:
        return Planned(record=r, action="discard")
    target = policy.to or r.original_topic
    if target is None:
        return skip(SKIP_NO_ORIGINAL_TOPIC)
    if target in policy.protected and not policy.force:
        return Planned(record=r, action="skip", skip_reason=SKIP_BRIDGE_TOPIC, target=target)
    if policy.topics is not None and target not in policy.topics:
        return Planned(record=r, action="skip", skip_reason=SKIP_UNKNOWN_TARGET, target=target)
    if r.replay_count >= policy.max_replays and not policy.force:
        return Planned(record=r, action="skip", skip_reason=SKIP_MAX_REPLAYS, target=target)
    return Planned(
        record=r,
        action="replay",
        target=target,
        target_partition=_target_partition(r, target, policy.topics),
    )


def _target_partition(
    r: DeadLetterRecord, target: str, topics: Mapping[str, int] | None
) -> int | None:
    """The original partition when going back to the original topic; None: by key."""
    if target != r.original_topic or r.original_partition is None:
        return None
    # The session's live records are on that partition: land next to them, whatever
    # partitioner produced the original.
    count = topics.get(target) if topics is not None else None
    if count is None or 0 <= r.original_partition < count:
        return r.original_partition
    return None


def _releases(
    ordered: Sequence[DeadLetterRecord],
    items: Sequence[Planned],
    decided: Mapping[tuple[int, int], Planned],
) -> tuple[bytes, ...]:
    """Sessions a discard releases: those whose latest poison in the DLQ is discarded.

    A session whose latest poison stays in the DLQ keeps waiting for it; releasing it would
    let its later commands overtake that poison.
    """
    latest_poison: dict[bytes, DeadLetterRecord] = {}
    for r in ordered:
        if r.key is not None and not r.is_parked:
            latest_poison[r.key] = r
    out: list[bytes] = []
    for item in items:
        key = item.record.key
        if item.action != "discard" or key is None or key in out:
            continue
        poison = latest_poison.get(key)
        verdict = decided.get(poison.position) if poison is not None else item
        if verdict is not None and verdict.action == "discard":
            out.append(key)
    return tuple(out)


def replay_headers(
    r: DeadLetterRecord, *, replay_id: str, count: int | None = None
) -> list[tuple[str, bytes]]:
    """The headers of the re-sent record: the record's own, minus error headers, plus replay ones.

    ``replay.of`` names where the record was consumed before it was dead-lettered (the
    worker releases a parked session when its poison comes back with it); ``replay.dlq``
    names the dead letter it came from, so every re-sent record can be traced and counted.
    """
    kept = [(k, v) for k, v in r.headers if not k.startswith(_ERROR_PREFIXES)]
    of = r.original or header(r.headers, H_REPLAY_OF)
    out = [*kept]
    if of:
        out.append((H_REPLAY_OF, of.encode()))
    if r.chain_position is not None and r.chain_token:
        out.append((H_REPLAY_POSITION, str(r.chain_position).encode()))
        out.append((H_REPLAY_TOKEN, r.chain_token.encode()))
    out += [
        (H_REPLAY_ID, replay_id.encode()),
        (H_REPLAY_COUNT, str(r.replay_count + 1 if count is None else count).encode()),
        (H_REPLAY_DLQ, r.dlq.encode()),
    ]
    return out


# --- progress ------------------------------------------------------------------------------


@dataclass(slots=True)
class CommitTracker:
    """Per DLQ partition, the position up to which everything is handled.

    Every offset below `end` counts as handled unless it is held; the committable position
    is the lowest held offset, or `end`. A record is held from the moment it is planned to be
    sent until its send is acknowledged; a failed or unsent record stays held, so a rerun
    starts at it.
    """

    start: dict[int, int]
    end: dict[int, int]
    held: dict[int, set[int]] = field(default_factory=dict)

    def hold(self, partition: int, offset: int) -> None:
        self.held.setdefault(partition, set()).add(offset)

    def release(self, partition: int, offset: int) -> None:
        self.held.get(partition, set()).discard(offset)

    def positions(self) -> dict[int, int]:
        """Commit positions, never below where this selection started."""
        out: dict[int, int] = {}
        for p, end in self.end.items():
            held = self.held.get(p)
            pos = min(held) if held else end
            out[p] = max(pos, self.start.get(p, 0))
        return out
