"""Retry timing: capped exponential backoff with full jitter, honouring Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RETRY_AFTER_MARGIN", "RetryPolicy"]

# Seconds added to every Retry-After wait.
RETRY_AFTER_MARGIN = 0.02


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try again, and when to give up.

    `max_attempts` counts every call, the first included. A 409 ("this session or profile is
    busy") is bounded by elapsed time only, never by attempts.
    """

    base_delay: float = 0.1
    max_delay: float = 30.0
    max_attempts: int = 10
    max_elapsed: float = 300.0

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after the `attempt`-th failed call (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2.0 ** (attempt - 1)))
        draw = (rng or random).random()
        if retry_after is not None:
            # The server's hint is a floor, with a margin for timers that fire a little early
            # (uvloop's clock is cached per loop iteration); jitter on top spreads the herd.
            spread = draw * min(cap, 0.1 * retry_after)
            return retry_after + RETRY_AFTER_MARGIN + spread
        return draw * cap

    def exhausted(self, attempts: int, elapsed: float, *, conflict: bool = False) -> bool:
        if elapsed >= self.max_elapsed:
            return True
        return not conflict and attempts >= self.max_attempts
