"""Per-session and per-profile journals of applied requests: the ordering oracle's record."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Final

from bridge.simulator.gate import KeyKind
from bridge.simulator.routing import Mutation

__all__ = ["JOURNAL_LIMIT", "Journal", "JournalEntry", "RequestMeta"]

# Memory bound for long benchmark runs (roughly 0.5 KB per entry).
JOURNAL_LIMIT: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Identity of one request, recorded in the journal when it is applied."""

    event_id: str | None = None
    idempotency_key: str | None = None
    body_sha256: str = ""
    arrival: int = 0
    acquired_ns: int = 0
    traceparent: str | None = None  # the W3C trace context the request carried


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One applied request, in the order it was applied to its session or profile."""

    seq: int
    operation: Mutation
    meta: RequestMeta
    applied_ns: int
    time: str
    effect_types: tuple[str, ...]
    state_before: str | None = None
    state: str | None = None
    update_count: int | None = None
    event_type: str | None = None
    talon_event_id: int | None = None
    integration_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "eventId": self.meta.event_id,
            "idempotencyKey": self.meta.idempotency_key,
            "operation": self.operation,
        }
        if self.operation in ("event", "event_v3"):
            out["eventType"] = self.event_type
            out["talonEventId"] = self.talon_event_id
            if self.integration_id is not None:
                out["integrationId"] = self.integration_id
        else:
            out["stateBefore"] = self.state_before
            out["state"] = self.state
            out["updateCount"] = self.update_count
        out["traceparent"] = self.meta.traceparent
        out["effectTypes"] = list(self.effect_types)
        out["bodySha256"] = self.meta.body_sha256
        out["arrival"] = self.meta.arrival
        out["acquiredNs"] = self.meta.acquired_ns
        out["appliedNs"] = self.applied_ns
        out["time"] = self.time
        return out


class Journal:
    """Per-session and per-profile journals, holding at most `limit` entries in total.

    Past the limit the oldest entries are dropped (sequence numbers keep counting, so a
    journal that lost its head starts above 1); `dropped` says how many.
    """

    def __init__(self, limit: int = JOURNAL_LIMIT) -> None:
        self.limit = limit
        self._books: dict[KeyKind, dict[str, deque[JournalEntry]]] = {"session": {}, "profile": {}}
        self._seq: Counter[tuple[KeyKind, str]] = Counter()
        self._order: deque[tuple[KeyKind, str]] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._order)

    def next_seq(self, kind: KeyKind, key: str) -> int:
        self._seq[(kind, key)] += 1
        return self._seq[(kind, key)]

    def append(self, kind: KeyKind, key: str, entry: JournalEntry) -> None:
        self._books[kind].setdefault(key, deque()).append(entry)
        self._order.append((kind, key))
        while len(self._order) > self.limit:
            old_kind, old_key = self._order.popleft()
            book = self._books[old_kind]
            entries = book[old_key]
            entries.popleft()
            if not entries:
                del book[old_key]
            self.dropped += 1

    def entries(self, kind: KeyKind, key: str) -> list[dict[str, Any]]:
        return [e.to_json() for e in self._books[kind].get(key, ())]

    def dump(self) -> dict[str, Any]:
        return {
            f"{kind}s": {key: [e.to_json() for e in entries] for key, entries in book.items()}
            for kind, book in self._books.items()
        }
