"""All Prometheus metrics of the worker, in one object with an injectable registry.

Names follow Prometheus conventions: prefix `bridge_`, base units, `_total` on counters (the
client library appends it), and only bounded labels: never a session, profile or event ID.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Generic, TypeVar, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)

from bridge import __version__
from bridge.types import (
    ApiErrorOutcome,
    CommandOutcome,
    CommandType,
    DeadLetterReason,
    DeliveryKind,
    RecordCommandType,
    RetryClass,
)

__all__ = ["COMMAND_TYPES", "DLQ_REASONS", "Children", "Metrics"]

_T = TypeVar("_T", Counter, Gauge, Histogram)


class Children(Generic[_T]):
    """A labelled metric's children, each looked up once.

    `labels()` validates and locks on every call; on the per-command path that costs more
    than the increment itself.
    """

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: _T) -> None:
        self._metric: _T = metric
        self._cache: dict[tuple[str, ...], _T] = {}

    def __call__(self, *values: str) -> _T:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self._metric.labels(*values)
        return child


# Label value sets, from the vocabularies in bridge.types.
COMMAND_TYPES: Final = get_args(RecordCommandType)
OPERATIONS: Final = get_args(CommandType)
COMMAND_OUTCOMES: Final = get_args(CommandOutcome)
RETRY_CLASSES: Final = get_args(RetryClass)
API_ERROR_CLASSES: Final = get_args(ApiErrorOutcome)
DLQ_REASONS: Final = get_args(DeadLetterReason)
DELIVERY_KINDS: Final = get_args(DeliveryKind)
# Kafka errors a commit or a transaction meets when the group changes under it, exported from
# 0; other causes appear when they first happen.
GROUP_CHANGE_CAUSES = ("ILLEGAL_GENERATION", "STALE_MEMBER_EPOCH", "UNKNOWN_MEMBER_ID")

# `_created` series double the series count and no dashboard or alert uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]
_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)


class Metrics:
    """The worker's metrics; pass a fresh registry in tests."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.consumed = Counter(
            "bridge_commands_consumed", "Records read from input topics.", ["topic"], registry=r
        )
        self.consumer_batches = Counter(
            "bridge_consumer_batches",
            "Batches of input records the consumer thread handed to the event loop.",
            registry=r,
        )
        self.processed = Counter(
            "bridge_commands_processed",
            "Records finished, by command type and outcome (applied, dead_lettered, parked).",
            ["command_type", "outcome"],
            registry=r,
        )
        self.retried = Counter(
            "bridge_commands_retried",
            "API calls retried, by error class.",
            ["command_type", "error_class"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "bridge_dead_letters",
            "Records written to the dead-letter topic, by reason and Talon.One application "
            "(empty for records routed to none).",
            ["reason", "application"],
            registry=r,
        )
        self.dead_letters_value_omitted = Counter(
            "bridge_dead_letters_value_omitted",
            "Dead letters sent without the original record's value: the producer refused the "
            "record whole (larger than message.max.bytes with our headers).",
            registry=r,
        )
        self.api_duration = Histogram(
            "bridge_api_request_duration_seconds",
            "Talon.One request duration, by application, operation and outcome.",
            ["application", "operation", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.api_errors = Counter(
            "bridge_api_errors",
            "Talon.One request failures by application and class (409, 429, 5xx, timeout, 4xx, "
            "auth, connection).",
            ["application", "operation", "error_class"],
            registry=r,
        )
        self.api_connections_opened = Counter(
            "bridge_api_connections_opened",
            "Connections opened to Talon.One, by application. Near 0/s once the pool is warm; "
            "a steady rate means keep-alive is being cut. Not counted by the reqwest engine.",
            ["application"],
            registry=r,
        )
        self.api_stale_connections = Counter(
            "bridge_api_stale_connections",
            "Reused connections Talon.One closed before answering, by application; a call "
            "safe to repeat went again on a new connection. httptools engine only.",
            ["application"],
            registry=r,
        )
        self.e2e_latency = Histogram(
            "bridge_end_to_end_latency_seconds",
            "From the record's Kafka timestamp to its effects being acknowledged.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.occurred_latency = Histogram(
            "bridge_occurred_to_acknowledged_seconds",
            "From the command's occurredAt to its effects being acknowledged.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.registry_failures = Counter(
            "bridge_schema_registry_failures",
            "Schema Registry lookups that failed (no answer in time, connection, 5xx).",
            registry=r,
        )
        self.in_flight = Gauge(
            "bridge_in_flight_commands", "Commands with an API call running.", registry=r
        )
        self.buffered = Gauge(
            "bridge_buffered_commands", "Commands read but not yet finished.", registry=r
        )
        self.active_keys = Gauge(
            "bridge_active_keys", "Sessions and profiles with queued commands.", registry=r
        )
        self.paused = Gauge(
            "bridge_paused_partitions", "Assigned partitions paused by backpressure.", registry=r
        )
        self.assigned = Gauge(
            "bridge_assigned_partitions", "Partitions assigned to this worker.", registry=r
        )
        self.input_topic_missing = Gauge(
            "bridge_input_topic_missing",
            "1 while a subscribed input topic does not exist, or the worker may not describe it.",
            ["topic"],
            registry=r,
        )
        self.input_log_resets = Counter(
            "bridge_input_log_resets",
            "Input partitions whose positions were dropped because their log was deleted, or "
            "restarted below an offset already read (a topic re-created, a log truncated).",
            ["topic"],
            registry=r,
        )
        self.commits = Counter("bridge_offset_commits", "Offset commits issued.", registry=r)
        self.commit_failures = Counter(
            "bridge_offset_commit_failures",
            "Offset commits Kafka refused, by Kafka error (a later commit carries the positions).",
            ["cause"],
            registry=r,
        )
        self.transactions_aborted = Counter(
            "bridge_transactions_aborted",
            "Exactly-once transactions aborted, by Kafka error (their outputs are sent again).",
            ["cause"],
            registry=r,
        )
        self.records_reprocessed = Counter(
            "bridge_records_reprocessed",
            "Records this worker finished whose offsets the group had not committed when "
            "their partition left it: the next owner processes them again.",
            registry=r,
        )
        self.rebalances = Counter(
            "bridge_rebalances", "Rebalance events, by kind.", ["event"], registry=r
        )
        self.drain_duration = Histogram(
            "bridge_revoke_drain_duration_seconds",
            "Time to drain revoked partitions' in-flight calls.",
            registry=r,
        )
        self.effects = Counter(
            "bridge_effects_published",
            "Effects published, by effect type.",
            ["effect_type"],
            registry=r,
        )
        self.delivery_failures = Counter(
            "bridge_producer_delivery_failures",
            "Records the producer failed to deliver, by topic kind.",
            ["kind"],
            registry=r,
        )
        self.session_quota_exceeded = Counter(
            "bridge_session_quota_exceeded",
            "Records dead-lettered because their session had BRIDGE_MAX_QUEUED_PER_SESSION "
            "commands queued (a hot session).",
            registry=r,
        )
        self.profile_quota_waits = Counter(
            "bridge_profile_quota_waits",
            "Times a command waited because its customer profile had "
            "BRIDGE_MAX_IN_FLIGHT_PER_PROFILE calls running.",
            registry=r,
        )
        self.idempotent_replays = Counter(
            "bridge_idempotent_replays",
            "Responses Talon.One replayed for a repeated Idempotency-Key.",
            registry=r,
        )
        self.events_deduplicated = Counter(
            "bridge_events_deduplicated",
            "trackEventV3 events Talon.One had registered already (a redelivery or a replay); "
            "their stored effects were published.",
            registry=r,
        )
        self.trace_spans = Counter(
            "bridge_trace_spans",
            "Spans handed to the OTLP exporter, by whether the collector took them.",
            ["result"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "bridge_consumer_lag_records",
            "Records between the committed position and the partition's end, per partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.oldest_unprocessed_age = Gauge(
            "bridge_oldest_unprocessed_age_seconds",
            "Age (from its Kafka timestamp) of the oldest record read but not yet finished.",
            registry=r,
        )
        self.last_progress = Gauge(
            "bridge_last_progress_timestamp_seconds",
            "When the worker last finished a record (Unix time).",
            registry=r,
        )
        self.parked_sessions = Gauge(
            "bridge_parked_sessions", "Sessions parked behind a dead letter.", registry=r
        )
        self.parked_oldest_age = Gauge(
            "bridge_parked_oldest_age_seconds",
            "How long the longest-parked session has been parked.",
            registry=r,
        )
        self.parked_waiting = Gauge(
            "bridge_parked_records_waiting",
            "Records of parked sessions' chains (the poisons included) not back from a replay yet.",
            registry=r,
        )
        self.replay_proofs_rejected = Counter(
            "bridge_replay_proofs_rejected_total",
            "Records for a parked session carrying replay headers that did not prove a place in "
            "its chain (forged, or of an earlier chain); diverted to the end of the chain.",
            registry=r,
        )
        self.api_healthy = Gauge(
            "bridge_api_auth_ok",
            "0 while Talon.One rejects the application's API key (401/403), else 1.",
            ["application"],
            registry=r,
        )
        self.api_outage = Gauge(
            "bridge_api_outage",
            "1 while Talon.One fails calls across many sessions (an outage): intake is paused "
            "and calls are probed with backoff instead of counting against retry budgets; per "
            "Talon.One application.",
            ["application"],
            registry=r,
        )
        self.api_gate_closed = Gauge(
            "bridge_api_gate_closed",
            "1 while an application's API gate holds its calls, by reason: outage, auth or "
            "throttled (429s go on although the send rate was lowered).",
            ["application", "reason"],
            registry=r,
        )
        self.api_retry_after = Gauge(
            "bridge_api_retry_after_seconds",
            "Seconds left until the latest Retry-After an application named (0 when none is in "
            "force).",
            ["application"],
            registry=r,
        )
        self.api_pacing_limit = Gauge(
            "bridge_api_pacing_limit_per_second",
            "Calls per second an application's pacer allows, learnt from 429s (0 while it does "
            "not limit).",
            ["application"],
            registry=r,
        )
        self.api_group_budget = Gauge(
            "bridge_api_group_budget_per_second",
            "Talon.One calls per second allowed to the whole group (BRIDGE_TALON_MAX_RPS; 0: "
            "no cap).",
            registry=r,
        )
        self.api_budget_share = Gauge(
            "bridge_api_budget_share_per_second",
            "This worker's share of the group's budget: budget x owned / total input "
            "partitions (0: no cap, or no partition).",
            registry=r,
        )
        self.in_flight_limit = Gauge(
            "bridge_in_flight_limit",
            "API calls allowed at once now: BRIDGE_MAX_IN_FLIGHT, or less while the adaptive "
            "limit holds it down.",
            registry=r,
        )
        self.in_flight_limit_changes = Counter(
            "bridge_in_flight_limit_changes",
            "Changes of the adaptive in-flight limit, by direction (down, up).",
            ["direction"],
            registry=r,
        )
        self.ready = Gauge("bridge_ready", "1 when the worker is ready to take work.", registry=r)
        self.build = Info("bridge_build", "Build information.", registry=r)
        self.running_on("")  # known once the worker runs on its loop
        # Known label sets start at 0, so rate() and increase() see their first events.
        for ct in COMMAND_TYPES:
            for outcome in COMMAND_OUTCOMES:
                self.processed.labels(ct, outcome)
            if ct != "unknown":
                for rc in RETRY_CLASSES:
                    self.retried.labels(ct, rc)
        for kind in DELIVERY_KINDS:
            self.delivery_failures.labels(kind)
        for direction in ("down", "up"):
            self.in_flight_limit_changes.labels(direction)
        for cause in GROUP_CHANGE_CAUSES:
            self.commit_failures.labels(cause)
            self.transactions_aborted.labels(cause)
        for result in ("exported", "failed"):
            self.trace_spans.labels(result)
        ProcessCollector(registry=r)
        self.consumed_for = Children(self.consumed)
        self.input_log_resets_for = Children(self.input_log_resets)
        self.processed_for = Children(self.processed)
        self.effects_for = Children(self.effects)
        self.api_duration_for = Children(self.api_duration)
        self.api_errors_for = Children(self.api_errors)
        self.dead_lettered_for = Children(self.dead_lettered)

    def serve(self, applications: Iterable[str], *, routed: bool = False) -> None:
        """Export the series of each Talon.One application the worker serves, from 0 (or,
        for the key's health, 1); `routed`: records are routed by a table, so some may go
        to none."""
        if routed:
            self.dead_lettered.labels("unroutable", "")
        for app in applications:
            self.api_healthy.labels(app).set(1)
            self.api_outage.labels(app)
            self.api_connections_opened.labels(app)
            self.api_stale_connections.labels(app)
            for op in OPERATIONS:
                for ec in API_ERROR_CLASSES:
                    self.api_errors.labels(app, op, ec)
            for reason in DLQ_REASONS:
                if reason != "unroutable":
                    self.dead_lettered.labels(reason, app)

    def running_on(self, event_loop: str) -> None:
        """Record the event loop the worker runs on, beside the version."""
        self.build.info({"version": __version__, "event_loop": event_loop})
