"""A record's way through the worker: batch → call → publish or dead-letter → complete.

Records arrive in batches from the consumer thread. Each becomes a `Work` item queued in the
per-key sequencer; runnable items go to a ready queue served by `max_in_flight` long-lived
coroutines (`serve`, no task per record). A finished API call releases its keys at once, so
the session's next command can start while its effects record is still being acknowledged;
the source offset completes only when the `Output` says that acknowledgement (or the dead
letter's) arrived. Kafka is behind `Output`; Talon.One behind `Handlers`; time behind `clock`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial

from bridge.applications import DEFAULT_APPLICATION
from bridge.avro.codec import Codec, RegistryError
from bridge.commands import Command, EffectRecord
from bridge.dlq import (
    DeadLetter,
    Letter,
    header,
    record_letter_headers,
    smaller_letter,
)
from bridge.engine.concurrency import ConcurrencyLimit
from bridge.engine.gate import GateReason
from bridge.engine.offsets import OffsetTracker, Slot
from bridge.engine.outcome import Hold, Retry, decide
from bridge.engine.pacing import Pacer
from bridge.engine.retry import RetryPolicy
from bridge.engine.sequencer import Sequenced, Sequencer
from bridge.errors import (
    ApiError,
    ConflictError,
    DecodeError,
    InvalidCommandError,
    OutputTooLargeError,
    RateLimitedError,
    RetryableApiError,
)
from bridge.kafka.records import InputRecord
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.tracing import Tracing
from bridge.types import TP
from bridge.worker.admission import Admission
from bridge.worker.applications import Application
from bridge.worker.decoding import Decoder
from bridge.worker.handlers import Applied, Handlers
from bridge.worker.parking import Chains, ParkedSession, ParkingLot
from bridge.worker.quota import SessionQuota
from bridge.worker.work import ACTIVE, Observer, Output, State, Work, keys

__all__ = ["Pipeline"]

# A record whose call was applied is no poison: its session goes on unparked.
_UNPARKED = frozenset({"parked", "output-too-large"})
# The worker's log lines keep its logger name, which log filters and alerts key on.
log = logging.getLogger("bridge.worker.root")


class Pipeline:
    """Takes records in, schedules them per session, calls Talon.One and hands the outputs
    to `output` (set before serving).

    `handlers` is one application's (served as `default`, every record goes to it), or one
    per application of the settings' routing table (`BRIDGE_APPLICATIONS_FILE`), by name.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        codec: Codec,
        handlers: Handlers | Mapping[str, Handlers],
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        observer: Observer | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.tracing = tracing or Tracing()
        self.metrics = metrics
        self.decoder = Decoder(codec)
        self.observer = observer
        self._clock, self._wall = clock, wall
        self.retry = RetryPolicy(
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
            max_attempts=settings.retry_max_attempts,
            max_elapsed=settings.retry_max_elapsed,
        )
        self.sequencer: Sequencer[Work] = Sequencer(
            settings.max_in_flight_per_profile or None, metrics.profile_quota_waits.inc
        )
        self.offsets = OffsetTracker()
        self.assigned: set[TP] = set()
        self.parking = ParkingLot()
        self.chains = Chains(self.parking, log, metrics.replay_proofs_rejected.inc)
        self.park = settings.on_poison == "park"
        self.quota = SessionQuota(
            settings, self.sequencer, self.chains, metrics, self._parking_writer
        )
        self.output: Output | None = None
        self.buffered = 0
        self.released = 0  # handed-over records no longer held, for backpressure
        self.in_flight = 0
        self.last_progress = 0.0
        self.drained = asyncio.Event()  # set when a draining partition makes progress
        self.draining: set[TP] = set()
        # Oldest record first: finishing early offsets first advances the committable prefix,
        # which keeps latency low and leaves little to redo after a crash or a revoke.
        self._ready: asyncio.PriorityQueue[tuple[int, Sequenced[Work]]] = asyncio.PriorityQueue()
        self._arrivals = 0
        self.table = table = settings.applications_file
        if isinstance(handlers, Handlers):
            handlers = {DEFAULT_APPLICATION: handlers}
        # The worker-wide pace (the group budget's share): with one application, its own
        # pacer; with several, one that only the budget limits.
        self.pacer = Pacer() if table is None else Pacer(initial=None)
        self.applications = {
            name: Application(
                name,
                h,
                metrics,
                clock,
                max_backoff=settings.retry_max_delay,
                on_open=self._reopened,
                pacer=self.pacer if table is None else None,
            )
            for name, h in handlers.items()
        }
        self._serving = list(self.applications.values())
        metrics.serve(self.applications, routed=table is not None)
        # Without a table every record goes to the one application: no per-record routing.
        self._only = self._serving[0] if table is None else None
        self._header = settings.application_header
        # The first application's, for callers that serve one.
        self.gatekeeper = self._serving[0].gatekeeper
        self.gate = self.gatekeeper.gate
        limit = ConcurrencyLimit(settings.max_in_flight) if settings.adaptive_in_flight else None
        self.admission = Admission(self.pacer, limit, metrics, clock, lambda: self.in_flight)

    @property
    def all_closed(self) -> bool:
        """Every application's gate is closed: nothing read now could run."""
        return not any(app.gatekeeper.is_open for app in self._serving)

    @property
    def auth_rejected(self) -> bool:
        """Some application's key is rejected."""
        return any(app.gate.auth_rejected for app in self._serving)

    def _route(self, rec: InputRecord) -> Application | None:
        assert self.table is not None  # noqa: S101 - only called with a table
        named = header(rec.headers, self._header) if rec.headers else None
        name = self.table.route(rec.topic, named)
        return None if name is None else self.applications[name]

    def _reopened(self, app: Application) -> None:
        put = self._ready.put_nowait
        for item in app.take_held():
            put(item)

    # --- intake ------------------------------------------------------------------------------

    def on_batch(self, records: list[InputRecord]) -> None:
        if self.observer is not None:
            self.observer.batch(records)
        track = self.offsets.track
        seq_add = self.sequencer.add
        ready = self._ready.put_nowait
        consumed = self.metrics.consumed_for
        decode = self.decoder.decode
        arrival = self._arrivals
        only = self._only
        for rec in records:
            tp = (rec.topic, rec.partition)
            if tp not in self.assigned:
                self.released += 1  # read before the partition was revoked or lost
                continue
            slot = track(tp, rec.offset, rec.timestamp_ms)
            if slot is None:
                slot = self._log_restarted(rec)
            work = Work(rec, slot)
            work.seq = arrival = arrival + 1
            work.app = only if only is not None else self._route(rec)
            try:
                work.command = decode(rec)
            except DecodeError as exc:
                work.error = exc
            except RegistryError:
                pass  # decoded again when it runs; see serve
            consumed(rec.topic).inc()
            if rec.key is not None and (letter := self.quota.divert(work, rec.key)):
                self.buffered += 1
                self._dead_letter(work, letter)
                continue
            entry = work.entry = seq_add(work, *keys(work))
            self.buffered += 1
            if entry.runnable:
                ready((work.seq, entry))
        self._arrivals = arrival

    def _log_restarted(self, rec: InputRecord) -> Slot:
        """A record below one already read from its partition: the log started over (a topic
        re-created before its deletion was noticed, or a truncated log)."""
        tp = (rec.topic, rec.partition)
        self.drop_log(
            tp,
            "input partition restarted below the offset already read; tracking it afresh",
            f"{rec.topic}[{rec.partition}]@{rec.offset}",
        )
        slot = self.offsets.track(tp, rec.offset, rec.timestamp_ms)
        assert slot is not None  # noqa: S101 - forgotten just above, so tracked afresh
        return slot

    def drop_log(self, tp: TP, message: str, where: str) -> None:
        """Positions read from `tp` belong to a log that is gone: committed against a new one,
        they would skip its records. What was read still runs and publishes."""
        log.warning(message, extra={"where": where})
        self.metrics.input_log_resets_for(tp[0]).inc()
        self.offsets.forget(tp, log_gone=True)
        if self.output is not None:
            self.output.orphan(tp)

    def drop_pending(self, tps: set[TP]) -> None:
        """Drop what has not started in `tps`; the partitions' next owner reads it again."""

        def doomed(w: Work) -> bool:
            return w.tp in tps and w.state in (State.QUEUED, State.BACKOFF)

        removed, became = self.sequencer.remove_where(doomed)
        for entry in removed:
            work = entry.item
            if work.timer is not None:
                work.timer.cancel()
            work.state = State.DROPPED
            self.tracing.dropped(work)
            self.buffered -= 1
            self.released += 1
        for entry in became:
            self._ready.put_nowait((entry.item.seq, entry))
        for app in self._serving:
            app.forget_dropped()

    # --- serving -----------------------------------------------------------------------------

    async def serve(self) -> None:
        """One of `max_in_flight` servers: runs ready records, oldest first, forever; with an
        adaptive in-flight limit, only while it holds a place under the limit."""
        get, admission = self._ready.get, self.admission
        if admission.limit is None:
            while True:
                _, entry = await get()
                await self._serve(entry)
        while True:
            await admission.enter()
            try:
                _, entry = await get()
                await self._serve(entry)
            finally:
                admission.leave()

    async def _serve(self, entry: Sequenced[Work]) -> None:
        work = entry.item
        if work.state is not State.QUEUED:
            return
        key = work.rec.key
        if self.park and key is not None and (parked := self.parking.get(key)):
            diverted = self._admit(work, key, parked)
            if diverted is not None:
                self._dead_letter(work, diverted)
                return
        app = work.app
        if app is None:
            self._dead_letter(work, self._unrouted(work.rec))
            return
        cmd = work.command
        if cmd is None and work.error is None:
            cmd = await self._decode_later(work)
            if cmd is None and work.error is None:
                return  # waiting for the schema registry
        if cmd is None:
            err = work.error or DecodeError("invalid", "no command")
            self._dead_letter(work, DeadLetter("decode", "DecodeError", err.reason, err.message))
            return
        gatekeeper = app.gatekeeper
        if not gatekeeper.is_open:
            app.hold(entry)  # not in a server: other applications' records go on
            return
        await self.admission.pace()
        if app.pacer is not self.admission.pacer:
            await app.pace()
        if work.state is not State.QUEUED:
            return  # dropped while waiting: its next owner runs it
        if not gatekeeper.is_open:
            app.hold(entry)  # closed while it waited for its pace
            return
        await self._call(work, app, cmd)

    def _unrouted(self, rec: InputRecord) -> DeadLetter:
        assert self.table is not None  # noqa: S101 - every record is routed without a table
        named = header(rec.headers, self._header) if rec.headers else None
        return DeadLetter(
            "route", "UnroutableRecord", "unroutable", self.table.unrouted(rec.topic, named)
        )

    async def _decode_later(self, work: Work) -> Command | None:
        """Decode a record whose writer schema was not cached on arrival, fetching it from
        the registry in a thread while the loop serves everything else.

        A registry outage is not the record's fault: it waits with backoff (holding its
        session) instead of going to the dead-letter topic.
        """
        failure: DecodeError | RegistryError | None = None
        try:
            await self.decoder.fetch(work.rec)
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
                work.command = self.decoder.decode(work.rec)
                return work.command
            except DecodeError as exc:
                failure = exc
        work.error = failure
        return None

    async def _call(self, work: Work, app: Application, cmd: Command) -> None:
        if self.observer is not None:
            self.observer.calling(work.rec, cmd)
        self._transition(work, State.RUNNING)
        work.attempts += 1
        self.tracing.calling(work)
        self.in_flight += 1
        sent_at = self._clock()
        try:
            applied = await app.handlers.apply(cmd)
        except ApiError as exc:
            self.in_flight -= 1
            self.tracing.failed(work, exc)
            self._failed(work, app, exc, sent_at)
            return
        except InvalidCommandError as exc:
            self.in_flight -= 1
            message = f"{exc.message} at {exc.pointer}" if exc.pointer else exc.message
            self._dead_letter(
                work, DeadLetter("validate", "InvalidCommandError", "validation", message)
            )
            return
        except Exception as exc:
            self.in_flight -= 1
            log.exception("unexpected error applying a command", extra=work.log_extra())
            self._dead_letter(work, DeadLetter("api", type(exc).__name__, "internal", str(exc)))
            return
        self.in_flight -= 1
        self.admission.accepted(sent_at, app.pacer)
        app.gatekeeper.succeeded()
        self._publish(work, cmd, applied)

    def _failed(self, work: Work, app: Application, exc: ApiError, sent_at: float) -> None:
        now = self._clock()
        self.admission.failed(now, sent_at, exc)
        if work.first_failure is None:
            work.first_failure = now
        hold: GateReason | None = None
        if isinstance(exc, RateLimitedError):
            # "Slow down", never an outage: the pacer lowers the rate; only 429s to calls it
            # had already slowed count towards closing the gate.
            slowed = app.pacer.on_throttled(now, sent_at, exc.retry_after)
            if app.gate.throttled(work.rec.key, slowed=slowed):
                hold = "throttled"
        elif isinstance(exc, RetryableApiError) and not isinstance(exc, ConflictError):
            app.pacer.on_retry_after(now, exc.retry_after)
            if app.gate.failed(work.rec.key):
                hold = "outage"
        outcome = decide(
            exc,
            attempts=work.attempts,
            elapsed=now - work.first_failure,
            policy=self.retry,
            hold=hold,
        )
        if isinstance(outcome, Hold):
            self._hold(work, app, outcome.reason, exc)
            return
        if isinstance(outcome, Retry):
            self.metrics.retried.labels(work.command_type, exc.error_class).inc()
            self._backoff(work, outcome.delay)
            return
        body = None
        if exc.body is not None:
            dump = getattr(exc.body, "model_dump_json", None)
            body = dump() if dump is not None else str(exc.body)
        log.warning(
            "dead-lettering a command",
            extra={
                **work.log_extra(),
                "application": app.name,
                "status": exc.status,
                "error_class": exc.error_class,
            },
        )
        wall = self._wall()
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
                first_failure=wall - (now - work.first_failure),
                last_failure=wall,
            ),
        )

    def _transition(self, work: Work, new: State) -> None:
        """Change state, keeping the partition's in-progress count (what a drain waits on)."""
        was_active = work.state in ACTIVE
        if new in ACTIVE and not was_active:
            work.slot.begin()
        elif was_active and new not in ACTIVE and work.slot.end():
            self.drained.set()
        work.state = new

    def _backoff(self, work: Work, delay: float) -> None:
        self._transition(work, State.BACKOFF)
        work.timer = asyncio.get_running_loop().call_later(delay, self._requeue, work)

    def _requeue(self, work: Work) -> None:
        if work.state is State.BACKOFF and work.entry is not None:
            work.timer = None
            work.state = State.QUEUED
            self._ready.put_nowait((work.seq, work.entry))

    def _hold(self, work: Work, app: Application, reason: GateReason, exc: ApiError) -> None:
        # No record is to blame, so none spends its retry budget; the held call waits too.
        work.attempts -= 1
        work.first_failure = None
        app.gatekeeper.close(reason, exc)
        self._backoff(work, 0)

    # --- outputs -----------------------------------------------------------------------------

    def _publish(self, work: Work, cmd: Command, applied: Applied) -> None:
        if self.observer is not None:
            self.observer.publishing(work.rec, cmd)
        if applied.replayed:
            self.metrics.idempotent_replays.inc()
        self._transition(work, State.PRODUCING)
        self._release(work)
        output = self._output()
        trace = self.tracing.applied(work, applied.status)
        if self.settings.skip_empty_effects and not applied.effects:
            output.finish(work)
            return
        rec = applied.record(cmd, work.rec, int(self._wall() * 1000))
        topic = self.settings.output_topic
        value = self.decoder.codec.encode_effects(rec, topic)
        try:
            output.send(work, topic, work.rec.key, value, trace)
        except OutputTooLargeError as exc:
            self.refused(work, str(exc), len(value))
            return
        work.effects = applied.effects  # counted once the record is safe (`complete`)

    def _count_effects(self, effects: list[EffectRecord]) -> None:
        # Counted by type first: an answer carries ~10 effects of two or three types, and
        # each inc() takes the child's lock (5.9 against 3.3 µs a command).
        counts: dict[str, int] = {}
        for effect in effects:
            kind = effect.effect_type
            counts[kind] = counts.get(kind, 0) + 1
        for kind, n in counts.items():
            self.metrics.effects_for(kind).inc(n)

    def refused(self, work: Work, detail: str, size: int) -> None:
        """The effects record of an applied call is too large for the producer or its topic,
        now or at delivery. It can never be published, so the record goes to the dead-letter
        topic (which takes it, as it came from Kafka) instead of holding its partition."""
        log.error("effects record too large to publish", extra={**work.log_extra(), "bytes": size})
        letter = DeadLetter("publish", "OutputTooLargeError", "output-too-large", detail)
        self._dead_letter(work, letter)

    def _dead_letter(self, work: Work, letter: DeadLetter) -> None:
        self._transition(work, State.PRODUCING)
        rec = work.rec
        work.outcome = "parked" if letter.reason == "parked" else "dead_lettered"
        if self.park and rec.key is not None and letter.reason not in _UNPARKED:
            # Parked before the keys are released, so the session's next command sees it.
            event_id = work.command.event_id if work.command is not None else None
            letter = self.chains.park_behind(
                rec, rec.key, letter, event_id, self._parking_writer(work), work.log_extra()
            )
        if work.entry is not None:
            self._release(work)
        app = work.app.name if work.app is not None else ""
        headers = record_letter_headers(rec, letter, self.settings.group_id, app or None)
        traced = self.tracing.dead_lettered(work, letter, headers)
        self.metrics.dead_lettered_for(letter.reason, app).inc()
        output = self._output()
        dead: Letter = (rec.key, rec.value, traced)
        original = 0  # the record's size, once a form of its letter was refused
        while True:
            try:
                output.send(work, self.settings.dlq_topic, *dead)
                break
            except OutputTooLargeError:
                original = original or rec.wire_size
                smaller = smaller_letter(dead, original)
                if smaller is None:
                    raise  # only a message.max.bytes below any record's framing gets here
                dead = smaller
        if original:
            log.error(
                "record too large to dead-letter whole; its value is left out",
                extra={**work.log_extra(), "bytes": original},
            )
            self.metrics.dead_letters_value_omitted.inc()

    def _admit(self, work: Work, key: bytes, parked: ParkedSession) -> DeadLetter | None:
        return self.chains.admit(
            work.rec, key, parked, self._parking_writer(work), work.log_extra()
        )

    def _parking_writer(self, work: Work) -> Callable[[bytes, bytes | None], None]:
        return partial(self._output().send, work, self.settings.parking_topic)

    def apply_parking(self, batch: list[tuple[bytes, bytes | None]]) -> None:
        """Records of the parking topic, as its reader follows it."""
        for key, value in batch:
            self.parking.apply(key, value)

    def _output(self) -> Output:
        if self.output is None:
            raise RuntimeError("the worker is not running")
        return self.output

    def _release(self, work: Work) -> None:
        if work.entry is None:
            return
        put = self._ready.put_nowait
        for entry in self.sequencer.release(work.entry):
            put((entry.item.seq, entry))
        work.entry = None

    def complete(self, work: Work) -> None:
        """Every output of `work` is safe: its offset may be committed."""
        work.slot.complete()
        self._transition(work, State.DONE)
        self.buffered -= 1
        self.released += 1
        if work.tp in self.draining:
            self.drained.set()
        self.metrics.processed_for(work.command_type, work.outcome).inc()
        if work.effects and work.outcome == "applied":
            self._count_effects(work.effects)
        now_ms = self._wall() * 1000
        self.metrics.e2e_latency.observe(max(0.0, now_ms - work.rec.timestamp_ms) / 1000)
        if work.command is not None:
            self.metrics.occurred_latency.observe(
                max(0.0, now_ms - work.command.occurred_at_ms) / 1000
            )
        self.last_progress = now_ms / 1000
