"""The API gate: when no record is to blame, calls wait instead of spending retry budgets.

The gate closes for one of three reasons: `auth` (401/403, the key is wrong or lacks
permission), `outage` (consecutive retryable failures across several sessions) or `throttled`
(429s go on although the pacer already slowed down). While closed, intake pauses and every
call waits. It reopens with growing backoff to let a probe through, never before the latest
Retry-After; the first success clears it. A failing probe closes it again, for longer.

A pure state machine: time (`now`, seconds on a monotonic clock) and the Retry-After floor
are passed in; the caller owns timers, waiting and logging.
"""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

from bridge.engine.retry import RETRY_AFTER_MARGIN

__all__ = ["GATE_REASONS", "OUTAGE_SESSIONS", "OUTAGE_STREAK", "ApiGate", "GateReason"]

GateReason: TypeAlias = Literal["outage", "auth", "throttled"]
GATE_REASONS: tuple[GateReason, ...] = get_args(GateReason)

# Consecutive retryable failures, over at least this many sessions, that mean "the API is
# down" rather than "these records are failing": one failing session never trips it. The same
# streak of 429s, all to calls the pacer had already slowed, closes the gate as "throttled".
OUTAGE_STREAK = 12
OUTAGE_SESSIONS = 3


class ApiGate:
    """Open or closed, and why; see the module docstring."""

    def __init__(
        self,
        *,
        max_backoff: float,
        streak: int = OUTAGE_STREAK,
        sessions: int = OUTAGE_SESSIONS,
    ) -> None:
        self.max_backoff = max_backoff
        self._streak_needed = streak
        self._sessions_needed = sessions
        self.is_open = True
        # Why it closed; kept while probing (reopened but not yet answered) until a success.
        self.reason: GateReason | None = None
        self.closures = 0  # since the last success; grows the probing backoff
        self._streak = 0
        self._streak_keys: set[bytes | None] = set()
        self._throttled = 0
        self._throttled_keys: set[bytes | None] = set()

    def closed_for(self, reason: GateReason) -> bool:
        return not self.is_open and self.reason == reason

    @property
    def auth_rejected(self) -> bool:
        """The key was refused and no call has succeeded since (probing included)."""
        return self.reason == "auth"

    def succeeded(self) -> GateReason | None:
        """A call went through. Returns the reason the gate recovers from, if it was shut."""
        if self._streak or self._throttled:
            self._streak = self._throttled = 0
            self._streak_keys.clear()
            self._throttled_keys.clear()
        if not self.closures:
            return None
        reason = self.reason
        self.closures = 0
        self.reason = None
        return reason

    def throttled(self, session: bytes | None, *, slowed: bool) -> bool:
        """A 429; `slowed`: the call went out at a rate the pacer had already lowered (only
        those count). True when the call must wait at the gate (closing it as `throttled`)."""
        if slowed:
            self._throttled += 1
            self._throttled_keys.add(session)
        return self.reason == "throttled" or (
            self._throttled >= self._streak_needed
            and len(self._throttled_keys) >= self._sessions_needed
        )

    def failed(self, session: bytes | None) -> bool:
        """A retryable failure other than 409 or 429. True when the call must wait at the
        gate (closing it as `outage`)."""
        self._streak += 1
        self._streak_keys.add(session)
        return self.reason == "outage" or (
            self._streak >= self._streak_needed and len(self._streak_keys) >= self._sessions_needed
        )

    def close(self, reason: GateReason, now: float, not_before: float) -> float | None:
        """Close for `reason`. Returns when to probe, or None if it was closed already.

        `not_before` is the latest Retry-After deadline: a throttled gate waits for it alone.
        """
        if not self.is_open:
            return None
        self.is_open = False
        self.reason = reason
        self.closures += 1
        backoff = min(self.max_backoff, 0.5 * 2.0 ** min(self.closures - 1, 10))
        if reason == "throttled" and not_before > now:
            backoff = 0.0  # Retry-After says when; the pacer meters the reopening
        return now + backoff

    @staticmethod
    def reopen_at(probe_at: float, not_before: float) -> float:
        """When to reopen for a probe due at `probe_at`: never before the Retry-After."""
        return max(probe_at, not_before + RETRY_AFTER_MARGIN)

    def reopen(self, now: float, not_before: float) -> bool:
        """Reopen for a probe, unless a Retry-After that arrived meanwhile says to wait on
        (the caller then asks `reopen_at` again)."""
        if not_before + RETRY_AFTER_MARGIN > now:
            return False
        self.is_open = True
        return True
