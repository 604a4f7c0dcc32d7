"""The worker: the one composition root of a running bridge.

Records arrive in batches from the consumer thread. Each becomes a `Work` item queued in the
per-key sequencer; runnable items go to a ready queue served by `max_in_flight` long-lived
coroutines (no task per record). A finished API call releases its keys at once, so the
session's next command can start, while its effects record is still being acknowledged; the
source offset completes only when that acknowledgement (or the dead letter's) arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import replace
from enum import IntEnum
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import KafkaError, Producer

from bridge import __version__
from bridge.avro.codec import Codec, RegistryError
from bridge.commands import Command, EffectsEmitted
from bridge.dlq import (
    H_REPLAY_OF,
    H_REPLAY_POSITION,
    H_REPLAY_TOKEN,
    DeadLetter,
    coordinates,
    dead_letter_headers,
    header,
)
from bridge.engine.gate import GATE_REASONS, ApiGate, GateReason
from bridge.engine.offsets import OffsetTracker, Slot
from bridge.engine.outcome import Hold, Retry, decide
from bridge.engine.pacing import Pacer
from bridge.engine.retry import RetryPolicy
from bridge.engine.sequencer import Sequenced, Sequencer
from bridge.errors import (
    ApiError,
    ConfigError,
    ConflictError,
    DecodeError,
    InvalidCommandError,
    KafkaFatalError,
    KafkaUnreachableError,
    RateLimitedError,
    RetryableApiError,
)
from bridge.kafka.clients import (
    TP,
    Cluster,
    ConsumerThread,
    Delivered,
    InputRecord,
    ProducerPoller,
    consumer_config,
    new_client,
    producer_config,
)
from bridge.kafka.lag import LagReporter
from bridge.logs import where
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.talon.client import TalonClient
from bridge.worker.handlers import Applied, Handlers
from bridge.worker.health import HealthServer
from bridge.worker.output import HeldOutput, TransactionalOutput
from bridge.worker.parking import (
    ParkedSession,
    ParkingLot,
    ParkingReader,
    encode_parked,
    parking_topic_problem,
)

__all__ = ["Worker", "run_worker"]

log = logging.getLogger(__name__)
# Every held record fails alike while a topic or the cluster is unavailable; thinned by
# RepeatFilter to one line per topic and error each 30 s.
delivery_errors = logging.getLogger(f"{__name__}.delivery")


class State(IntEnum):
    QUEUED = 0  # waiting for its keys or a free slot
    RUNNING = 1  # API call under way
    BACKOFF = 2  # waiting to retry; holds its keys
    PRODUCING = 3  # effects or dead letter sent, waiting for the acknowledgement
    DONE = 4
    DROPPED = 5  # partition revoked before it started; the next owner reads it again


_ACTIVE = (State.RUNNING, State.PRODUCING)
_GATE_MESSAGES: dict[GateReason, str] = {
    "auth": "Talon.One rejected the API key; pausing intake and probing",
    "outage": "Talon.One looks down; pausing intake and probing",
    "throttled": "Talon.One keeps rate-limiting; pausing intake until its Retry-After",
}


class Work:
    """One consumed record on its way through the worker."""

    __slots__ = (
        "attempts",
        "command",
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
        self.held: HeldOutput | None = None  # exactly-once: outputs awaiting the transaction
        self.outcome = "applied"

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


def _keys(work: Work) -> tuple[tuple[Hashable, ...], tuple[Hashable, ...]]:
    """(ordered keys, lock keys): the session orders; an event's profile only excludes."""
    key = work.rec.key
    session: tuple[Hashable, ...] = (("s", key),) if key is not None else ()
    cmd = work.command
    if cmd is not None and cmd.command_type == "track_event" and cmd.profile_id:
        return session, (("p", cmd.profile_id),)
    return session, ()


class Worker:
    """Runs until stopped; see module docstring for the flow."""

    def __init__(
        self,
        settings: Settings,
        *,
        codec: Codec | None = None,
        client: TalonClient | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.codec = codec or Codec.from_settings(settings)
        self.client = client or TalonClient(
            settings.talon_base_url,
            settings.talon_api_key.get_secret_value(),
            connect_timeout=settings.talon_connect_timeout,
            read_timeout=settings.talon_read_timeout,
            pool_timeout=settings.talon_pool_timeout,
            call_timeout=settings.talon_call_timeout,
            max_connections=settings.max_in_flight,
            http_engine=settings.talon_http_engine,
            idempotency_keys=settings.talon_idempotency_keys,
            observer=self._observe_api,
        )
        self.handlers = Handlers(self.client)
        self.retry = RetryPolicy(
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
            max_attempts=settings.retry_max_attempts,
            max_elapsed=settings.retry_max_elapsed,
        )
        self.sequencer: Sequencer[Work] = Sequencer()
        self.parking = ParkingLot()
        self._park = settings.on_poison == "park"
        self.offsets = OffsetTracker()
        self.assigned: set[TP] = set()
        self._buffered = 0
        self._released = 0  # handed-over records no longer held, for backpressure
        self._drained = asyncio.Event()  # set when a draining partition makes progress
        self._draining: set[TP] = set()
        # Oldest record first: finishing early offsets first advances the committable prefix,
        # which keeps latency low and leaves little to redo after a crash or a revoke.
        self._ready: asyncio.PriorityQueue[tuple[int, Sequenced[Work]]] = asyncio.PriorityQueue()
        self._arrivals = 0
        self.gate = ApiGate(max_backoff=settings.retry_max_delay)
        self._api_ok = asyncio.Event()  # mirrors `gate.is_open`, for calls to wait on
        self._api_ok.set()
        self._gate_timer: asyncio.TimerHandle | None = None
        self.pacer = Pacer()
        self._pace_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._exit_code = 0
        self._fatal: str | None = None
        self._in_flight = 0
        self._consumer: ConsumerThread | None = None
        self._poller: ProducerPoller | None = None
        self._producer: Producer | None = None
        self._txn: TransactionalOutput | None = None
        self._signals = 0
        self._last_progress = 0.0
        # Schema Registry calls block, so they run in threads, never on the event loop.
        self._registry_calls = asyncio.Semaphore(_REGISTRY_THREADS)
        # Gauges of the worker's own state are read when scraped (on the event loop): setting
        # them per command would take a lock each time, and sampling them now and then could
        # miss a state that lasts less than the sampling interval.
        self.metrics.in_flight.set_function(lambda: self._in_flight)
        self.metrics.buffered.set_function(lambda: self._buffered)
        self.metrics.active_keys.set_function(lambda: self.sequencer.active_keys)
        self.metrics.last_progress.set_function(lambda: self._last_progress)
        self.metrics.paused.set_function(self._paused_partitions)
        self.metrics.oldest_unprocessed_age.set_function(self._oldest_unprocessed_age)
        self.metrics.parked_sessions.set_function(lambda: len(self.parking))
        self.metrics.parked_oldest_age.set_function(self.parking.oldest_age)
        self.metrics.parked_waiting.set_function(self.parking.waiting)
        self.metrics.ready.set_function(lambda: 1.0 if self.ready() else 0.0)
        for reason in GATE_REASONS:
            self.metrics.api_gate_closed.labels(reason).set_function(
                partial(self._gate_closed_for, reason)
            )
        self.metrics.api_retry_after.set_function(
            lambda: self.pacer.retry_after_in_force(time.monotonic())
        )
        self.metrics.api_pacing_limit.set_function(lambda: self.pacer.limit or 0.0)
        for topic in self.settings.input_topics:
            self.metrics.input_topic_missing.labels(topic).set_function(
                partial(self._topic_missing, topic)
            )
            self.metrics.input_log_resets_for(topic)  # exported as 0 from the start

    def _gate_closed_for(self, reason: GateReason) -> float:
        return 1.0 if self.gate.closed_for(reason) else 0.0

    def _paused_partitions(self) -> int:
        consumer = self._consumer
        return len(self.assigned) if consumer is not None and consumer.paused else 0

    def _oldest_unprocessed_age(self) -> float:
        oldest = self.offsets.oldest_pending_timestamp_ms()
        return 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)

    # --- PartitionListener (called on the loop by the consumer thread) -------------------

    @property
    def released(self) -> int:
        return self._released

    @property
    def intake_held(self) -> bool:
        # A fatal state, a rejected key or an outage pauses intake: nothing new is read.
        return self._fatal is not None or not self._api_ok.is_set()

    def on_assigned(self, partitions: list[TP]) -> None:
        self.assigned.update(partitions)
        self.metrics.rebalances.labels("assign").inc()
        self.metrics.assigned.set(len(self.assigned))

    def on_batch(self, records: list[InputRecord]) -> None:
        track = self.offsets.track
        seq_add = self.sequencer.add
        ready = self._ready.put_nowait
        consumed = self.metrics.consumed_for
        arrival = self._arrivals
        for rec in records:
            tp = (rec.topic, rec.partition)
            if tp not in self.assigned:
                self._released += 1  # read before the partition was revoked or lost
                continue
            slot = track(tp, rec.offset, rec.timestamp_ms)
            if slot is None:
                slot = self._log_restarted(rec)
            work = Work(rec, slot)
            work.seq = arrival = arrival + 1
            try:
                work.command = self._decode(rec)
            except DecodeError as exc:
                work.error = exc
            except RegistryError:
                pass  # decoded again when it runs; see _serve
            consumed(rec.topic).inc()
            entry = work.entry = seq_add(work, *_keys(work))
            self._buffered += 1
            if entry.runnable:
                ready((work.seq, entry))
        self._arrivals = arrival

    def _log_restarted(self, rec: InputRecord) -> Slot:
        """A record below one already read from its partition: the log started over (a topic
        re-created before its deletion was noticed, or a truncated log)."""
        tp = (rec.topic, rec.partition)
        self._drop_log(
            tp,
            "input partition restarted below the offset already read; tracking it afresh",
            f"{rec.topic}[{rec.partition}]@{rec.offset}",
        )
        slot = self.offsets.track(tp, rec.offset, rec.timestamp_ms)
        assert slot is not None  # noqa: S101 - forgotten just above, so tracked afresh
        return slot

    def on_log_gone(self, partitions: list[TP]) -> None:
        for tp in partitions:
            self._drop_log(
                tp, "input topic deleted; its positions will not be committed", f"{tp[0]}[{tp[1]}]"
            )

    def _drop_log(self, tp: TP, message: str, where: str) -> None:
        """Positions read from `tp` belong to a log that is gone: committed against a new one,
        they would skip its records. What was read still runs and publishes."""
        log.warning(message, extra={"where": where})
        self.metrics.input_log_resets_for(tp[0]).inc()
        self.offsets.forget(tp, log_gone=True)
        if self._txn is not None:
            self._txn.orphan(tp)

    def _decode(self, rec: InputRecord) -> Command:
        """The record's command; any failure but the registry's is a `DecodeError`.

        A writer schema not cached yet raises SchemaNotCached (a RegistryError): the record is
        decoded again when it runs, after `_decode_later` fetches it in a thread. A record that
        made decoding fail in an unforeseen way becomes an `internal` dead letter: raised here,
        it would leave its offset tracked but never finished, and the rest of its batch unread,
        stalling the partition.
        """
        try:
            cmd = self.codec.decode_command(rec.value, fetch=False)
        except (DecodeError, RegistryError):
            raise
        except Exception as exc:
            # The record goes to the DLQ, where it can be studied; no traceback, since
            # exception messages may quote its content.
            log.error(
                "unexpected error decoding a record; dead-lettering it",
                extra={
                    "where": where(rec.topic, rec.partition, rec.offset),
                    "error_class": type(exc).__name__,
                },
            )
            raise DecodeError("internal", f"decoding failed ({type(exc).__name__})") from exc
        if rec.key is None:
            raise DecodeError("missing-key", "record has no key; expected the session ID")
        if cmd.session_id.encode() != rec.key:
            raise DecodeError("key-mismatch", "record key differs from sessionId")
        return cmd

    async def drain(self, partitions: list[TP], timeout: float) -> dict[TP, int]:
        """Finish what the revoked partitions already hold, then hand back their positions.

        Records already read keep flowing (no new ones arrive for these partitions), so a
        graceful handoff leaves nothing for the next owner to redo. At 60% of `timeout`
        whatever has not started is dropped (the next owner reads it again); calls under way
        get until 85% to finish and be acknowledged, leaving the rest for commit and close.
        """
        started = time.monotonic()
        revoking = set(partitions)
        self._draining |= revoking
        pending, in_progress = self.offsets.pending_count, self.offsets.in_progress
        try:
            await self._wait_drained(
                lambda: not any(pending(tp) for tp in revoking), started + 0.6 * timeout
            )
            self._drop_pending(revoking)
            if not await self._wait_drained(
                lambda: not any(in_progress(tp) for tp in revoking), started + 0.85 * timeout
            ):
                log.warning(
                    "drain timed out; uncommitted records will be read again by the next owner",
                    extra={"in_flight": sum(in_progress(tp) for tp in revoking)},
                )
        finally:
            self._draining -= revoking
        self.metrics.drain_duration.observe(time.monotonic() - started)
        positions: dict[TP, int] = {}
        for tp in partitions:
            pos = self.offsets.position(tp)
            if pos is not None:
                positions[tp] = pos
        return positions

    async def commit_transaction(self, group_metadata: Any) -> KafkaError | None:
        """Exactly-once handover: outputs and offsets go together in one transaction."""
        await self._commit_transaction(group_metadata)
        return self._txn.aborted if self._txn is not None else None

    def release(self, partitions: list[TP], reprocessed: int) -> None:
        """Revoked partitions are handed over (committed, or given up on)."""
        if self._txn is not None:
            self._txn.forget(partitions)
        for tp in partitions:
            self.offsets.forget(tp)
            self.assigned.discard(tp)
        if reprocessed:
            self.metrics.records_reprocessed.inc(reprocessed)
        self.metrics.rebalances.labels("revoke").inc()
        self.metrics.assigned.set(len(self.assigned))

    async def _wait_drained(self, done: Callable[[], bool], deadline: float) -> bool:
        while not done():
            self._drained.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), remaining)
        return True

    def on_lost(self, partitions: list[TP]) -> None:
        lost = set(partitions)
        self._drop_pending(lost)
        for tp in partitions:
            self.offsets.forget(tp)
            self.assigned.discard(tp)
        if self._txn is not None:
            # Their next owner redoes them; held here, they would go out again if the
            # partitions came back to this worker.
            self._txn.forget(partitions)
        self.metrics.rebalances.labels("lost").inc()
        self.metrics.assigned.set(len(self.assigned))

    def on_fatal(self, error: str) -> None:
        log.error("fatal Kafka error; stopping", extra={"error": error})
        self._fatal = error
        self._exit_code = 1
        self._stop.set()

    def _drop_pending(self, tps: set[TP]) -> None:
        def doomed(w: Work) -> bool:
            return w.tp in tps and w.state in (State.QUEUED, State.BACKOFF)

        removed, became = self.sequencer.remove_where(doomed)
        for entry in removed:
            work = entry.item
            if work.timer is not None:
                work.timer.cancel()
            work.state = State.DROPPED
            self._buffered -= 1
            self._released += 1
        for entry in became:
            self._ready.put_nowait((entry.item.seq, entry))

    # --- processing ----------------------------------------------------------------------

    async def _serve(self) -> None:
        get = self._ready.get
        while True:
            _, entry = await get()
            work = entry.item
            if work.state is not State.QUEUED:
                continue
            key = work.rec.key
            if (
                self._park
                and key is not None
                and (parked := self.parking.get(key))
                and not self._admit(work, key, parked)
            ):
                continue
            cmd = work.command
            if cmd is None and work.error is None:
                cmd = await self._decode_later(work)
                if cmd is None and work.error is None:
                    continue  # waiting for the schema registry
            if cmd is None:
                err = work.error or DecodeError("invalid", "no command")
                self._dead_letter(
                    work, DeadLetter("decode", "DecodeError", err.reason, err.message)
                )
                continue
            if not self._api_ok.is_set():
                await self._api_ok.wait()
            if self.pacer.limit is None:
                self.pacer.reserve(time.monotonic())  # never waits; counts the send
            else:
                await self._pace()
            await self._call(work, cmd)

    async def _pace(self) -> None:
        # One caller at a time takes the next slot, in the order they came: the rate then
        # applies at once, also to the calls released together when the gate reopens.
        async with self._pace_lock:
            wait = self.pacer.reserve(time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)

    async def _decode_later(self, work: Work) -> Command | None:
        """Decode a record whose writer schema was not cached on arrival, fetching it from
        the registry in a thread while the loop serves everything else.

        A registry outage is not the record's fault: it waits with backoff (holding its
        session) instead of going to the dead-letter topic.
        """
        failure: DecodeError | RegistryError | None = None
        try:
            async with self._registry_calls:
                await _in_thread(self.codec.fetch_command_schema, work.rec.value)
        except (DecodeError, RegistryError) as exc:
            failure = exc
        if work.state is not State.QUEUED:
            return None  # dropped meanwhile (a revoked partition): its next owner reads it
        if isinstance(failure, RegistryError):
            self.metrics.registry_failures.inc()
            work.attempts += 1
            log.warning(
                "schema registry unavailable", extra={**work.log_extra(), "error": str(failure)}
            )
            self._backoff(work, self.retry.delay(min(work.attempts, 8)))
            return None
        if failure is None:
            try:
                work.command = self._decode(work.rec)
                return work.command
            except DecodeError as exc:
                failure = exc
        work.error = failure
        return None

    async def _call(self, work: Work, cmd: Command) -> None:
        self._transition(work, State.RUNNING)
        work.attempts += 1
        self._in_flight += 1
        sent_at = time.monotonic()
        try:
            applied = await self.handlers.apply(cmd)
        except ApiError as exc:
            self._in_flight -= 1
            self._failed(work, exc, sent_at)
            return
        except InvalidCommandError as exc:
            self._in_flight -= 1
            message = f"{exc.message} at {exc.pointer}" if exc.pointer else exc.message
            self._dead_letter(
                work, DeadLetter("validate", "InvalidCommandError", "validation", message)
            )
            return
        except Exception as exc:
            self._in_flight -= 1
            log.exception("unexpected error applying a command", extra=work.log_extra())
            self._dead_letter(work, DeadLetter("api", type(exc).__name__, "internal", str(exc)))
            return
        self._in_flight -= 1
        self.pacer.on_accepted(time.monotonic(), sent_at)
        recovered = self.gate.succeeded()
        if recovered is not None:
            self._api_recovered(recovered)
        self._publish(work, cmd, applied)

    def _failed(self, work: Work, exc: ApiError, sent_at: float) -> None:
        now = time.monotonic()
        if work.first_failure is None:
            work.first_failure = now
        hold: GateReason | None = None
        if isinstance(exc, RateLimitedError):
            # "Slow down", never an outage: the pacer lowers the rate; only 429s to calls it
            # had already slowed count towards closing the gate.
            slowed = self.pacer.on_throttled(now, sent_at, exc.retry_after)
            if self.gate.throttled(work.rec.key, slowed=slowed):
                hold = "throttled"
        elif isinstance(exc, RetryableApiError) and not isinstance(exc, ConflictError):
            self.pacer.on_retry_after(now, exc.retry_after)
            if self.gate.failed(work.rec.key):
                hold = "outage"
        outcome = decide(
            exc,
            attempts=work.attempts,
            elapsed=now - work.first_failure,
            policy=self.retry,
            hold=hold,
        )
        if isinstance(outcome, Hold):
            self._hold(work, outcome.reason, exc)
            return
        if isinstance(outcome, Retry):
            self.metrics.retried.labels(work.command_type, exc.error_class).inc()
            self._backoff(work, outcome.delay)
            return
        body = None
        if exc.body is not None:
            body = (
                exc.body.model_dump_json()
                if hasattr(exc.body, "model_dump_json")
                else str(exc.body)
            )
        log.warning(
            "dead-lettering a command",
            extra={**work.log_extra(), "status": exc.status, "error_class": exc.error_class},
        )
        self._dead_letter(
            work,
            DeadLetter(
                "api",
                type(exc).__name__,
                outcome.reason,
                exc.message,
                http_status=exc.status,
                body=body,
                attempts=work.attempts,
                first_failure=time.time() - (now - work.first_failure),
                last_failure=time.time(),
            ),
        )

    def _transition(self, work: Work, new: State) -> None:
        """Change state, keeping the partition's in-progress count (what a drain waits on)."""
        part = work.slot.owner
        was_active = work.state in _ACTIVE
        if new in _ACTIVE and not was_active:
            part.in_progress += 1
        elif was_active and new not in _ACTIVE:
            part.in_progress -= 1
            if part.in_progress == 0:
                self._drained.set()
        work.state = new

    def _backoff(self, work: Work, delay: float) -> None:
        self._transition(work, State.BACKOFF)
        work.timer = asyncio.get_running_loop().call_later(delay, self._requeue, work)

    def _requeue(self, work: Work) -> None:
        if work.state is State.BACKOFF and work.entry is not None:
            work.timer = None
            work.state = State.QUEUED
            self._ready.put_nowait((work.seq, work.entry))

    def _hold(self, work: Work, reason: GateReason, exc: ApiError) -> None:
        """Close the API gate (see `bridge.engine.gate`): no record is to blame, so none
        spends its retry budget. Intake pauses and every call waits at the gate, the held call
        too, until it reopens to probe; a rotated key or a recovered API resumes by itself."""
        work.attempts -= 1
        work.first_failure = None
        probe_at = self.gate.close(reason, time.monotonic(), self.pacer.not_before)
        if probe_at is not None:
            self._api_ok.clear()
            self._schedule_reopen(probe_at)
            if reason == "auth":
                self.metrics.api_healthy.set(0)
            elif reason == "outage":
                self.metrics.api_outage.set(1)
            if self.gate.closures == 1:
                log.error(
                    _GATE_MESSAGES[reason],
                    extra={"status": exc.status, "error_class": exc.error_class},
                )
        self._backoff(work, 0)

    def _schedule_reopen(self, probe_at: float) -> None:
        """Reopen at `probe_at`, or at the latest Retry-After if that is later (an answer
        still arriving may push it further: checked again when the time comes)."""
        if self._gate_timer is not None:
            self._gate_timer.cancel()
        at = self.gate.reopen_at(probe_at, self.pacer.not_before)
        loop = asyncio.get_running_loop()
        self._gate_timer = loop.call_at(
            loop.time() + max(0.0, at - time.monotonic()), self._reopen, probe_at
        )

    def _reopen(self, probe_at: float) -> None:
        self._gate_timer = None
        if not self.gate.reopen(time.monotonic(), self.pacer.not_before):
            self._schedule_reopen(probe_at)
            return
        self._api_ok.set()

    def _api_recovered(self, after: GateReason) -> None:
        log.info("Talon.One answers again; resuming", extra={"after": after})
        self.metrics.api_healthy.set(1)
        self.metrics.api_outage.set(0)

    def _publish(self, work: Work, cmd: Command, applied: Applied) -> None:
        if applied.replayed:
            self.metrics.idempotent_replays.inc()
        self._transition(work, State.PRODUCING)
        self._release(work)
        if self.settings.skip_empty_effects and not applied.effects:
            self._no_output(work)
            return
        rec = EffectsEmitted(
            event_id=cmd.event_id,
            session_id=cmd.session_id,
            profile_id=cmd.profile_id,
            command_type=cmd.command_type,
            source_topic=work.rec.topic,
            source_partition=work.rec.partition,
            source_offset=work.rec.offset,
            processed_at_ms=int(time.time() * 1000),
            session_state=applied.session_state,
            effects=applied.effects,
            created_coupons=applied.created_coupons,
            created_referrals=applied.created_referrals,
            dry=cmd.dry,
        )
        value = self.codec.encode_effects(rec, self.settings.output_topic)
        self._produce(work, self.settings.output_topic, work.rec.key, value, None)
        for effect in applied.effects:
            self.metrics.effects_for(effect.effect_type).inc()

    def _dead_letter(self, work: Work, letter: DeadLetter) -> None:
        self._transition(work, State.PRODUCING)
        rec = work.rec
        work.outcome = "parked" if letter.reason == "parked" else "dead_lettered"
        if self._park and rec.key is not None and letter.reason != "parked":
            # Parked before the keys are released, so the session's next command sees it.
            letter = self._park_behind(work, rec.key, letter)
        if work.entry is not None:
            self._release(work)
        headers: list[tuple[str, str | bytes | None]] = [
            *dead_letter_headers(
                rec.headers,
                letter,
                topic=rec.topic,
                partition=rec.partition,
                offset=rec.offset,
                timestamp_ms=rec.timestamp_ms,
                group=self.settings.group_id,
                version=__version__,
            )
        ]
        self.metrics.dead_lettered.labels(letter.reason).inc()
        self._produce(work, self.settings.dlq_topic, rec.key, rec.value, headers)

    def _park_behind(self, work: Work, key: bytes, letter: DeadLetter) -> DeadLetter:
        """Park the session behind this dead letter, unless it already waits for another."""
        rec = work.rec
        here = coordinates(rec.topic, rec.partition, rec.offset)
        parked = self.parking.get(key)
        if parked is not None:
            position = self._chain_position(work, parked)
            if position is None or position != parked.next - 1:
                return letter
            # A chain record that fails again after coming back keeps its place: the chain
            # waits for it once more, and what follows it stays behind it.
            rewound = replace(parked, next=position)
            self.parking.put(key, rewound)
            self._produce(work, self.settings.parking_topic, key, encode_parked(rewound))
            log.warning("a parked session's record failed again", extra=work.log_extra())
            return replace(
                letter,
                parked_behind=parked.poison,
                chain_position=position,
                chain_token=parked.token(position, here, rec.value),
            )
        fresh = ParkedSession.new(
            here, letter.reason, work.command.event_id if work.command is not None else None
        )
        self.parking.put(key, fresh)
        self._produce(work, self.settings.parking_topic, key, encode_parked(fresh))
        log.warning("session parked behind its dead letter", extra=work.log_extra())
        return replace(letter, chain_position=0, chain_token=fresh.token(0, here, rec.value))

    def _divert(
        self, work: Work, key: bytes, parked: ParkedSession, position: int | None = None
    ) -> None:
        """Send a parked session's command to the dead-letter topic, at `position` in its
        chain (a chain record out of turn) or else at the chain's end."""
        rec = work.rec
        if position is None:
            position = parked.size
            grown = parked.appended()
            self.parking.put(key, grown)
            self._produce(work, self.settings.parking_topic, key, encode_parked(grown))
        here = coordinates(rec.topic, rec.partition, rec.offset)
        self._dead_letter(
            work,
            DeadLetter(
                "parked",
                "SessionParked",
                "parked",
                f"session is parked behind {parked.poison}",
                parked_behind=parked.poison,
                chain_position=position,
                chain_token=parked.token(position, here, rec.value),
            ),
        )

    def _chain_position(self, work: Work, parked: ParkedSession) -> int | None:
        hs = work.rec.headers
        return parked.position_of(
            header(hs, H_REPLAY_OF),
            header(hs, H_REPLAY_POSITION),
            header(hs, H_REPLAY_TOKEN),
            work.rec.value,
        )

    def _admit(self, work: Work, key: bytes, parked: ParkedSession) -> bool:
        """Whether a record of a parked session may run: its chain's next record, replayed.
        Any other record is diverted here.

        Headers alone prove nothing (any producer can write them): the record must carry the
        token of its chain position, which only the dead-letter and parking topics hold.
        """
        if parked.secret is None:  # parked by an earlier version: its replayed poison releases
            if header(work.rec.headers, H_REPLAY_OF) != parked.poison:
                self._divert(work, key, parked)
                return False
            self._unpark(work, key)
            return True
        position = self._chain_position(work, parked)
        if position is None:
            if header(work.rec.headers, H_REPLAY_OF) is not None:
                self.metrics.replay_proofs_rejected.inc()
            self._divert(work, key, parked)
            return False
        if position > parked.next:
            self._divert(work, key, parked, position)  # out of turn: it keeps its place
            return False
        if position < parked.next:
            return True  # it ran before (a redelivery, an overlapping replay): idempotent
        if parked.next + 1 == parked.size:
            self._unpark(work, key)
            return True
        advanced = parked.advanced()
        self.parking.put(key, advanced)
        # Acknowledged before this record's offset can be committed.
        self._produce(work, self.settings.parking_topic, key, encode_parked(advanced))
        return True

    def _unpark(self, work: Work, key: bytes) -> None:
        """The session's last parked record is back from a replay: release the session."""
        self.parking.release(key)
        # The tombstone is acknowledged before this record's offset can be committed.
        self._produce(work, self.settings.parking_topic, key, None)
        log.info("parked session released by a replay", extra=work.log_extra())

    def _apply_parking(self, batch: list[tuple[bytes, bytes | None]]) -> None:
        for key, value in batch:
            self.parking.apply(key, value)

    def _produce(
        self,
        work: Work,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        if self._producer is None or self._poller is None:
            raise RuntimeError("the worker is not running")
        if self._txn is not None:
            if work.held is None:
                work.held = HeldOutput(work.rec.offset)
            if work.state is State.PRODUCING:
                # Once every output of this step is collected, the record counts as finished:
                # its outputs are committed in the same transaction as its offset. (A parking
                # record written before the API call waits for the call's own outputs.)
                asyncio.get_running_loop().call_soon(self._hand_to_transaction, work)
            work.held.records.append((topic, key, value, headers))
            return
        work.pending += 1
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    on_delivery=self._poller.callback((work, topic, key, value, headers)),
                )
                return
            except BufferError:
                # The producer's local queue is full: let it drain a little.
                self._producer.poll(0.01)

    def _no_output(self, work: Work) -> None:
        """Finish a record that produced nothing, once what it did produce is acknowledged."""
        if work.held is not None:
            asyncio.get_running_loop().call_soon(self._hand_to_transaction, work)
        elif work.pending == 0:
            self._complete(work)

    def _hand_to_transaction(self, work: Work) -> None:
        if self._txn is None or work.held is None:
            return
        owner = work.slot.owner
        if owner.active:
            self._txn.hold(work.tp, work.held)
        elif owner.log_gone:
            self._txn.hold_orphan(work.held)
        work.held = None
        self._complete(work)

    def _release(self, work: Work) -> None:
        if work.entry is None:
            return
        put = self._ready.put_nowait
        for entry in self.sequencer.release(work.entry):
            put((entry.item.seq, entry))
        work.entry = None

    def _on_delivered(self, batch: list[Delivered]) -> None:
        for token, err in batch:
            work = token[0]
            if err is not None:
                self._delivery_failed(token, err)
                continue
            work.pending -= 1
            # A parking record written before the API call is acknowledged first; the record
            # finishes with the call's own outputs.
            if work.pending == 0 and work.state is State.PRODUCING:
                self._complete(work)

    def _delivery_failed(self, token: tuple[Any, ...], err: KafkaError) -> None:
        work, topic, key, value, headers = token
        work.pending -= 1  # sent again below
        kind = {self.settings.dlq_topic: "dlq", self.settings.parking_topic: "parking"}.get(
            topic, "effects"
        )
        self.metrics.delivery_failures.labels(kind).inc()
        delivery_errors.error(
            "producer could not deliver to %s: %s; sending again",
            topic,
            err.str(),
            extra={**work.log_extra(), "topic": topic, "error": str(err)},
        )
        if err.fatal():
            self.on_fatal(f"producer: {err}")
            return
        # The offset stays uncommitted until a send succeeds, so nothing is lost either way.
        asyncio.get_running_loop().call_later(1.0, self._produce, work, topic, key, value, headers)

    def _complete(self, work: Work) -> None:
        OffsetTracker.complete(work.slot)
        self._transition(work, State.DONE)
        self._buffered -= 1
        self._released += 1
        if work.tp in self._draining:
            self._drained.set()
        self.metrics.processed_for(work.command_type, work.outcome).inc()
        now_ms = time.time() * 1000
        self.metrics.e2e_latency.observe(max(0.0, now_ms - work.rec.timestamp_ms) / 1000)
        if work.command is not None:
            self.metrics.occurred_latency.observe(
                max(0.0, now_ms - work.command.occurred_at_ms) / 1000
            )
        self._last_progress = now_ms / 1000

    def _observe_api(self, operation: str, outcome: str, seconds: float) -> None:
        self.metrics.api_duration_for(operation, outcome).observe(seconds)
        if outcome != "2xx":
            self.metrics.api_errors_for(operation, outcome).inc()

    # --- lifecycle ------------------------------------------------------------------------

    def ready(self) -> bool:
        consumer = self._consumer
        return (
            self._fatal is None
            and not self.gate.auth_rejected
            and not self._stop.is_set()
            and consumer is not None
            and consumer.is_alive()
            and consumer.settled.is_set()
            and not consumer.missing_topics
        )

    def _count_commit_failure(self, cause: str) -> None:
        # From the consumer thread: a counter increment is thread-safe.
        self.metrics.commit_failures.labels(cause).inc()

    def _count_abort(self, cause: str) -> None:
        self.metrics.transactions_aborted.labels(cause).inc()

    def _topic_missing(self, topic: str) -> float:
        consumer = self._consumer
        return 1.0 if consumer is not None and topic in consumer.missing_topics else 0.0

    def alive(self) -> bool:
        consumer = self._consumer
        return self._fatal is None and (consumer is None or consumer.is_alive())

    def request_stop(self) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting at once")
            os._exit(130)
        log.info("stopping: draining in-flight commands")
        self._stop.set()

    async def _commit_transaction(self, group_metadata: Any = None) -> None:
        if self._txn is None or self._consumer is None:
            return
        positions = {
            tp: pos for tp in self.assigned if (pos := self.offsets.position(tp)) is not None
        }
        metadata = group_metadata or self._consumer.group_metadata()
        try:
            if await self._txn.commit(positions, metadata):
                self.metrics.commits.inc()
        except KafkaFatalError as exc:
            self.on_fatal(str(exc))

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.commit_interval)
            if self._txn is not None:
                await self._commit_transaction()
            elif self._consumer is not None:
                self._consumer.request_commit(self.offsets.commit_positions())
                self.metrics.commits.inc()

    def _check_cluster(self) -> None:
        """Before anything starts: the brokers answer, and the parked set has a topic."""
        cluster = Cluster(self.settings.librdkafka_common())
        if self._park:
            problem = parking_topic_problem(cluster, self.settings.parking_topic)
            if problem is not None:
                raise ConfigError("BRIDGE_PARKING_TOPIC", problem)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> HealthServer | None:
        """Say what starts, serve the probes, check the cluster; None if it cannot be reached."""
        settings = self.settings
        log.info(
            "worker starting",
            extra={
                "version": __version__,
                "brokers": settings.kafka_bootstrap_servers,
                "group": settings.group_id,
                "topics": settings.input_topics,
                "output_topic": settings.output_topic,
                "dlq_topic": settings.dlq_topic,
                "parking_topic": settings.parking_topic if self._park else None,
                "on_poison": settings.on_poison,
                "exactly_once": settings.exactly_once,
            },
        )
        health = HealthServer(self.metrics.registry, ready=self.ready, alive=self.alive)
        try:
            await health.start("0.0.0.0", settings.metrics_port)  # noqa: S104 - probes from outside
        except OSError as exc:  # e.g. the port is taken: say which setting, not a traceback
            raise ConfigError(
                "BRIDGE_METRICS_PORT", f"cannot listen on {settings.metrics_port}: {exc.strerror}"
            ) from exc
        try:
            await loop.run_in_executor(None, self._check_cluster)
        except KafkaUnreachableError as exc:
            # Expected while the cluster or the network is down: one line, no traceback.
            log.error("%s", exc, extra={"brokers": exc.servers})
            await health.stop()
            return None
        except ConfigError:
            await health.stop()
            raise
        return health

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Named from the loop itself, not the setting: what it reports is what actually runs.
        loop_name = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
        self.metrics.running_on(loop_name)
        settings = self.settings
        health = await self._open(loop)
        if health is None:
            return 1
        extra: dict[str, Any] = {}
        if settings.exactly_once:
            extra = {
                "transactional.id": settings.transactional_id
                or f"{settings.group_id}-{uuid.uuid4().hex[:12]}",
                # An abandoned transaction (a crashed worker) blocks read_committed readers
                # until it times out: keep that short.
                "transaction.timeout.ms": 15_000,
                "delivery.timeout.ms": 15_000,  # librdkafka requires <= transaction timeout
            }
        self._producer = new_client(Producer, producer_config(settings, **extra))
        self._poller = ProducerPoller(self._producer, loop, self._on_delivered)
        if settings.exactly_once:
            self._txn = TransactionalOutput(self._producer, on_abort=self._count_abort)
            await self._txn.start()
        self._consumer = ConsumerThread(
            consumer_config(settings),
            settings.input_topics,
            self,
            loop,
            max_buffered=settings.max_buffered_records,
            drain_timeout=settings.drain_timeout,
            commit_interval=settings.commit_interval,
            transactional=self._txn is not None,
            admin_conf=settings.librdkafka_common(),
            on_stats=LagReporter(self.metrics),
            on_commit_failed=self._count_commit_failure,
        )
        self._poller.start()
        reader: ParkingReader | None = None
        if self._park:
            # The parked set must be complete before any record is taken.
            reader = ParkingReader(
                settings.librdkafka_common(), settings.parking_topic, loop, self._apply_parking
            )
            reader.start()
            caught_up = await loop.run_in_executor(None, reader.caught_up.wait, 120.0)
            if reader.error is not None or not caught_up:
                log.error(
                    "cannot read the parking topic",
                    extra={"topic": settings.parking_topic, "error": reader.error},
                )
                reader.stop()
                self._poller.stop()
                await health.stop()
                return 1
        if not await self._prepare_output():
            if reader is not None:
                reader.stop()
            self._poller.stop()
            await health.stop()
            return 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        servers = [loop.create_task(self._serve()) for _ in range(settings.max_in_flight)]
        committer = loop.create_task(self._commit_loop())
        # Modules, schemas and clients live as long as the process: keep them out of every
        # collection, so a full one scans only the records in flight (shorter pauses).
        gc.freeze()
        self._consumer.start()
        log.info(
            "worker started",
            extra={
                "topics": settings.input_topics,
                "group": settings.group_id,
                "max_in_flight": settings.max_in_flight,
                "event_loop": loop_name,
            },
        )
        try:
            await self._stop.wait()
            self._consumer.stop()
            # The consumer thread drains and commits through this loop, so keep it running.
            await loop.run_in_executor(None, self._consumer.finished.wait)
        finally:
            committer.cancel()
            for task in servers:
                task.cancel()
            await asyncio.gather(*servers, committer, return_exceptions=True)
            if reader is not None:
                reader.stop()
            self._poller.stop()
            await loop.run_in_executor(None, self._poller.join)
            await self.client.aclose()
            self.codec.close()
            await health.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("worker stopped", extra={"exit_code": self._exit_code})
        return self._exit_code

    async def _prepare_output(self) -> bool:
        """With the Confluent format, register the effects schema before taking work, in a
        thread: encoding effects then never waits on the registry. False when it fails."""
        if self.codec.encoding != "confluent":
            return True
        topic = self.settings.output_topic
        try:
            await _in_thread(self.codec.prepare_effects, topic)
        except RegistryError as exc:
            self.metrics.registry_failures.inc()
            log.error(
                "cannot register the effects schema in the Schema Registry "
                "(BRIDGE_SCHEMA_REGISTRY_URL)",
                extra={"topic": topic, "error": str(exc)},
            )
            return False
        return True


_T = TypeVar("_T")
# Registry calls at once; the rest of the records that wait for a schema queue behind them.
_REGISTRY_THREADS = 4


async def _in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """`fn(*args)` in a daemon thread: unlike an executor's, it does not hold up the
    process's exit while a dependency that never answers keeps it busy."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[_T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="schema-registry", daemon=True).start()
    return await done


def run_worker(settings: Settings) -> int:
    """Run a worker until SIGTERM/SIGINT or a fatal error; returns the exit code."""

    async def main() -> int:
        return await Worker(settings).run()

    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        return runner.run(main())


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    # uvloop's callbacks, futures and thread wake-ups cost less CPU than asyncio's own loop,
    # and the worker's loop thread is what bounds one process (docs/benchmarks.md).
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop
