"""What `talon-bridge replay` does with each selected dead letter, and in which order. No I/O.

A replay reads the dead-letter topic (DLQ) up to a fixed stop point, turns each record into a
`DeadLetterRecord`, and `plan` decides per record: replay, discard, skip (with a reason), or
done (handled by an earlier run of the same selection). The rules:

* The filters (`Selection`, `replay.selection`) decide what is selected.
* A parked record (reason ``parked``) follows its poison, the dead letter whose source
  coordinates it names in ``__talon.bridge.parked.behind``: selecting the poison selects its
  parked records too, whatever the filters say, and they are sent right after it. A parked
  record selected without its poison is refused (``parked-without-poison``) unless forced,
  since the worker would only divert it again while the session waits for its poison.
* Within a session, records keep their DLQ order (the worker writes a session's dead letters,
  in order, to one DLQ partition), with each poison ahead of its parked records, and these in
  chain order (``__talon.bridge.parked.position``), one copy per place.
* A dead letter the worker wrote without the original's value (``__talon.bridge.omitted``:
  it was too large for the producer) is refused (``value-omitted``); the original is in its
  own topic, at the coordinates the headers give, while retention keeps it.

The headers a record is re-sent with are `replay.records.replay_headers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from bridge.replay.records import DeadLetterRecord
from bridge.replay.selection import Selection

__all__ = [
    "SAFE_SKIPS",
    "SKIP_BRIDGE_TOPIC",
    "SKIP_DUPLICATE",
    "SKIP_MAX_REPLAYS",
    "SKIP_NO_ORIGINAL_TOPIC",
    "SKIP_PARKED_WITHOUT_POISON",
    "SKIP_POISON_SKIPPED",
    "SKIP_UNKNOWN_TARGET",
    "SKIP_VALUE_OMITTED",
    "Action",
    "Plan",
    "Planned",
    "Policy",
    "plan",
]

SKIP_NO_ORIGINAL_TOPIC = "no-original-topic"
SKIP_UNKNOWN_TARGET = "unknown-target-topic"
SKIP_MAX_REPLAYS = "max-replays"
SKIP_PARKED_WITHOUT_POISON = "parked-without-poison"
SKIP_POISON_SKIPPED = "poison-skipped"
SKIP_DUPLICATE = "duplicate"
SKIP_BRIDGE_TOPIC = "bridge-topic"
SKIP_VALUE_OMITTED = "value-omitted"
# Skips that leave nothing undone: a second dead letter of the same source record.
SAFE_SKIPS = frozenset({SKIP_DUPLICATE})


Action = Literal["replay", "discard", "skip", "done"]


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
    if r.omitted is not None:
        # Sent without its value, there is nothing to replay: the original is in its topic.
        return skip(SKIP_VALUE_OMITTED)
    target = policy.to or r.original_topic
    if target is None:
        return skip(SKIP_NO_ORIGINAL_TOPIC)
    refused = _target_refusal(r, target, policy)
    if refused is not None:
        return Planned(record=r, action="skip", skip_reason=refused, target=target)
    return Planned(
        record=r,
        action="replay",
        target=target,
        target_partition=_target_partition(r, target, policy.topics),
    )


def _target_refusal(r: DeadLetterRecord, target: str, policy: Policy) -> str | None:
    """Why `r` may not go to `target`, or None."""
    if target in policy.protected and not policy.force:
        return SKIP_BRIDGE_TOPIC
    if policy.topics is not None and target not in policy.topics:
        return SKIP_UNKNOWN_TARGET
    if r.replay_count >= policy.max_replays and not policy.force:
        return SKIP_MAX_REPLAYS
    return None


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
