"""Partitions coming and going: assignment, the drain before a handover, release, loss, and
input logs that are gone. Called on the event loop by the consumer thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bridge.metrics import Metrics
from bridge.types import TP
from bridge.worker.pipeline import Pipeline

__all__ = ["Rebalance"]

# The worker's log lines keep its logger name, which log filters and alerts key on.
log = logging.getLogger("bridge.worker.root")


class Rebalance:
    """What the pipeline does when the group moves partitions."""

    def __init__(
        self,
        pipeline: Pipeline,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        on_owned: Callable[[set[TP]], None] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._metrics = metrics
        self._clock = clock
        # Told the partitions owned after each change (the group budget's share follows them).
        self._on_owned = on_owned

    def _owned_changed(self) -> None:
        assigned = self._pipeline.assigned
        self._metrics.assigned.set(len(assigned))
        if self._on_owned is not None:
            self._on_owned(assigned)

    def on_assigned(self, partitions: list[TP]) -> None:
        assigned = self._pipeline.assigned
        assigned.update(partitions)
        self._metrics.rebalances.labels("assign").inc()
        self._owned_changed()

    def on_log_gone(self, partitions: list[TP]) -> None:
        for tp in partitions:
            self._pipeline.drop_log(
                tp, "input topic deleted; its positions will not be committed", f"{tp[0]}[{tp[1]}]"
            )

    async def drain(self, partitions: list[TP], timeout: float) -> dict[TP, int]:
        """Finish what the revoked partitions already hold, then hand back their positions.

        Records already read keep flowing (no new ones arrive for these partitions), so a
        graceful handoff leaves nothing for the next owner to redo. At 60% of `timeout`
        whatever has not started is dropped (the next owner reads it again); calls under way
        get until 85% to finish and be acknowledged, leaving the rest for commit and close.
        """
        pipeline = self._pipeline
        started = self._clock()
        revoking = set(partitions)
        pipeline.draining |= revoking
        offsets = pipeline.offsets
        pending, in_progress = offsets.pending_count, offsets.in_progress
        try:
            if not await self._wait_drained(
                lambda: not any(pending(tp) for tp in revoking), started + 0.6 * timeout
            ):
                # What finished past the first record dropped here is done again too.
                log.warning(
                    "drain deadline: records not started are left to the next owner",
                    extra={"records": sum(pending(tp) for tp in revoking)},
                )
            pipeline.drop_pending(revoking)
            if not await self._wait_drained(
                lambda: not any(in_progress(tp) for tp in revoking), started + 0.85 * timeout
            ):
                log.warning(
                    "drain timed out; uncommitted records will be read again by the next owner",
                    extra={"in_flight": sum(in_progress(tp) for tp in revoking)},
                )
        finally:
            pipeline.draining -= revoking
        self._metrics.drain_duration.observe(self._clock() - started)
        positions: dict[TP, int] = {}
        for tp in partitions:
            pos = offsets.position(tp)
            if pos is not None:
                positions[tp] = pos
        return positions

    async def _wait_drained(self, done: Callable[[], bool], deadline: float) -> bool:
        drained = self._pipeline.drained
        while not done():
            drained.clear()
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drained.wait(), remaining)
        return True

    def release(self, partitions: list[TP], reprocessed: int) -> None:
        """Revoked partitions are handed over (committed, or given up on)."""
        pipeline = self._pipeline
        if pipeline.output is not None:
            pipeline.output.forget(partitions)
        for tp in partitions:
            pipeline.offsets.forget(tp)
            pipeline.assigned.discard(tp)
        if reprocessed:
            self._metrics.records_reprocessed.inc(reprocessed)
        self._metrics.rebalances.labels("revoke").inc()
        self._owned_changed()

    def on_lost(self, partitions: list[TP]) -> None:
        pipeline = self._pipeline
        pipeline.drop_pending(set(partitions))
        for tp in partitions:
            pipeline.offsets.forget(tp)
            pipeline.assigned.discard(tp)
        if pipeline.output is not None:
            # Their next owner redoes them; held here, they would go out again if the
            # partitions came back to this worker.
            pipeline.output.forget(partitions)
        self._metrics.rebalances.labels("lost").inc()
        self._owned_changed()
