"""When a server may take a record and send its call: the in-flight limit and the pace.

With `BRIDGE_ADAPTIVE_IN_FLIGHT`, a server takes a place under the adaptive limit
(`bridge.engine.concurrency`) before it takes a record from the ready queue, and gives it
back when it is done with it; the records it cannot run meanwhile stay in the queue, oldest
first, for whichever server gets the next place. Without it, the `BRIDGE_MAX_IN_FLIGHT`
servers are the limit. Either way the call then waits for its slot of the send rate (the
`Pacer`), and its answer teaches both.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from bridge.engine.concurrency import ConcurrencyLimit
from bridge.engine.pacing import Pacer
from bridge.errors import ApiError, ApiTimeoutError, RateLimitedError, ServerError
from bridge.metrics import Metrics

__all__ = ["Admission", "is_drop"]


def is_drop(exc: ApiError) -> bool:
    """An answer that says the API takes too many calls at once: 429, 503 or a timeout."""
    return isinstance(exc, (RateLimitedError, ApiTimeoutError)) or (
        isinstance(exc, ServerError) and exc.status == 503
    )


class Admission:
    """The places under the in-flight limit (when adaptive) and the pace of sends."""

    def __init__(
        self,
        pacer: Pacer,
        limit: ConcurrencyLimit | None,
        metrics: Metrics,
        clock: Callable[[], float],
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        self.pacer = pacer
        self.limit = limit
        self._metrics = metrics
        self._clock = clock
        self.in_use = 0
        # Calls running now (the places taken, if not given): whether the limit is in use.
        # A place held by a server waiting for a record is not a call.
        self._in_flight = in_flight or (lambda: self.in_use)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._pace_lock = asyncio.Lock()

    # --- places under the in-flight limit -------------------------------------------------

    async def enter(self) -> None:
        """Wait for a place under the limit; first come, first served."""
        limit = self.limit
        if limit is None or (self.in_use < limit.limit and not self._waiters):
            self.in_use += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # given a place just as the server was stopped
            raise

    def leave(self) -> None:
        self.in_use -= 1
        self._wake()

    def _wake(self) -> None:
        limit = self.limit
        if limit is None:
            return
        waiters = self._waiters
        while waiters and self.in_use < limit.limit:
            waiter = waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)

    # --- the send rate ---------------------------------------------------------------------

    async def pace(self) -> None:
        """Take the next send slot of the pacer, waiting for it when a rate is in force."""
        pacer = self.pacer
        if pacer.limit is None:
            pacer.reserve(self._clock())  # never waits; counts the send
            return
        # One caller at a time takes the next slot, in the order they came: the rate then
        # applies at once, also to the calls released together when the gate reopens.
        async with self._pace_lock:
            wait = pacer.reserve(self._clock())
            if wait > 0:
                await asyncio.sleep(wait)

    # --- answers ---------------------------------------------------------------------------

    def accepted(self, sent_at: float, pacer: Pacer | None = None) -> None:
        """A call sent at `sent_at` succeeded; `pacer` is its application's, when that is
        not the worker-wide one."""
        now = self._clock()
        self.pacer.on_accepted(now, sent_at)
        if pacer is not None and pacer is not self.pacer:
            pacer.on_accepted(now, sent_at)
        if self.limit is not None:
            self._learn(now, sent_at, dropped=False)

    def failed(self, now: float, sent_at: float, exc: ApiError) -> None:
        """A call sent at `sent_at` failed with `exc` (the pacer hears of 429s apart)."""
        if self.limit is None:
            return
        if is_drop(exc):
            self._learn(now, sent_at, dropped=True)
        elif exc.status is not None:
            self._learn(now, sent_at, dropped=False)  # an answer all the same: its latency

    def _learn(self, now: float, sent_at: float, *, dropped: bool) -> None:
        assert self.limit is not None  # noqa: S101 - only called when adaptive
        # The call answered was running too.
        running = self._in_flight() + 1
        moved = self.limit.on_answer(now, sent_at, dropped=dropped, in_use=running)
        if moved is not None:
            self._metrics.in_flight_limit_changes.labels(moved).inc()
            if moved == "up":
                self._wake()
