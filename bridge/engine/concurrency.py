"""The adaptive in-flight limit: how many API calls may run at once (pure, no I/O).

AIMD in the spirit of Netflix's concurrency-limits, with a latency signal like TCP Vegas':

* Answers are judged in **epochs**: the answers to calls sent since the previous decision,
  `min_answers` of them. An epoch therefore lasts at least one round trip, so failures that
  a cut already answers (calls sent before it) cannot cut again.
* An epoch whose share of **drops** (429, 503, timeouts) is above `drop_tolerance`, or whose
  mean latency is above `tolerance` times the **baseline**, cuts the limit by `decrease`
  (multiplicative decrease), never below `floor`. The baseline is the lowest epoch mean of
  the last `window` seconds: a slower API becomes the new normal after that long, so only
  latency that rises with the load keeps the limit down.
* A healthy epoch in which at least half the limit was in use grows the limit by `growth` of
  itself (at least one call), never above `ceiling` (`BRIDGE_MAX_IN_FLIGHT`). A limit nobody
  uses proves nothing, so it does not grow then.

It starts at the ceiling: a healthy API never waits for the limit to be found.
Time is passed in (`now`, seconds on a monotonic clock), so every rule is unit-tested
without a clock.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

__all__ = ["ConcurrencyLimit", "Direction"]

Direction = Literal["down", "up"]


class ConcurrencyLimit:
    """Calls allowed at once, adapted to drops and latency; see the module docstring."""

    def __init__(
        self,
        ceiling: int,
        *,
        floor: int = 4,
        decrease: float = 0.9,
        growth: float = 0.1,
        tolerance: float = 2.0,
        drop_tolerance: float = 0.05,
        min_answers: int = 20,
        window: float = 30.0,
    ) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        if not 0 < decrease < 1:
            raise ValueError("decrease must be between 0 and 1")
        self._ceiling = ceiling
        self._floor = max(1, min(floor, ceiling))
        self._decrease = decrease
        self._growth = growth
        self._tolerance = tolerance
        self._drop_tolerance = drop_tolerance
        self._min_answers = min_answers
        self._window = window
        self._limit = float(ceiling)
        # The current epoch: answers to calls sent since it began.
        self._epoch_start = -math.inf
        self._answers = 0
        self._drops = 0
        self._latency = 0.0  # summed over the epoch's answers that were not drops
        self._peak = 0  # most calls in use during the epoch
        # (when, epoch mean latency), the means increasing: the window's minimum is first.
        self._means: deque[tuple[float, float]] = deque()

    @property
    def limit(self) -> int:
        """Calls allowed at once now."""
        return int(self._limit)

    @property
    def ceiling(self) -> int:
        return self._ceiling

    @property
    def floor(self) -> int:
        return self._floor

    @property
    def baseline(self) -> float | None:
        """The lowest epoch mean latency of the window (None before the first epoch)."""
        return self._means[0][1] if self._means else None

    def on_answer(
        self, now: float, sent_at: float, *, dropped: bool, in_use: int
    ) -> Direction | None:
        """A call sent at `sent_at` was answered at `now`; `dropped` for a 429, a 503 or a
        timeout. `in_use` is how many calls hold a place under the limit now.

        Returns how the limit moved, or None when it did not.
        """
        if sent_at < self._epoch_start:
            return None  # sent before the last decision: that decision already saw its like
        self._answers += 1
        self._peak = max(self._peak, in_use)
        if dropped:
            self._drops += 1
        else:
            self._latency += now - sent_at
        if self._answers < self._min_answers:
            return None
        return self._decide(now)

    def _decide(self, now: float) -> Direction | None:
        answers, drops = self._answers, self._drops
        used = 2 * self._peak >= self._limit
        cut = drops > self._drop_tolerance * answers
        if answers > drops:
            mean = self._latency / (answers - drops)
            baseline = self._remember(now, mean)
            cut = cut or mean > self._tolerance * baseline
        self._epoch_start = now
        self._answers = self._drops = self._peak = 0
        self._latency = 0.0
        before = self.limit
        if cut:
            self._limit = max(float(self._floor), self._limit * self._decrease)
        elif used:
            self._limit = min(
                float(self._ceiling), self._limit + max(1.0, self._limit * self._growth)
            )
        after = self.limit
        if after == before:
            return None
        return "down" if after < before else "up"

    def _remember(self, now: float, mean: float) -> float:
        """Add an epoch's mean latency to the window; returns the window's lowest."""
        means = self._means
        while means and means[-1][1] >= mean:
            means.pop()
        means.append((now, mean))
        horizon = now - self._window
        while means[0][0] < horizon:
            means.popleft()
        return means[0][1]
