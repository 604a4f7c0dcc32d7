"""The busy gate: Talon.One's rule against parallel requests on one session or profile."""

from __future__ import annotations

from collections import Counter
from typing import Literal, TypeAlias

from bridge.simulator.counters import Counters

__all__ = ["BusyGate", "KeyKind"]

# What a request holds while it runs, and what the journal files its entry under.
KeyKind: TypeAlias = Literal["session", "profile"]


class BusyGate:
    """Busy flags of sessions and profiles, keyed by (kind, key)."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._busy: set[tuple[KeyKind, str]] = set()
        self._inside: Counter[tuple[KeyKind, str]] = Counter()

    def try_acquire(self, kind: KeyKind, key: str) -> bool:
        """Take the busy flag of a session or profile; False if a request already holds it."""
        token = (kind, key)
        counters = self._counters
        if token in self._busy:
            counters.conflicts[kind] += 1
            return False
        self._busy.add(token)
        # Counted separately from the gate, so a broken gate shows up as concurrency > 1.
        self._inside[token] += 1
        counters.max_concurrency = max(counters.max_concurrency, self._inside[token])
        return True

    def release(self, kind: KeyKind, key: str) -> None:
        token = (kind, key)
        self._busy.discard(token)
        left = self._inside[token] - 1
        if left > 0:
            self._inside[token] = left
        else:
            self._inside.pop(token, None)

    @property
    def in_flight(self) -> int:
        return len(self._busy)
