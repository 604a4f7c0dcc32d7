"""An application's API gate on the event loop: timers reopen it to probe.

The gate's rules are `bridge.engine.gate`'s; this adds the reopening timer, the gauges that
say why it is closed and the log lines. Records of a closed application wait in its
`Application.held` list (bridge/worker/applications.py), not in a server: `on_open` puts
them back in the ready queue when the gate reopens.
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
    "auth": "Talon.One rejected the API key; holding the application's records and probing",
    "outage": "Talon.One looks down; holding the application's records and probing",
    "throttled": "Talon.One keeps rate-limiting; holding the application's records until its "
    "Retry-After",
}


class GateKeeper:
    """Closes the gate (the application's records wait), reopens it with growing backoff to
    probe, never before the latest Retry-After, so a rotated key or a recovered API resumes
    by itself."""

    def __init__(
        self,
        gate: ApiGate,
        pacer: Pacer,
        metrics: Metrics,
        clock: Callable[[], float],
        *,
        application: str,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self.gate = gate
        self.application = application
        self.is_open = True  # mirrors `gate.is_open` between a close and its reopening timer
        self.on_open = on_open
        self._pacer = pacer
        self._clock = clock
        self._healthy = metrics.api_healthy.labels(application)
        self._outage = metrics.api_outage.labels(application)
        self._timer: asyncio.TimerHandle | None = None

    def close(self, reason: GateReason, exc: ApiError) -> None:
        probe_at = self.gate.close(reason, self._clock(), self._pacer.not_before)
        if probe_at is None:
            return  # closed already
        self.is_open = False
        self._schedule_reopen(probe_at)
        if reason == "auth":
            self._healthy.set(0)
        elif reason == "outage":
            self._outage.set(1)
        if self.gate.closures == 1:
            log.error(
                _MESSAGES[reason],
                extra={
                    "application": self.application,
                    "status": exc.status,
                    "error_class": exc.error_class,
                },
            )

    def succeeded(self) -> None:
        recovered = self.gate.succeeded()
        if recovered is not None:
            log.info(
                "Talon.One answers again; resuming",
                extra={"application": self.application, "after": recovered},
            )
            self._healthy.set(1)
            self._outage.set(0)

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
        self.is_open = True
        if self.on_open is not None:
            self.on_open()
