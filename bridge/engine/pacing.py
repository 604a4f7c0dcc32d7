"""Send pacing: how fast calls may go out, adapted to what the API accepts (pure, no I/O).

One `Pacer` holds every limit on the send rate, so each source of a limit plugs into the same
place instead of adding a second throttle:

* the **adaptive rate**, learnt from 429s. Answers are judged in epochs (at least
  `min_answers` answers, and `cooldown` seconds or `max_answers` answers), counting only
  calls sent after the previous decision. An epoch whose share of 429s is above what the
  API rejects anyway cuts the rate by `decrease` (multiplicative decrease). The first cut
  starts from what the API accepted while the calls went out (their send rate, idle time
  left out, less the share rejected), as does a cut far above the limit (at most halving).
  An epoch below it grows the rate by a constant step per second while sends wait for it
  (additive increase) back to where the 429s began, and beyond that with a step doubling
  every cooldown, so a raised limit (or a first cut too deep) is found in seconds.
* **Start-up (slow start).** A backlog at start would otherwise go out at once, into a limit
  nobody knows yet. The rate starts at `initial` calls/s and doubles every `start_doubling`
  seconds until 429s show (cut after `min_answers` answers when far above a limit, from what
  the API accepted) or the sends stop waiting for it (then nothing limits the rate).
* A cut that leaves the share of 429s nearer to what it was than to what a limit on the
  rate would leave shows that they do not follow the send rate (e.g. random 429s, tested
  only below a share of `_FAR`): the cut is undone, and that share becomes the **noise
  floor** tolerated from then on. The floor fades, so a real limit met later is found.
* a fixed **ceiling** (`set_ceiling`), e.g. a member's share of a group-wide budget; the
  adaptive rate never grows above it.
* the **Retry-After floor**: the latest deadline any answer named, measured from when that
  answer arrived. The worker's API gate does not reopen before it.

Time is passed in (`now`, seconds on a monotonic clock), so every rule is unit-tested
without a clock.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["Pacer"]


def _spread(share: float, answers: int) -> float:
    """Three standard deviations of a share of 429s measured over `answers` answers."""
    return 3 * math.sqrt(share * (1 - share) / answers)


# A share of 429s that says the rate is far above the limit.
_FAR = 0.3


class Pacer:
    """Send-rate limit and Retry-After floor; see the module docstring."""

    def __init__(
        self,
        *,
        ceiling: float | None = None,
        decrease: float = 0.9,
        growth: float = 0.1,
        cooldown: float = 1.0,
        min_answers: int = 10,
        max_answers: int = 100,
        tolerance: float = 0.05,
        min_rate: float = 1.0,
        burst: float = 0.01,
        initial: float | None = 50.0,
        start_doubling: float = 0.25,
    ) -> None:
        if not 0 < decrease < 1:
            raise ValueError("decrease must be between 0 and 1")
        self._ceiling = ceiling
        self._decrease = decrease
        self._growth = growth
        self._cooldown = cooldown
        self._min_answers = min_answers
        self._max_answers = max_answers
        self._tolerance = tolerance
        self._min_rate = min_rate
        # Seconds of sends that may go out back to back: a short burst costs the API's own
        # bucket little and spares a timer per call.
        self._burst = burst
        # Slow start: from `initial` calls/s the rate doubles every `start_doubling` seconds
        # until 429s show or the sends no longer wait for it, so a start-up backlog does not
        # go out all at once into a limit it cannot know yet.
        self._rate: float | None = initial
        self._initial = initial
        self._slow = initial is not None
        self._start_doubling = start_doubling
        self._step = 0.0  # rate added per second while the limit binds
        self._peak = 0.0  # the rate at which the last cut found 429s
        self._grown_at = self._above_peak_at = 0.0
        self._waited_at = -math.inf
        self._tat = -math.inf  # when the next send is due at the current limit
        self._accepted: deque[float] = deque()  # answers accepted in the last second
        self._started: float | None = None
        self._not_before = -math.inf
        # The current epoch: answers to calls sent since it began.
        self._epoch_start = -math.inf
        self._answers = 0
        self._rejected = 0
        # Sends of the epoch, and the time spent sending them: gaps longer than a few send
        # intervals are idle time (nothing to send), not a slow rate.
        self._sent = 0
        self._busy = 0.0
        self._last_send = -math.inf
        # The last cut, until the epoch after it shows whether it helped.
        # (rate before, its share of 429s, the share expected after the cut if the 429s
        # follow the rate)
        self._trial: tuple[float, float, float] | None = None
        self._noise = 0.0  # share of 429s that does not follow the send rate
        self._ramping = False

    # --- limits ---------------------------------------------------------------------------

    @property
    def limit(self) -> float | None:
        """Calls per second allowed now, or None while nothing limits the rate."""
        rate, ceiling = self._rate, self._ceiling
        if rate is None:
            return ceiling
        return rate if ceiling is None else min(rate, ceiling)

    @property
    def noise(self) -> float:
        """The share of 429s found not to follow the send rate."""
        return self._noise

    def set_ceiling(self, ceiling: float | None) -> None:
        """A fixed upper bound on the rate (None removes it). A ceiling below `min_rate` is
        taken as `min_rate`: a sender whose share is nothing has nothing to send anyway."""
        if ceiling is not None:
            ceiling = max(ceiling, self._min_rate)
        old, rate = self._ceiling, self._rate
        self._ceiling = ceiling
        if ceiling is None or rate is None:
            return
        if rate > ceiling:
            self._rate = ceiling
        elif old is not None and rate >= old:
            # The ceiling held the rate, not 429s: it follows the ceiling up.
            self._rate = ceiling

    def reserve(self, now: float) -> float:
        """Take the next send slot; returns how many seconds to wait before sending."""
        if self._started is None:
            self._started = now
            self._epoch_start = self._grown_at = now
        limit = self.limit
        idle = max(0.05, 2.0 / limit) if limit is not None else 0.05
        self._sent += 1
        if self._last_send > -math.inf:
            self._busy += min(max(0.0, now - self._last_send), idle)
        self._last_send = now
        if limit is None:
            return 0.0
        due = max(self._tat, now - self._burst)
        self._tat = due + 1.0 / limit
        if due > now - self._burst:
            self._waited_at = now  # sends queue for the limit: demand is at least the limit
        return max(0.0, due - now)

    # --- answers --------------------------------------------------------------------------

    def on_accepted(self, now: float, sent_at: float) -> None:
        """A call sent at `sent_at` was answered without a rate-limit rejection."""
        accepted = self._accepted
        accepted.append(now)
        while accepted[0] <= now - 1.0:
            accepted.popleft()
        self._grow(now)
        self._count(now, sent_at, rejected=False)

    def on_throttled(self, now: float, sent_at: float, retry_after: float | None) -> bool:
        """A 429 arrived for a call sent at `sent_at`.

        Returns True when the call was sent in the current epoch, i.e. after the pacer last
        decided: a rejection of what it already slowed down, not an echo of an older burst.
        """
        self.on_retry_after(now, retry_after)
        return self._count(now, sent_at, rejected=True)

    def on_retry_after(self, now: float, retry_after: float | None) -> None:
        """An answer (429 or 503) asked to wait `retry_after` seconds from `now`."""
        if retry_after is not None:
            self._not_before = max(self._not_before, now + retry_after)

    @property
    def not_before(self) -> float:
        """The latest Retry-After deadline seen (-inf when none was)."""
        return self._not_before

    def retry_after_in_force(self, now: float) -> float:
        """Seconds until the latest Retry-After deadline, 0 once it has passed."""
        return max(0.0, self._not_before - now)

    # --- the control loop -----------------------------------------------------------------

    def _grow(self, now: float) -> None:
        rate = self._rate
        elapsed = now - self._grown_at
        self._grown_at = now
        if rate is None or self._trial is not None:
            return
        # Not while this epoch's 429s already show the limit: that would only overshoot it.
        if self._rejected > (self._noise + self._tolerance) * self._answers:
            return
        if self._slow:
            if now - self._waited_at > self._cooldown:
                self._slow, self._rate = False, None  # demand is below the rate: no limit
            else:
                self._rate = rate * 2 ** (elapsed / self._start_doubling)
            return
        # Only while sends wait for the limit: a rate nobody uses proves nothing.
        if now - self._waited_at <= self._cooldown:
            # Back to where the 429s began at a constant step; past it the step doubles every
            # cooldown, so a limit that was raised is found in seconds, not minutes.
            if rate < self._peak:
                self._above_peak_at = now
            if self._ramping:
                grown = rate * 2 ** (elapsed / self._cooldown)
            else:
                doublings = min(4.0, (now - self._above_peak_at) // self._cooldown)
                grown = rate + self._step * 2**doublings * elapsed
            # Never far above what is used: a limit twice the calls accepted lately is none.
            grown = min(grown, max(rate, 2.0 * len(self._accepted) + self._min_rate))
            ceiling = self._ceiling
            self._rate = grown if ceiling is None else min(grown, ceiling)

    def _count(self, now: float, sent_at: float, *, rejected: bool) -> bool:
        if sent_at < self._epoch_start:
            return False
        self._answers += 1
        self._rejected += rejected
        answers = self._answers
        if answers >= self._max_answers or (
            answers >= self._min_answers
            and (
                now - self._epoch_start >= self._cooldown
                # Before any limit, a burst far above one is cut at once, not a second later.
                or ((self._rate is None or self._slow) and self._rejected > _FAR * answers)
            )
        ):
            self._decide(now, self._rejected / answers, answers)
        return True

    def _decide(self, now: float, share: float, answers: int) -> None:
        noise = self._noise
        # Three standard deviations of the noise share over this many answers.
        allowed = noise + self._tolerance + _spread(noise, answers)
        trial = self._trial
        self._trial = None
        if (
            trial is not None
            and trial[1] < _FAR  # far above a limit the share moves too much to tell
            and share >= trial[1] - _spread(trial[1], answers)
            and share > trial[2] + 2 * _spread(trial[2], answers) + self._tolerance
        ):
            # The share of 429s did not drop, and stayed clearly above what a limit on the
            # rate would have left: they do not follow the rate. Undo the cut.
            self._rate = self._peak = trial[0]
            self._noise = max(noise, share)
        elif share > allowed:
            self._cut(now, share)
        else:
            self._noise = noise * 0.97  # fades, so a real limit met later is found
        self._epoch_start = now
        self._answers = self._rejected = 0
        self._sent, self._busy = 0, 0.0

    def _cut(self, now: float, share: float) -> None:
        before = self._rate
        current = self.limit
        # What the API accepted while the epoch's calls went out: their send rate less the
        # share rejected. The first cut starts from it; later ones only when far above the
        # limit (a small share of 429s says little about how far), and at most halving.
        accepted: float | None = None
        if self._busy > 0 and self._sent > 1:
            accepted = self._sent / self._busy * (1 - share)
        first = current is None or self._ramping or self._slow
        self._slow = False
        if current is None or first:
            base = accepted if accepted is not None else float(len(self._accepted))
            if current is None and self._initial is not None:
                # Judged on a few answers, perhaps all 429s, a burst that nothing limited says
                # little about the limit: probe up from no lower than the slow start began.
                base = max(base, self._initial)
        elif accepted is not None and share > _FAR:
            base = min(current, max(accepted, current / 2))
        else:
            base = current
        rate = max(self._min_rate, base * self._decrease)
        # Growth is linear back to where 429s began, then probing.
        self._peak = 0.0 if first else base
        self._rate = rate
        self._step = rate * self._growth
        self._grown_at = self._above_peak_at = now
        # The first cut starts from an estimate that the API's own burst inflates: only a
        # cut of a rate already in force tests whether the 429s follow the rate.
        self._trial = None
        # A cut from a burst (nothing limited the rate yet) only bounds the limit from below:
        # the rate doubles from there each cooldown until 429s show again.
        self._ramping = current is None
        if not first and before is not None:
            # Under a limit the API accepts the same rate, so the share drops to this.
            expected = max(0.0, 1 - (1 - share) * before / rate)
            self._trial = (before, share, expected)
