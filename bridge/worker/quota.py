"""The per-session queue quota: a hot session (a bot, a replayed storm) cannot fill the buffer.

Each session's commands run one at a time, so a session with thousands queued holds the
buffer for as long as their calls take, and with it full every partition pauses: the other
sessions wait for the hot one. Past `BRIDGE_MAX_QUEUED_PER_SESSION` queued commands, a
session's next record is not queued:

* `park` mode: it becomes the poison of a parking chain (dead-letter reason `hot-session`)
  and the session's later records follow it to the dead-letter topic in order, straight from
  intake, while the commands already queued ahead of it run (they come before the poison in
  the partition, see `parking.precedes`). `talon-bridge replay` brings the chain back once the
  storm is over; nothing is reordered.
* `skip` mode: each record past the quota is dead-lettered on its own.

The per-profile quota on calls in flight is the sequencer's (`quota`, keyed by profile).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable

from bridge.dlq import DeadLetter
from bridge.engine.sequencer import Sequencer
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.types import DeadLetterReason
from bridge.worker.parking import Chains, Write, precedes
from bridge.worker.work import Work

__all__ = ["SessionQuota"]

# The worker's log lines keep its logger name, which log filters and alerts key on.
log = logging.getLogger("bridge.worker.root")

HOT: DeadLetterReason = "hot-session"


class SessionQuota:
    """Decides at intake whether a record skips the queue for the dead-letter topic."""

    def __init__(
        self,
        settings: Settings,
        sequencer: Sequencer[Work],
        chains: Chains,
        metrics: Metrics,
        writer: Callable[[Work], Write],
    ) -> None:
        self.limit = settings.max_queued_per_session
        self.park = settings.on_poison == "park"
        self._sequencer = sequencer
        self._parking = chains.lot
        self._chains = chains
        self._writer = writer  # where a diverted record's parking updates go
        self._on_exceeded = metrics.session_quota_exceeded.inc
        self._last_hot: bytes | None = None  # logs a storm once, not once per record

    def divert(self, work: Work, key: bytes) -> DeadLetter | None:
        """The dead letter of a record that must not be queued, or None to queue it."""
        session: Hashable = ("s", key)
        if self.park:
            parked = self._parking.get(key)
            if parked is not None:
                if parked.reason != HOT or self._has_own_queue(session, parked.poison):
                    return None  # queued behind what it waits for; admitted when it runs
                if self._chains.position(work.rec, parked) is not None:
                    return None  # a chain record back from a replay: it runs in turn
                if precedes(work.rec, parked.poison):
                    return None
                return self._chains.divert(work.rec, key, parked, self._writer(work))
        if not self.limit or self._sequencer.queued(session) < self.limit:
            return None
        self._on_exceeded()
        if key != self._last_hot:
            self._last_hot = key
            log.warning(
                "a session is over its queue quota; its records go to the dead-letter topic"
                + (" behind this one" if self.park else ""),
                extra={**work.log_extra(), "queued": self.limit},
            )
        return DeadLetter(
            "quota",
            "SessionOverQuota",
            HOT,
            f"the session had {self.limit} commands queued (BRIDGE_MAX_QUEUED_PER_SESSION)",
        )

    def _has_own_queue(self, session: Hashable, poison: str) -> bool:
        """Whether the session has queued records of its own behind the poison (a chain
        record back from a replay, and what follows it)."""
        last = self._sequencer.last(session)
        return last is not None and not precedes(last.rec, poison)
