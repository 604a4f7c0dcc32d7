"""A consumed record on its way through the worker, and the seams the pipeline runs against:
`Output` (where outputs go, Kafka in production) and `Observer` (timing hooks)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol

from bridge.commands import Command, EffectRecord
from bridge.engine.offsets import Slot
from bridge.engine.sequencer import Sequenced
from bridge.errors import DecodeError
from bridge.kafka.delivery import OutputHeaders
from bridge.kafka.records import InputRecord
from bridge.logs import where
from bridge.types import TP, CommandOutcome

if TYPE_CHECKING:
    from bridge.worker.applications import Application

__all__ = ["ACTIVE", "Observer", "Output", "OutputHeaders", "State", "Work", "keys"]


class State(IntEnum):
    QUEUED = 0  # waiting for its keys or a free slot
    RUNNING = 1  # API call under way
    BACKOFF = 2  # waiting to retry; holds its keys
    PRODUCING = 3  # effects or dead letter sent, waiting for the acknowledgement
    DONE = 4
    DROPPED = 5  # partition revoked before it started; the next owner reads it again


ACTIVE = (State.RUNNING, State.PRODUCING)


class Work:
    """One consumed record on its way through the worker."""

    __slots__ = (
        "app",
        "attempts",
        "command",
        "effects",
        "entry",
        "error",
        "first_failure",
        "held",
        "outcome",
        "pending",
        "rec",
        "seq",
        "slot",
        "state",
        "timer",
        "tp",
        "trace",
    )

    def __init__(self, rec: InputRecord, slot: Slot) -> None:
        self.rec = rec
        self.seq = 0  # arrival order, the scheduling priority
        self.tp: TP = (rec.topic, rec.partition)
        self.slot = slot
        self.command: Command | None = None
        self.error: DecodeError | None = None
        self.entry: Sequenced[Work] | None = None
        self.state = State.QUEUED
        self.attempts = 0
        self.first_failure: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.pending = 0  # produced records not yet acknowledged
        self.held: Any = None  # exactly-once: outputs awaiting the transaction
        self.outcome: CommandOutcome = "applied"
        self.trace: Any = None  # bridge.tracing's, while its API call is traced
        self.app: Application | None = None  # where its call goes; None: routed nowhere
        self.effects: list[EffectRecord] | None = None  # published once its record is safe

    @property
    def where(self) -> str:
        return where(self.rec.topic, self.rec.partition, self.rec.offset)

    @property
    def command_type(self) -> str:
        return self.command.command_type if self.command is not None else "unknown"

    def log_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"where": self.where}
        if self.command is not None:
            extra["event_id"] = self.command.event_id
        return extra


class Output(Protocol):
    """Where a record's outputs go. Once the record is PRODUCING and every output it sent is
    safe, the output calls `Pipeline.complete` for it."""

    def send(
        self,
        work: Work,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: OutputHeaders | None = None,
    ) -> None:
        """Produce one output of `work` (effects, a dead letter, a parking record)."""

    def finish(self, work: Work) -> None:
        """`work` is PRODUCING and produces nothing more."""

    def forget(self, partitions: Iterable[TP]) -> None:
        """The partitions are no longer ours: their next owner redoes what they hold."""

    def orphan(self, tp: TP) -> None:
        """The partition's log is gone: nobody will redo its records."""


class Observer:
    """Hooks into the hops of a record, for timing them (benchmarks). No-ops here."""

    def consumed(self, records: list[InputRecord]) -> None:
        """A batch was read from Kafka; called on the consumer thread."""

    def batch(self, records: list[InputRecord]) -> None:
        """A batch arrived on the event loop, before it is taken in."""

    def calling(self, rec: InputRecord, cmd: Command) -> None:
        """A call to Talon.One is about to start (again, on a retry)."""

    def publishing(self, rec: InputRecord, cmd: Command) -> None:
        """A call went through; its effects are about to be produced."""


# Events lock their profile, whichever endpoint they go through: Talon.One refuses parallel
# requests for one profile with a 409.
_EVENTS = frozenset({"track_event", "track_event_v3"})


def keys(
    work: Work,
) -> tuple[tuple[Hashable, ...], tuple[Hashable, ...], tuple[Hashable, ...]]:
    """(ordered keys, lock keys, quota keys): the session orders; an event's profile only
    excludes; every command of a profile counts towards the profile's quota of calls."""
    key = work.rec.key
    session: tuple[Hashable, ...] = (("s", key),) if key is not None else ()
    cmd = work.command
    if cmd is None or not cmd.profile_id:
        return session, (), ()
    quota = (("q", cmd.profile_id),)
    if cmd.command_type in _EVENTS:
        return session, (("p", cmd.profile_id),), quota
    return session, (), quota
