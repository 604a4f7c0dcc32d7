"""The Idempotency-Key store: responses kept by key for 24 hours, and keys in flight."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "IDEMPOTENCY_MAX_KEYS",
    "IDEMPOTENCY_TTL_S",
    "MAX_IDEMPOTENCY_KEY",
    "IdempotencyStore",
    "Lookup",
]

MAX_IDEMPOTENCY_KEY: Final = 255
IDEMPOTENCY_TTL_S: Final = 24 * 3600.0
# Memory bound for long benchmark runs (roughly 2 KB per key).
IDEMPOTENCY_MAX_KEYS: Final = 200_000


@dataclass(frozen=True, slots=True)
class Lookup:
    """Outcome of `IdempotencyStore.begin`: ``new``, ``replay``, ``in_flight`` or ``mismatch``."""

    outcome: Literal["new", "replay", "in_flight", "mismatch"]
    status: int = 0
    body: bytes = b""


@dataclass(slots=True)
class _Stored:
    fingerprint: str
    status: int
    body: bytes
    expires_at: float


class IdempotencyStore:
    """Responses stored by Idempotency-Key for 24 h; in-flight keys are tracked separately."""

    def __init__(
        self,
        ttl_s: float = IDEMPOTENCY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = IDEMPOTENCY_MAX_KEYS,
    ) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._max_keys = max_keys
        self.evicted = 0
        # Insertion order == expiry order because the TTL is constant.
        self._done: OrderedDict[str, _Stored] = OrderedDict()
        self._in_flight: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._done)

    def begin(self, key: str, fingerprint: str) -> Lookup:
        """Reserve `key` for a new request, or say why it cannot be processed as new."""
        pending = self._in_flight.get(key)
        if pending is not None:
            return Lookup("mismatch" if pending != fingerprint else "in_flight")
        stored = self._done.get(key)
        if stored is not None and stored.expires_at > self._clock():
            if stored.fingerprint != fingerprint:
                return Lookup("mismatch")
            return Lookup("replay", stored.status, stored.body)
        self._in_flight[key] = fingerprint
        return Lookup("new")

    def complete(self, key: str, status: int, body: bytes) -> None:
        """Store the response of a reserved key (only successful outcomes are kept)."""
        fingerprint = self._in_flight.pop(key, None)
        if fingerprint is None:
            return
        now = self._clock()
        self._done.pop(key, None)
        self._done[key] = _Stored(fingerprint, status, body, now + self._ttl)
        while self._done:
            first = next(iter(self._done.values()))
            if first.expires_at > now and len(self._done) <= self._max_keys:
                break
            if first.expires_at > now:
                # Evicted before its 24 h: a later retry with this key is applied afresh.
                self.evicted += 1
            self._done.popitem(last=False)

    def abandon(self, key: str) -> None:
        """Free a reserved key without storing anything (errors may be retried with it)."""
        self._in_flight.pop(key, None)

    def clear(self) -> None:
        self._done.clear()
        self._in_flight.clear()
