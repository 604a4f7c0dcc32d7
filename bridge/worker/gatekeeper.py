"""The API gate on the event loop: calls wait on it, timers reopen it to probe.

The gate's rules are `bridge.engine.gate`'s; this adds the waiting, the reopening timer, the
gauges that say why it is closed and the log lines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bridge.engine.gate import ApiGate, GateReason
from bridge.engine.pacing import Pacer
from bridge.errors import ApiError
from bridge.metrics import Metrics

__all__ = ["GateKeeper"]

# The worker's log lines keep its logger name, which log filters and alerts key on.
log = logging.getLogger("bridge.worker.root")

_MESSAGES: dict[GateReason, str] = {
    "auth": "Talon.One rejected the API key; pausing intake and probing",
    "outage": "Talon.One looks down; pausing intake and probing",
    "throttled": "Talon.One keeps rate-limiting; pausing intake until its Retry-After",
}


class GateKeeper:
    """Closes the gate (intake pauses, every call waits), reopens it with growing backoff to
    probe, never before the latest Retry-After, so a rotated key or a recovered API resumes
    by itself."""

    def __init__(
        self, gate: ApiGate, pacer: Pacer, metrics: Metrics, clock: Callable[[], float]
    ) -> None:
        self.gate = gate
        self._pacer = pacer
        self._metrics = metrics
        self._clock = clock
        self._open = asyncio.Event()  # mirrors `gate.is_open`, for calls to wait on
        self._open.set()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait(self) -> None:
        if not self._open.is_set():
            await self._open.wait()

    def close(self, reason: GateReason, exc: ApiError) -> None:
        probe_at = self.gate.close(reason, self._clock(), self._pacer.not_before)
        if probe_at is None:
            return  # closed already
        self._open.clear()
        self._schedule_reopen(probe_at)
        if reason == "auth":
            self._metrics.api_healthy.set(0)
        elif reason == "outage":
            self._metrics.api_outage.set(1)
        if self.gate.closures == 1:
            log.error(
                _MESSAGES[reason], extra={"status": exc.status, "error_class": exc.error_class}
            )

    def succeeded(self) -> None:
        recovered = self.gate.succeeded()
        if recovered is not None:
            log.info("Talon.One answers again; resuming", extra={"after": recovered})
            self._metrics.api_healthy.set(1)
            self._metrics.api_outage.set(0)

    def _schedule_reopen(self, probe_at: float) -> None:
        """Reopen at `probe_at`, or at the latest Retry-After if that is later (an answer
        still arriving may push it further: checked again when the time comes)."""
        if self._timer is not None:
            self._timer.cancel()
        at = self.gate.reopen_at(probe_at, self._pacer.not_before)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(
            loop.time() + max(0.0, at - self._clock()), self._reopen, probe_at
        )

    def _reopen(self, probe_at: float) -> None:
        self._timer = None
        if not self.gate.reopen(self._clock(), self._pacer.not_before):
            self._schedule_reopen(probe_at)
            return
        self._open.set()
