"""The Talon.One applications as the pipeline serves them: one client, gate and pacer each.

One misbehaving application (a rejected key, an outage, a 429 storm) closes only its own
gate. Its records then wait in its `held` list instead of occupying a server, so the other
applications' records keep flowing; the list goes back to the ready queue, oldest first,
when the gate reopens to probe. The group budget (`BRIDGE_TALON_MAX_RPS`) and the adaptive
in-flight limit stay worker-wide (`bridge.worker.admission`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

from bridge.applications import Application as Configured
from bridge.engine.gate import GATE_REASONS, ApiGate, GateReason
from bridge.engine.pacing import Pacer
from bridge.engine.sequencer import Sequenced
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.talon.client import TalonClient
from bridge.talon.transports import ConnectionEvent
from bridge.worker.gatekeeper import GateKeeper
from bridge.worker.handlers import Handlers
from bridge.worker.work import State, Work

__all__ = ["Application", "talon_client"]


class Application:
    """One application's handlers (its client), pacer, gate and held records."""

    __slots__ = ("_clock", "_pace_lock", "gate", "gatekeeper", "handlers", "held", "name", "pacer")

    def __init__(
        self,
        name: str,
        handlers: Handlers,
        metrics: Metrics,
        clock: Callable[[], float],
        *,
        max_backoff: float,
        on_open: Callable[[Application], None],
        pacer: Pacer | None = None,
    ) -> None:
        self.name = name
        self.handlers = handlers
        self.pacer = pacer or Pacer()
        self.gate = ApiGate(max_backoff=max_backoff)
        self.gatekeeper = GateKeeper(
            self.gate, self.pacer, metrics, clock, application=name, on_open=lambda: on_open(self)
        )
        self.held: list[tuple[int, Sequenced[Work]]] = []
        self._clock = clock
        self._pace_lock = asyncio.Lock()

    def hold(self, entry: Sequenced[Work]) -> None:
        """Keep `entry` (QUEUED, its session's head) until the gate reopens."""
        self.held.append((entry.item.seq, entry))

    def take_held(self) -> list[tuple[int, Sequenced[Work]]]:
        """The held records still waiting to run (dropped ones are left out)."""
        held, self.held = self.held, []
        return [h for h in held if h[1].item.state is State.QUEUED]

    def forget_dropped(self) -> None:
        """Let go of held records dropped meanwhile (their partitions were revoked)."""
        if self.held:
            self.held = [h for h in self.held if h[1].item.state is State.QUEUED]

    def export(self, metrics: Metrics) -> None:
        """Gauges of the gate and the pacer, read when scraped."""
        name = self.name
        for reason in GATE_REASONS:
            metrics.api_gate_closed.labels(name, reason).set_function(
                partial(_closed_for, self.gate, reason)
            )
        metrics.api_retry_after.labels(name).set_function(partial(_retry_after, self.pacer))
        metrics.api_pacing_limit.labels(name).set_function(lambda: self.pacer.limit or 0.0)

    async def pace(self) -> None:
        """Take the application's next send slot (the worker-wide pace is `Admission.pace`)."""
        pacer = self.pacer
        if pacer.limit is None:
            pacer.reserve(self._clock())
            return
        async with self._pace_lock:
            wait = pacer.reserve(self._clock())
            if wait > 0:
                await asyncio.sleep(wait)


def _closed_for(gate: ApiGate, reason: GateReason) -> float:
    return 1.0 if gate.closed_for(reason) else 0.0


def _retry_after(pacer: Pacer) -> float:
    return pacer.retry_after_in_force(time.monotonic())


def talon_client(settings: Settings, app: Configured, metrics: Metrics) -> TalonClient:
    """The application's own client: its key, its pool of connections, counted in `metrics`."""
    return TalonClient(
        app.base_url,
        app.api_key.get_secret_value(),
        connect_timeout=settings.talon_connect_timeout,
        read_timeout=settings.talon_read_timeout,
        pool_timeout=settings.talon_pool_timeout,
        idle_timeout=settings.talon_idle_timeout,
        call_timeout=settings.talon_call_timeout,
        max_connections=settings.max_in_flight,
        http_engine=settings.talon_http_engine,
        idempotency_keys=settings.talon_idempotency_keys,
        observer=partial(_observe, metrics, app.name),
        on_connection=partial(_connection, metrics, app.name),
    )


def _observe(
    metrics: Metrics, application: str, operation: str, outcome: str, seconds: float
) -> None:
    metrics.api_duration_for(application, operation, outcome).observe(seconds)
    if outcome != "2xx":
        metrics.api_errors_for(application, operation, outcome).inc()


def _connection(metrics: Metrics, application: str, event: ConnectionEvent) -> None:
    counter = metrics.api_connections_opened if event == "opened" else metrics.api_stale_connections
    counter.labels(application).inc()
