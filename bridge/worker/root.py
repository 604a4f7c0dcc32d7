"""The worker: the one composition root of a running bridge.

It builds the pipeline (`pipeline.py`: batch → call → publish or dead-letter → complete) from
the settings, wires it to Kafka (the consumer thread, the producer and its `Output`, the
parking reader) and runs it: signals, periodic commits, gauges, health probes. Partition
changes go to `rebalance.py`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from bridge import __version__
from bridge.applications import DEFAULT_APPLICATION
from bridge.avro.codec import Codec, RegistryError
from bridge.errors import ConfigError, KafkaFatalError, KafkaUnreachableError
from bridge.kafka.config import blame_consumer_config, consumer_config
from bridge.kafka.consumer import ConsumerThread
from bridge.kafka.delivery import Sender, TransactionError, worker_producer, worker_transactions
from bridge.kafka.lag import LagReporter
from bridge.kafka.parking_log import ParkingReader
from bridge.kafka.records import InputRecord
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.talon.client import TalonClient
from bridge.tracing import Tracing
from bridge.types import TP
from bridge.worker.applications import talon_client
from bridge.worker.budget import BudgetKeeper, budget_keeper
from bridge.worker.decoding import in_thread
from bridge.worker.handlers import Handlers
from bridge.worker.health import HealthServer
from bridge.worker.output import AtLeastOnce, ExactlyOnce, TransactionalOutput
from bridge.worker.pipeline import Pipeline
from bridge.worker.rebalance import Rebalance
from bridge.worker.topic_limits import TopicLimits, check_cluster
from bridge.worker.work import Observer

__all__ = ["Worker", "run_worker"]

log = logging.getLogger(__name__)


class Worker:
    """Runs until stopped; see the module docstring. `observer` gets the hops of every
    record (benchmarks time them)."""

    def __init__(
        self,
        settings: Settings,
        *,
        codec: Codec | None = None,
        client: TalonClient | None = None,
        metrics: Metrics | None = None,
        observer: Observer | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.codec = codec or Codec.from_settings(settings)
        # One client (its own connections and key) per Talon.One application.
        self.clients = (
            {DEFAULT_APPLICATION: client}
            if client is not None
            else {
                app.name: talon_client(settings, app, self.metrics)
                for app in settings.applications().applications
            }
        )
        self.client = next(iter(self.clients.values()))
        handlers = {
            name: Handlers(
                c,
                events_api=settings.talon_events_api,
                on_deduplicated=self.metrics.events_deduplicated.inc,
            )
            for name, c in self.clients.items()
        }
        self.pipeline = Pipeline(
            settings,
            codec=self.codec,
            handlers=handlers,
            metrics=self.metrics,
            observer=observer,
            tracing=tracing,
        )
        self.pipeline.tracing.count_spans(
            lambda result, spans: self.metrics.trace_spans.labels(result).inc(spans)
        )
        self.budget: BudgetKeeper | None = budget_keeper(settings, self.pipeline.pacer)
        self.rebalance = Rebalance(
            self.pipeline, self.metrics, on_owned=self.budget.owned if self.budget else None
        )
        self.sequencer = self.pipeline.sequencer
        self.offsets = self.pipeline.offsets
        self.assigned = self.pipeline.assigned
        self.parking = self.pipeline.parking
        self._park = self.pipeline.park
        self._stop = asyncio.Event()
        self._exit_code = 0
        self._fatal: str | None = None
        self._consumer: ConsumerThread | None = None
        self._txn: TransactionalOutput | None = None
        self._signals = 0
        self._gauges()

    def _gauges(self) -> None:
        # Gauges of the worker's own state are read when scraped (on the event loop): setting
        # them per command would take a lock each time, and sampling them now and then could
        # miss a state that lasts less than the sampling interval.
        m, p = self.metrics, self.pipeline
        m.in_flight.set_function(lambda: p.in_flight)
        m.buffered.set_function(lambda: p.buffered)
        m.active_keys.set_function(lambda: p.sequencer.active_keys)
        m.last_progress.set_function(lambda: p.last_progress)
        m.paused.set_function(self._paused_partitions)
        m.oldest_unprocessed_age.set_function(self._oldest_unprocessed_age)
        m.parked_sessions.set_function(lambda: len(p.parking))
        m.parked_oldest_age.set_function(p.parking.oldest_age)
        m.parked_waiting.set_function(p.parking.waiting)
        m.ready.set_function(lambda: 1.0 if self.ready() else 0.0)
        for app in p.applications.values():
            app.export(m)
        budget, limit = self.budget, p.admission.limit
        m.api_group_budget.set_function(lambda: budget.budget if budget else 0.0)
        m.api_budget_share.set_function(lambda: budget.share if budget else 0.0)
        ceiling = self.settings.max_in_flight
        m.in_flight_limit.set_function(lambda: limit.limit if limit else ceiling)
        for topic in self.settings.input_topics:
            m.input_topic_missing.labels(topic).set_function(partial(self._topic_missing, topic))
            m.input_log_resets_for(topic)  # exported as 0 from the start

    def _paused_partitions(self) -> int:
        consumer = self._consumer
        return len(self.assigned) if consumer is not None and consumer.paused else 0

    def _oldest_unprocessed_age(self) -> float:
        oldest = self.offsets.oldest_pending_timestamp_ms()
        return 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)

    def _topic_missing(self, topic: str) -> float:
        consumer = self._consumer
        return 1.0 if consumer is not None and topic in consumer.missing_topics else 0.0

    # --- PartitionListener (called on the loop by the consumer thread) -------------------

    @property
    def released(self) -> int:
        return self.pipeline.released

    @property
    def intake_held(self) -> bool:
        # A fatal state, or every application's gate closed (a rejected key, an outage)
        # pauses intake: nothing new is read. One closed application holds its own records.
        return self._fatal is not None or self.pipeline.all_closed

    def on_batch(self, records: list[InputRecord]) -> None:
        self.metrics.consumer_batches.inc()
        self.pipeline.on_batch(records)

    def on_assigned(self, partitions: list[TP]) -> None:
        self.rebalance.on_assigned(partitions)

    def on_log_gone(self, partitions: list[TP]) -> None:
        self.rebalance.on_log_gone(partitions)

    async def drain(self, partitions: list[TP], timeout: float) -> dict[TP, int]:
        return await self.rebalance.drain(partitions, timeout)

    async def commit_transaction(self, group_metadata: Any) -> TransactionError | None:
        """Exactly-once handover: outputs and offsets go together in one transaction."""
        await self._commit_transaction(group_metadata)
        return self._txn.aborted if self._txn is not None else None

    def release(self, partitions: list[TP], reprocessed: int) -> None:
        self.rebalance.release(partitions, reprocessed)

    def on_lost(self, partitions: list[TP]) -> None:
        self.rebalance.on_lost(partitions)

    def on_fatal(self, error: KafkaFatalError) -> None:
        log.error("fatal Kafka error; stopping", extra={"error": str(error)})
        self._fatal = str(error)
        self._exit_code = 1
        self._stop.set()

    # --- lifecycle ------------------------------------------------------------------------

    def ready(self) -> bool:
        consumer = self._consumer
        return (
            self._fatal is None
            and not self.pipeline.auth_rejected
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
            self.on_fatal(exc)

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.commit_interval)
            if self._txn is not None:
                await self._commit_transaction()
            elif self._consumer is not None:
                self._consumer.request_commit(self.offsets.commit_positions())
                self.metrics.commits.inc()

    async def _open(self) -> tuple[HealthServer, TopicLimits] | None:
        """Say what starts, serve the probes, check the cluster and read the produced topics'
        limits; None if the cluster cannot be reached."""
        settings = self.settings
        log.info(
            "worker starting",
            extra={
                "version": __version__,
                "brokers": settings.kafka_bootstrap_servers,
                "group": settings.group_id,
                "group_instance_id": settings.group_instance_id,
                "topics": settings.input_topics,
                "output_topic": settings.output_topic,
                "dlq_topic": settings.dlq_topic,
                "parking_topic": settings.parking_topic if self._park else None,
                "on_poison": settings.on_poison,
                "exactly_once": settings.exactly_once,
                "talon_max_rps": settings.talon_max_rps,
                "applications": list(self.clients),
                "adaptive_in_flight": settings.adaptive_in_flight,
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
            topics = await in_thread(check_cluster, settings, self._park)
        except KafkaUnreachableError as exc:
            # Expected while the cluster or the network is down: one line, no traceback.
            log.error("%s", exc, extra={"brokers": exc.servers})
            await health.stop()
            return None
        except ConfigError:
            await health.stop()
            raise
        return health, topics

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Named from the loop itself, not the setting: what it reports is what actually runs.
        loop_name = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
        self.metrics.running_on(loop_name)
        settings = self.settings
        opened = await self._open()
        if opened is None:
            return 1
        health, topics = opened
        limits = topics.limits
        producer = worker_producer(settings, limits)
        sender = Sender(producer, loop, limits)
        if settings.exactly_once:
            transactions = worker_transactions(producer, settings, limits)
            self._txn = TransactionalOutput(transactions, on_abort=self._count_abort)
            self.pipeline.output = ExactlyOnce(self._txn, self.pipeline.complete)
            await self._txn.start()
        else:
            p = self.pipeline
            output = AtLeastOnce(
                sender, settings, self.metrics, p.complete, self.on_fatal, p.refused
            )
            sender.on_delivered = output.delivered
            self.pipeline.output = output
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
            blame=lambda exc: blame_consumer_config(exc, settings),
            on_stats=LagReporter(self.metrics),
            on_commit_failed=self._count_commit_failure,
            on_consumed=self.pipeline.observer.consumed if self.pipeline.observer else None,
        )
        sender.start()
        reader: ParkingReader | None = None
        if self._park:
            # The parked set must be complete before any record is taken.
            reader = ParkingReader(
                settings.librdkafka_common(),
                settings.parking_topic,
                loop,
                self.pipeline.apply_parking,
            )
            reader.start()
            caught_up = await loop.run_in_executor(None, reader.caught_up.wait, 120.0)
            if reader.error is not None or not caught_up:
                log.error(
                    "cannot read the parking topic",
                    extra={"topic": settings.parking_topic, "error": reader.error},
                )
                reader.stop()
                sender.stop()
                await health.stop()
                return 1
        if not await self._prepare_output():
            if reader is not None:
                reader.stop()
            sender.stop()
            await health.stop()
            return 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        servers = [loop.create_task(self.pipeline.serve()) for _ in range(settings.max_in_flight)]
        committer = loop.create_task(self._commit_loop())
        servers.append(loop.create_task(topics.run()))
        if self.budget is not None:
            await self.budget.recount()  # the share is known before the first assignment
            servers.append(loop.create_task(self.budget.run()))
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
            sender.stop()
            await loop.run_in_executor(None, sender.join)
            for client in self.clients.values():
                await client.aclose()
            await loop.run_in_executor(None, self.pipeline.tracing.close)
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
            await in_thread(self.codec.prepare_effects, topic)
        except RegistryError as exc:
            self.metrics.registry_failures.inc()
            log.error(
                "cannot register the effects schema in the Schema Registry "
                "(BRIDGE_SCHEMA_REGISTRY_URL)",
                extra={"topic": topic, "error": str(exc)},
            )
            return False
        return True


def run_worker(
    settings: Settings, *, observer: Observer | None = None, tracing: Tracing | None = None
) -> int:
    """Run a worker until SIGTERM/SIGINT or a fatal error; returns the exit code."""

    async def main() -> int:
        return await Worker(settings, observer=observer, tracing=tracing).run()

    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        return runner.run(main())


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    # uvloop's callbacks, futures and thread wake-ups cost less CPU than asyncio's own loop,
    # and the worker's loop thread is what bounds one process (docs/benchmarks.md).
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop
