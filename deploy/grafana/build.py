"""Generate talon-bridge's Grafana dashboards as code (grafana-foundation-sdk).

    python deploy/grafana/build.py           # write the JSON files
    python deploy/grafana/build.py --check   # exit 1 if any file is out of date

Each dashboard is written to `deploy/grafana/<name>.json` and copied, byte for byte, to the Helm
chart's `deploy/helm/talon-bridge/dashboards/<name>.json` (one ConfigMap per file). Edit this
file, never the JSON.

Every query is filtered by the `namespace` and `pod` variables (and `topic` where the metric has
that label); "All" is the regex `.*`, which also matches a missing label, so the dashboards work
with a plain scrape config as well as with a ServiceMonitor.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import (
    heatmap,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm

__all__ = ["DASHBOARDS", "RUNBOOK", "RUNBOOK_VAR", "render", "write"]

ROOT = Path(__file__).resolve().parents[2]
OUT_DIRS = (ROOT / "deploy" / "grafana", ROOT / "deploy" / "helm" / "talon-bridge" / "dashboards")
RUNBOOK = "docs/operations.md"
# The Runbook link is the hidden constant `runbook_url`: a path in this repository, which
# Grafana cannot open by itself. Set it to where the runbook is browsable when importing the
# dashboards; the chart does (`dashboards.runbookBaseUrl`).
RUNBOOK_VAR = "runbook_url"
TAGS = ["talon-bridge", "kafka", "talon-one"]

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
S = 'namespace=~"$namespace", pod=~"$pod"'
RI = "$__rate_interval"

# Fixed colours, so an outcome looks the same on every panel.
OUTCOME_COLORS = {
    "2xx": "green",
    "409": "purple",
    "429": "orange",
    "4xx": "yellow",
    "5xx": "red",
    "auth": "dark-red",
    "timeout": "blue",
    "connection": "dark-purple",
    "applied": "green",
    "dead_lettered": "red",
    "parked": "orange",
}


# --- small builders ------------------------------------------------------------------------


def q(expr: str, legend: str = "__auto", *, instant: bool = False) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(expr).legend_format(legend)
    return target.instant() if instant else target.range()


def _targets(panel: object, targets: Iterable[prometheus.Dataquery]) -> None:
    for i, target in enumerate(targets):
        panel.with_target(target.ref_id(chr(ord("A") + i)))  # type: ignore[attr-defined]


def ts(
    title: str,
    description: str,
    unit: str,
    *targets: prometheus.Dataquery,
    width: int = 8,
    stacked: bool = False,
    colors: dict[str, str] | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .min(0)
        .span(width)
        .height(8)
        .fill_opacity(25 if stacked else 10)
        .line_width(1)
        .legend(
            cb.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
    for name, color in (colors or {}).items():
        panel = panel.override_by_name(
            name,
            [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})],
        )
    _targets(panel, targets)
    return panel


def _steps(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def st(
    title: str,
    description: str,
    unit: str,
    target: prometheus.Dataquery,
    *,
    steps: tuple[tuple[float | None, str], ...] = ((None, "green"),),
    mappings: list[dm.ValueMapping] | None = None,
    decimals: int | None = None,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(3)
        .height(4)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .thresholds(_steps(*steps))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if mappings:
        panel = panel.mappings(mappings)
    if decimals is not None:
        panel = panel.decimals(decimals)
    _targets(panel, [target])
    return panel


def flag_mapping(one: str, zero: str, *, good: int = 1) -> list[dm.ValueMapping]:
    """Text for a 0/1 gauge; `good` is the healthy value (green), the other is red."""
    colors = {good: "green", 1 - good: "red"}
    return [
        dm.ValueMap(
            options={
                "1": dm.ValueMappingResult(text=one, color=colors[1], index=0),
                "0": dm.ValueMappingResult(text=zero, color=colors[0], index=1),
            }
        )
    ]


def flag_timeline(
    title: str,
    description: str,
    expr: str,
    one: str,
    zero: str,
    *,
    good: int = 1,
    width: int = 12,
    legend: str = "{{pod}}",
) -> statetimeline.Panel:
    panel = (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .span(width)
        .height(6)
        .show_value(common.VisibilityMode.NEVER)
        .mappings(flag_mapping(one, zero, good=good))
        .thresholds(_steps((None, "red" if good else "green"), (1, "green" if good else "red")))
    )
    _targets(panel, [q(expr, legend)])
    return panel


def outage_timeline(width: int = 12) -> statetimeline.Panel:
    return flag_timeline(
        "Talon.One outage gate",
        "Per worker and application: closed while Talon.One fails the application's calls "
        "across many sessions; its records wait and its calls are probed with backoff (alert "
        "after 3m).",
        f"max by (pod, application) (bridge_api_outage{{{S}}})",
        "outage",
        "open",
        good=0,
        width=width,
        legend="{{pod}} {{application}}",
    )


def quantiles(
    metric: str, selector: str, by: str = "", label: str = ""
) -> list[prometheus.Dataquery]:
    group = f"{by}, le" if by else "le"
    prefix = f"{{{{{by}}}}} " if by else label
    return [
        q(
            f"histogram_quantile({p}, sum by ({group}) "
            f"(rate({metric}_bucket{{{selector}}}[{RI}])))",
            f"{prefix}p{int(p * 100)}",
        )
        for p in (0.5, 0.95, 0.99)
    ]


def query_var(name: str, label: str, query: str) -> db.QueryVariable:
    """A multi-value label_values() variable whose "All" is the regex `.*`."""
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def variables(*extra: db.QueryVariable) -> list[object]:
    return [
        db.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        query_var("namespace", "Namespace", "label_values(bridge_build_info, namespace)"),
        query_var("pod", "Pod", 'label_values(bridge_build_info{namespace=~"$namespace"}, pod)'),
        *extra,
        db.ConstantVariable(RUNBOOK_VAR).label("Runbook").value(RUNBOOK),
    ]


def base(uid: str, title: str, description: str) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .link(
            db.DashboardLink("Runbook")
            .type(dm.DashboardLinkType.LINK)
            .icon("doc")
            .tooltip("What each alert means and what to do")
            .url(f"${{{RUNBOOK_VAR}}}")
            .target_blank(True)
        )
        .link(
            db.DashboardLink("talon-bridge dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["talon-bridge"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


def finish(board: db.Dashboard, layout: list[tuple[str, Sequence[Any]]]) -> db.Dashboard:
    """Add rows and panels, numbering panel IDs in order so the JSON is stable."""
    next_id = 1
    for row_title, panels in layout:
        board = board.with_row(db.Row(row_title).id(next_id))
        next_id += 1
        for panel in panels:
            board = board.with_panel(panel.id(next_id))
            next_id += 1
    return board


# --- overview --------------------------------------------------------------------------------


def overview() -> db.Dashboard:
    topic = 'topic=~"$topic"'
    api_count = "bridge_api_request_duration_seconds_count"
    topic_var = query_var(
        "topic",
        "Input topic",
        'label_values(bridge_commands_consumed_total{namespace=~"$namespace"}, topic)',
    )
    board = base(
        "talon-bridge-overview",
        "talon-bridge / Overview",
        "RED for the Talon.One calls, USE for the worker: throughput, errors, latency, lag, "
        "saturation, Kafka client and readiness. Alerts and runbooks: docs/operations.md.",
    ).variables(variables(topic_var))  # type: ignore[arg-type]

    service = [
        st(
            "Ready workers",
            "Workers whose /readyz is 200 (assigned work can flow and the API key is accepted).",
            "none",
            q(f"sum(bridge_ready{{{S}}})"),
            steps=((None, "red"), (1, "green")),
        ),
        st(
            "Applied / s",
            "Commands applied to Talon.One and acknowledged on the effects topic.",
            "ops",
            q(f'sum(rate(bridge_commands_processed_total{{{S}, outcome="applied"}}[{RI}]))'),
        ),
        st(
            "API error ratio",
            "Share of Talon.One calls that did not return 2xx (alert: above 5% for 10m).",
            "percentunit",
            q(
                f'sum(rate({api_count}{{{S}, outcome!="2xx"}}[{RI}])) '
                f"/ sum(rate({api_count}{{{S}}}[{RI}]))"
            ),
            steps=((None, "green"), (0.01, "orange"), (0.05, "red")),
            decimals=2,
        ),
        st(
            "Lag (records)",
            "Records between the committed offsets and the ends of the input partitions.",
            "short",
            q(f"sum(bridge_consumer_lag_records{{{S}, {topic}}})"),
            steps=((None, "green"), (1000, "orange"), (100000, "red")),
        ),
        st(
            "Lag (seconds)",
            "Age of the oldest record read but not finished (alert: above 5m for 5m).",
            "s",
            q(f"max(bridge_oldest_unprocessed_age_seconds{{{S}}})"),
            steps=((None, "green"), (60, "orange"), (300, "red")),
        ),
        st(
            "Dead letters / min",
            "Commands written to the dead-letter topic; any is worth a look.",
            "cpm",
            q(f"sum(rate(bridge_dead_letters_total{{{S}}}[{RI}])) * 60"),
            steps=((None, "green"), (0.001, "red")),
        ),
        st(
            "Parked sessions",
            "Sessions held back behind a dead letter until it is replayed.",
            "none",
            q(f"sum(bridge_parked_sessions{{{S}}})"),
            steps=((None, "green"), (1, "orange")),
        ),
        st(
            "API keys",
            "Whether Talon.One accepts the API key of every application on every worker.",
            "none",
            q(f"min(bridge_api_auth_ok{{{S}}})"),
            steps=((None, "red"), (1, "green")),
            mappings=flag_mapping("accepted", "REJECTED"),
        ),
    ]

    throughput = [
        ts(
            "Consumed by topic",
            "Records read from each input topic.",
            "ops",
            q(
                f"sum by (topic) (rate(bridge_commands_consumed_total{{{S}, {topic}}}[{RI}]))",
                "{{topic}}",
            ),
        ),
        ts(
            "Finished by outcome",
            "Records finished: applied, dead-lettered, or parked behind a dead letter.",
            "ops",
            q(
                f"sum by (outcome) (rate(bridge_commands_processed_total{{{S}}}[{RI}]))",
                "{{outcome}}",
            ),
            stacked=True,
            colors=OUTCOME_COLORS,
        ),
        ts(
            "Applied by command type",
            "Applied commands per Talon.One operation.",
            "ops",
            q(
                "sum by (command_type) (rate(bridge_commands_processed_total"
                f'{{{S}, outcome="applied"}}[{RI}]))',
                "{{command_type}}",
            ),
            stacked=True,
        ),
    ]

    errors = [
        ts(
            "API errors by class",
            "Failed Talon.One calls by class: 409, 429, 4xx, 5xx, auth, timeout, connection.",
            "reqps",
            q(
                f"sum by (error_class) (rate(bridge_api_errors_total{{{S}}}[{RI}]))",
                "{{error_class}}",
            ),
            stacked=True,
            colors=OUTCOME_COLORS,
        ),
        ts(
            "Retries by error class",
            "API calls scheduled again after a retryable failure.",
            "ops",
            q(
                f"sum by (error_class) (rate(bridge_commands_retried_total{{{S}}}[{RI}]))",
                "{{error_class}}",
            ),
            stacked=True,
        ),
        ts(
            "Dead letters by reason",
            "Commands written to the dead-letter topic, by reason and Talon.One application "
            "(none: routed to no application); value left out: too large to dead-letter "
            "whole, replay refuses them.",
            "ops",
            q(
                f"sum by (application, reason) (rate(bridge_dead_letters_total{{{S}}}[{RI}]))",
                "{{application}} {{reason}}",
            ),
            # A subset of the reasons' records, so the series are not stacked.
            q(
                f"sum(rate(bridge_dead_letters_value_omitted_total{{{S}}}[{RI}]))",
                "value left out",
            ),
        ),
        ts(
            "API calls by application",
            "Talon.One calls per second to each application, and the share of them without a "
            "2xx (one application failing shows here alone).",
            "reqps",
            q(
                f"sum by (application) (rate({api_count}{{{S}}}[{RI}]))",
                "{{application}}",
            ),
            q(
                f'sum by (application) (rate({api_count}{{{S}, outcome!="2xx"}}[{RI}]))',
                "{{application}} not 2xx",
            ),
            width=24,
        ),
    ]

    latency = [
        ts(
            "Talon.One API latency",
            "Request duration percentiles over all operations and outcomes.",
            "s",
            *quantiles("bridge_api_request_duration_seconds", S),
        ),
        ts(
            "End-to-end latency",
            "From the record's Kafka timestamp (and from the command's occurredAt) until its "
            "effects record is acknowledged.",
            "s",
            *quantiles("bridge_end_to_end_latency_seconds", S),
            q(
                "histogram_quantile(0.99, sum by (le) "
                f"(rate(bridge_occurred_to_acknowledged_seconds_bucket{{{S}}}[{RI}])))",
                "occurredAt p99",
            ),
        ),
        ts(
            "Time since last finished record",
            "Seconds since each worker last finished a record (alert with lag: over 5m).",
            "s",
            q(f"time() - max by (pod) (bridge_last_progress_timestamp_seconds{{{S}}})", "{{pod}}"),
        ),
    ]

    saturation = [
        ts(
            "Consumer lag (records)",
            "Records between the committed offset and the partition end, by topic.",
            "short",
            q(f"sum by (topic) (bridge_consumer_lag_records{{{S}, {topic}}})", "{{topic}}"),
        ),
        ts(
            "Lag by partition",
            "The same lag per partition, to spot a hot or stuck partition.",
            "short",
            q(
                f"max by (topic, partition) (bridge_consumer_lag_records{{{S}, {topic}}})",
                "{{topic}}[{{partition}}]",
            ),
        ),
        ts(
            "Oldest unprocessed record age",
            "Lag in seconds: age of the oldest record each worker has read but not finished.",
            "s",
            q(f"max by (pod) (bridge_oldest_unprocessed_age_seconds{{{S}}})", "{{pod}}"),
        ),
        ts(
            "In-flight API calls",
            "Commands with a Talon.One call running (bounded by BRIDGE_MAX_IN_FLIGHT).",
            "short",
            q(f"sum by (pod) (bridge_in_flight_commands{{{S}}})", "{{pod}}"),
        ),
        ts(
            "Buffered commands",
            "Commands read but not finished (partitions pause at BRIDGE_MAX_BUFFERED_RECORDS).",
            "short",
            q(f"sum by (pod) (bridge_buffered_commands{{{S}}})", "{{pod}}"),
        ),
        ts(
            "Active keys",
            "Sessions and profiles with queued commands.",
            "short",
            q(f"sum by (pod) (bridge_active_keys{{{S}}})", "{{pod}}"),
        ),
        ts(
            "Partitions: assigned and paused",
            "Assigned partitions, and those paused by backpressure.",
            "short",
            q(f"sum by (pod) (bridge_assigned_partitions{{{S}}})", "{{pod}} assigned"),
            q(f"sum by (pod) (bridge_paused_partitions{{{S}}})", "{{pod}} paused"),
        ),
        ts(
            "Parked sessions",
            "Sessions parked behind a dead letter, per worker.",
            "short",
            q(f"sum by (pod) (bridge_parked_sessions{{{S}}})", "{{pod}}"),
        ),
        ts(
            "Oldest parked session",
            "How long the longest-parked session has waited (alert: over 30m).",
            "s",
            q(f"max by (pod) (bridge_parked_oldest_age_seconds{{{S}}})", "{{pod}}"),
        ),
        ts(
            "Parked records waiting, rejected replay proofs",
            "Records of parked sessions not back from a replay yet; and records whose replay "
            "headers did not prove a place in a parked session's chain (forged, or of an "
            "earlier chain), diverted behind it.",
            "short",
            q(f"sum by (pod) (bridge_parked_records_waiting{{{S}}})", "{{pod}} waiting"),
            q(
                f"sum by (pod) (increase(bridge_replay_proofs_rejected_total{{{S}}}[{RI}]))",
                "{{pod}} rejected",
            ),
        ),
        ts(
            "Hot sessions and busy profiles",
            "Records dead-lettered because their session had BRIDGE_MAX_QUEUED_PER_SESSION "
            "commands queued (a hot session, parked in order); and commands that waited because "
            "their customer profile had BRIDGE_MAX_IN_FLIGHT_PER_PROFILE calls running.",
            "short",
            q(
                f"sum by (pod) (increase(bridge_session_quota_exceeded_total{{{S}}}[{RI}]))",
                "{{pod}} over session quota",
            ),
            q(
                f"sum by (pod) (increase(bridge_profile_quota_waits_total{{{S}}}[{RI}]))",
                "{{pod}} profile waits",
            ),
        ),
    ]

    kafka = [
        ts(
            "Rebalance events and input log resets",
            "Partitions assigned, revoked or lost per interval; and input partitions whose "
            "positions were dropped because their topic was deleted or their log restarted "
            "below what was read (alert: any).",
            "short",
            q(
                f"sum by (event) (increase(bridge_rebalances_total{{{S}}}[{RI}]))",
                "{{event}}",
            ),
            q(
                f"sum by (topic) (increase(bridge_input_log_resets_total{{{S}}}[{RI}]))",
                "log reset {{topic}}",
            ),
        ),
        ts(
            "Offset commits / s",
            "Offset commits issued (every BRIDGE_COMMIT_INTERVAL while partitions are assigned).",
            "ops",
            q(f"sum by (pod) (rate(bridge_offset_commits_total{{{S}}}[{RI}]))", "{{pod}}"),
        ),
        ts(
            "Records per input batch",
            "Input records the consumer thread hands to the event loop at a time. Near 1, "
            "every command pays its own thread wake-ups: a consumer fetch wait "
            "(BRIDGE_KAFKA_CONSUMER_CONFIG) makes batches and costs less CPU per command.",
            "short",
            q(
                f"sum by (pod) (rate(bridge_commands_consumed_total{{{S}}}[{RI}]))"
                f" / sum by (pod) (rate(bridge_consumer_batches_total{{{S}}}[{RI}]))",
                "{{pod}}",
            ),
        ),
        ts(
            "Commits refused and records processed again",
            "Offset commits and exactly-once transactions Kafka refused, by error (usually "
            "the group changing; they are retried); and finished records a partition's next "
            "owner processes again because their offsets were not committed (alert: any).",
            "short",
            q(
                f"sum by (cause) (increase(bridge_offset_commit_failures_total{{{S}}}[{RI}]))",
                "commit refused {{cause}}",
            ),
            q(
                f"sum by (cause) (increase(bridge_transactions_aborted_total{{{S}}}[{RI}]))",
                "transaction aborted {{cause}}",
            ),
            q(
                f"sum by (pod) (increase(bridge_records_reprocessed_total{{{S}}}[{RI}]))",
                "processed again {{pod}}",
            ),
        ),
        ts(
            "Revoke drain duration",
            "Time to finish in-flight calls of revoked partitions (bounded by "
            "BRIDGE_DRAIN_TIMEOUT).",
            "s",
            *quantiles("bridge_revoke_drain_duration_seconds", S),
        ),
        ts(
            "Effects published by type",
            "Talon.One effects written to the effects topic.",
            "ops",
            q(
                f"sum by (effect_type) (rate(bridge_effects_published_total{{{S}}}[{RI}]))",
                "{{effect_type}}",
            ),
            stacked=True,
        ),
        ts(
            "Producer delivery failures",
            "Effects or dead-letter records Kafka did not accept; they are sent again.",
            "ops",
            q(
                f"sum by (kind) (rate(bridge_producer_delivery_failures_total{{{S}}}[{RI}]))",
                "{{kind}}",
            ),
        ),
        ts(
            "Idempotent replays",
            "Responses Talon.One replayed for a repeated Idempotency-Key (a retry after a "
            "lost response).",
            "ops",
            q(f"sum(rate(bridge_idempotent_replays_total{{{S}}}[{RI}]))", "replays"),
        ),
        ts(
            "Schema Registry failures",
            "Writer-schema lookups that failed (no answer in time, connection, 5xx); their "
            "records wait with backoff, holding their sessions.",
            "ops",
            q(f"sum(rate(bridge_schema_registry_failures_total{{{S}}}[{RI}]))", "failures"),
        ),
        ts(
            "Trace spans exported",
            "With tracing on: spans the OTLP collector took, and those it did not (collector "
            "away or refusing; the commands are not affected, their spans are lost).",
            "ops",
            q(
                f"sum by (result) (rate(bridge_trace_spans_total{{{S}}}[{RI}]))",
                "{{result}}",
            ),
        ),
    ]

    versions = (
        table.Panel()
        .title("Versions")
        .description("Running worker versions, and the event loop each runs on.")
        .datasource(DS)
        .span(6)
        .height(6)
    )
    _targets(
        versions, [q(f"count by (version, event_loop) (bridge_build_info{{{S}}})", instant=True)]
    )
    workers = [
        flag_timeline(
            "Readiness",
            "/readyz per worker: ready, or not (consumer not running, fatal error, API key "
            "rejected, an input topic missing).",
            f"max by (pod) (bridge_ready{{{S}}})",
            "ready",
            "not ready",
            width=6,
        ),
        flag_timeline(
            "Missing input topics",
            "Per input topic: missing while the cluster does not have it, so nothing under "
            "that name is read (alert after 2m).",
            f"max by (topic) (bridge_input_topic_missing{{{S}}})",
            "missing",
            "exists",
            good=0,
            width=6,
            legend="{{topic}}",
        ),
        outage_timeline(width=6),
        versions,
        ts(
            "CPU per pod",
            "CPU seconds per second of every process in the pod (with BRIDGE_WORKERS, the "
            "supervisor's included), against the pod's request and limit.",
            "short",
            q(f"sum by (pod) (rate(process_cpu_seconds_total{{{S}}}[{RI}]))", "{{pod}}"),
        ),
        ts(
            "CPU per command",
            "The pod's CPU time over the commands it finished. It rises as the input slows, "
            "since each command pays its own wake-ups; with Records per input batch near 1, a "
            "consumer fetch wait (BRIDGE_KAFKA_CONSUMER_CONFIG) lowers it.",
            "ms",
            q(
                f"1000 * sum by (pod) (rate(process_cpu_seconds_total{{{S}}}[{RI}]))"
                f" / sum by (pod) (rate(bridge_commands_processed_total{{{S}}}[{RI}]))",
                "{{pod}}",
            ),
        ),
        ts(
            "Memory per pod",
            "Resident memory of every process in the pod, against the pod's limit.",
            "bytes",
            q(f"sum by (pod) (process_resident_memory_bytes{{{S}}})", "{{pod}}"),
        ),
    ]

    return finish(
        board,
        [
            ("Service level", service),
            ("Throughput", throughput),
            ("Errors", errors),
            ("Latency", latency),
            ("Saturation and lag", saturation),
            ("Kafka client", kafka),
            ("Workers", workers),
        ],
    )


# --- Talon.One API ----------------------------------------------------------------------------


def talon_api() -> db.Dashboard:
    app = f'{S}, application=~"$application"'
    op = f'{app}, operation=~"$operation"'
    count = "bridge_api_request_duration_seconds_count"
    operation_var = query_var(
        "operation", "Operation", f'label_values({count}{{namespace=~"$namespace"}}, operation)'
    )
    application_var = query_var(
        "application",
        "Application",
        f'label_values({count}{{namespace=~"$namespace"}}, application)',
    )
    board = base(
        "talon-bridge-talon-api",
        "talon-bridge / Talon.One API",
        "The Integration API as the bridge sees it, per Talon.One application and operation: "
        "rate, outcome mix, latency, retries, idempotent replays and each API key's status.",
    ).variables(variables(application_var, operation_var))  # type: ignore[arg-type]

    summary = [
        st(
            "Requests / s",
            "Talon.One calls of the selected operations.",
            "reqps",
            q(f"sum(rate({count}{{{op}}}[{RI}]))"),
        ),
        st(
            "Error ratio",
            "Share of calls without a 2xx.",
            "percentunit",
            q(
                f'sum(rate({count}{{{op}, outcome!="2xx"}}[{RI}])) '
                f"/ sum(rate({count}{{{op}}}[{RI}]))"
            ),
            steps=((None, "green"), (0.01, "orange"), (0.05, "red")),
            decimals=2,
        ),
        st(
            "Rate limited",
            "Share of calls answered 429 (Retry-After is honoured).",
            "percentunit",
            q(
                f'sum(rate({count}{{{op}, outcome="429"}}[{RI}])) '
                f"/ sum(rate({count}{{{op}}}[{RI}]))"
            ),
            steps=((None, "green"), (0.01, "orange"), (0.05, "red")),
            decimals=2,
        ),
        st(
            "p99 latency",
            "99th percentile of request duration.",
            "s",
            q(
                "histogram_quantile(0.99, sum by (le) "
                f"(rate(bridge_api_request_duration_seconds_bucket{{{op}}}[{RI}])))"
            ),
            steps=((None, "green"), (1, "orange"), (5, "red")),
        ),
        st(
            "Retries / s",
            "Calls scheduled again after a retryable failure.",
            "ops",
            q(f'sum(rate(bridge_commands_retried_total{{{S}, command_type=~"$operation"}}[{RI}]))'),
        ),
        st(
            "Idempotent replays / s",
            "Responses replayed by Talon.One for a repeated Idempotency-Key.",
            "ops",
            q(f"sum(rate(bridge_idempotent_replays_total{{{S}}}[{RI}]))"),
        ),
        st(
            "API key",
            "Whether Talon.One accepts the selected applications' API keys on every worker.",
            "none",
            q(f"min(bridge_api_auth_ok{{{app}}})"),
            steps=((None, "red"), (1, "green")),
            mappings=flag_mapping("accepted", "REJECTED"),
        ),
        st(
            "Outage gate",
            "Whether any worker holds a selected application's records because Talon.One "
            "fails its calls across sessions.",
            "none",
            q(f"max(bridge_api_outage{{{app}}})"),
            steps=((None, "green"), (1, "red")),
            mappings=flag_mapping("CLOSED", "open", good=0),
        ),
    ]

    traffic = [
        ts(
            "Requests by application",
            "Calls per second to each Talon.One application.",
            "reqps",
            q(f"sum by (application) (rate({count}{{{op}}}[{RI}]))", "{{application}}"),
            width=12,
        ),
        ts(
            "Error ratio by application",
            "Share of each application's calls without a 2xx: one misbehaving application "
            "shows here alone, and pauses only its own records.",
            "percentunit",
            q(
                f'sum by (application) (rate({count}{{{op}, outcome!="2xx"}}[{RI}])) '
                f"/ sum by (application) (rate({count}{{{op}}}[{RI}]))",
                "{{application}}",
            ),
            width=12,
        ),
        ts(
            "Requests by operation",
            "Calls per second of each Integration API operation.",
            "reqps",
            q(f"sum by (operation) (rate({count}{{{op}}}[{RI}]))", "{{operation}}"),
            width=12,
        ),
        ts(
            "Outcome mix",
            "Calls by outcome: 2xx, 409, 429, 4xx, 5xx, auth, timeout, connection.",
            "reqps",
            q(f"sum by (outcome) (rate({count}{{{op}}}[{RI}]))", "{{outcome}}"),
            width=12,
            stacked=True,
            colors=OUTCOME_COLORS,
        ),
        ts(
            "Error ratio by operation",
            "Share of each operation's calls without a 2xx.",
            "percentunit",
            q(
                f'sum by (operation) (rate({count}{{{op}, outcome!="2xx"}}[{RI}])) '
                f"/ sum by (operation) (rate({count}{{{op}}}[{RI}]))",
                "{{operation}}",
            ),
            width=12,
        ),
        ts(
            "Outcomes by operation",
            "Non-2xx calls per operation and outcome.",
            "reqps",
            q(
                f'sum by (operation, outcome) (rate({count}{{{op}, outcome!="2xx"}}[{RI}]))',
                "{{operation}} {{outcome}}",
            ),
            width=12,
        ),
        ts(
            "Connections",
            "New connections to Talon.One, and reused ones it closed before answering. "
            "Near 0 once the pool is warm; a steady rate means keep-alive is cut short "
            "(see the runbook's connection churn). Not counted by the reqwest engine.",
            "ops",
            q(
                f"sum by (application) (rate(bridge_api_connections_opened_total{{{app}}}[{RI}]))",
                "{{application}} opened",
            ),
            q(
                f"sum by (application) (rate(bridge_api_stale_connections_total{{{app}}}[{RI}]))",
                "{{application}} stale",
            ),
            width=24,
        ),
    ]

    heat = (
        heatmap.Panel()
        .title("Latency distribution")
        .description("Request durations of the selected operations, per bucket.")
        .datasource(DS)
        .span(12)
        .height(8)
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .color(heatmap.HeatmapColorOptions().mode(hm.HeatmapColorMode.SCHEME).scheme("Oranges"))
    )
    _targets(
        heat,
        [
            q(
                f"sum by (le) (increase(bridge_api_request_duration_seconds_bucket{{{op}}}[{RI}]))",
                "{{le}}",
            ).format(pm.PromQueryFormat.HEATMAP)
        ],
    )
    latency = [
        ts(
            "Latency by operation",
            "p50, p95 and p99 of each operation.",
            "s",
            *quantiles("bridge_api_request_duration_seconds", op, by="operation"),
            width=12,
        ),
        ts(
            "p99 latency by outcome",
            "Slow errors (timeouts) and fast ones (429) side by side with successes.",
            "s",
            q(
                "histogram_quantile(0.99, sum by (outcome, le) "
                f"(rate(bridge_api_request_duration_seconds_bucket{{{op}}}[{RI}])))",
                "{{outcome}}",
            ),
            width=12,
            colors=OUTCOME_COLORS,
        ),
        heat,
        ts(
            "Mean latency by operation",
            "Average request duration.",
            "s",
            q(
                "sum by (operation) "
                f"(rate(bridge_api_request_duration_seconds_sum{{{op}}}[{RI}])) "
                f"/ sum by (operation) (rate({count}{{{op}}}[{RI}]))",
                "{{operation}}",
            ),
            width=12,
        ),
    ]

    retries = [
        ts(
            "Errors by class and operation",
            "Failed calls by error class.",
            "reqps",
            q(
                f"sum by (operation, error_class) (rate(bridge_api_errors_total{{{op}}}[{RI}]))",
                "{{operation}} {{error_class}}",
            ),
            width=12,
        ),
        ts(
            "Retries by error class",
            "Calls scheduled again, by the class of the failure that caused it.",
            "ops",
            q(
                "sum by (error_class) (rate(bridge_commands_retried_total"
                f'{{{S}, command_type=~"$operation"}}[{RI}]))',
                "{{error_class}}",
            ),
            width=12,
            stacked=True,
        ),
        ts(
            "Retries by command type",
            "Calls scheduled again, per command type.",
            "ops",
            q(
                "sum by (command_type) (rate(bridge_commands_retried_total"
                f'{{{S}, command_type=~"$operation"}}[{RI}]))',
                "{{command_type}}",
            ),
            width=12,
        ),
        ts(
            "Idempotent replays",
            "Talon.One answered a repeated Idempotency-Key with the stored response: a retry "
            "after a lost response did not apply the command twice.",
            "ops",
            q(f"sum by (pod) (rate(bridge_idempotent_replays_total{{{S}}}[{RI}]))", "{{pod}}"),
            width=12,
        ),
        ts(
            "Deduplicated events",
            'trackEventV3 events Talon.One had registered already (409 "already exists"): a '
            "command delivered again after a crash or a replay; its stored effects were "
            "published, nothing was applied twice.",
            "ops",
            q(f"sum by (pod) (rate(bridge_events_deduplicated_total{{{S}}}[{RI}]))", "{{pod}}"),
            width=12,
        ),
        flag_timeline(
            "API key status",
            "Per worker and application: accepted, or rejected with 401/403 (the "
            "application's records wait, probing).",
            f"min by (pod, application) (bridge_api_auth_ok{{{app}}})",
            "accepted",
            "rejected",
            legend="{{pod}} {{application}}",
        ),
        outage_timeline(),
        ts(
            "Auth failures",
            "Calls answered 401/403 per worker and application.",
            "reqps",
            q(
                "sum by (pod, application) "
                f'(rate(bridge_api_errors_total{{{app}, error_class="auth"}}[{RI}]))',
                "{{pod}} {{application}}",
            ),
            width=12,
        ),
    ]

    rate_limit = [
        ts(
            "429s by operation",
            "Calls Talon.One answered 429 (rate limited), per operation. A few while the pacer "
            "finds the limit are expected; a steady stream means it is not keeping up.",
            "reqps",
            q(
                f'sum by (operation) (rate({count}{{{op}, outcome="429"}}[{RI}]))',
                "{{operation}}",
            ),
            width=8,
        ),
        ts(
            "Pacing limit",
            "Per worker and application: calls per second its pacer allows, learnt from 429s "
            "(0: not limiting), beside the calls actually sent.",
            "reqps",
            q(
                f"max by (pod, application) (bridge_api_pacing_limit_per_second{{{app}}})",
                "{{pod}} {{application}} limit",
            ),
            q(
                f"sum by (pod, application) (rate({count}{{{app}}}[{RI}]))",
                "{{pod}} {{application}} sent",
            ),
            width=8,
        ),
        ts(
            "API gate and Retry-After",
            "Per worker, application and reason (outage, auth, throttled): 1 while the "
            "application's gate holds its calls; and the seconds left of its latest "
            "Retry-After, before which it does not reopen.",
            "short",
            q(
                f"max by (pod, application, reason) (bridge_api_gate_closed{{{app}}})",
                "{{pod}} {{application}} gate {{reason}}",
            ),
            q(
                f"max by (pod, application) (bridge_api_retry_after_seconds{{{app}}})",
                "{{pod}} {{application}} Retry-After s",
            ),
            width=8,
        ),
        ts(
            "Budget share",
            "BRIDGE_TALON_MAX_RPS, the group's budget (0: no cap), and each worker's share of "
            "it (budget x owned / total input partitions; the shares add up to the budget "
            "once every partition has an owner), beside the calls the group sends.",
            "reqps",
            q(f"max by (pod) (bridge_api_budget_share_per_second{{{S}}})", "{{pod}} share"),
            q(f"sum(bridge_api_budget_share_per_second{{{S}}})", "shares, summed"),
            q(f"max(bridge_api_group_budget_per_second{{{S}}})", "group budget"),
            q(f"sum(rate({count}{{{S}}}[{RI}]))", "group sent"),
            width=12,
        ),
        ts(
            "In-flight limit",
            "Per worker: Talon.One calls allowed at once (BRIDGE_MAX_IN_FLIGHT, or less while "
            "the adaptive limit holds it down on 429s, 503s, timeouts or rising latency), the "
            "calls running, and the limit's cuts.",
            "short",
            q(f"max by (pod) (bridge_in_flight_limit{{{S}}})", "{{pod}} limit"),
            q(f"max by (pod) (bridge_in_flight_commands{{{S}}})", "{{pod}} in flight"),
            q(
                "sum by (pod) (increase(bridge_in_flight_limit_changes_total"
                f'{{{S}, direction="down"}}[{RI}]))',
                "{{pod}} cuts",
            ),
            width=12,
        ),
    ]

    return finish(
        board,
        [
            ("Summary", summary),
            ("Traffic and outcomes", traffic),
            ("Rate limit", rate_limit),
            ("Latency", latency),
            ("Errors, retries and authentication", retries),
        ],
    )


DASHBOARDS = {
    "talon-bridge-overview": overview,
    "talon-bridge-talon-api": talon_api,
}


def render() -> dict[str, str]:
    """{file name: JSON text} of every dashboard."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {
        f"{name}.json": encoder.encode(make().build()) + "\n" for name, make in DASHBOARDS.items()
    }


def write(check: bool = False) -> list[Path]:
    """Write every dashboard to each output folder; with `check`, only list stale files."""
    stale: list[Path] = []
    for name, text in render().items():
        for folder in OUT_DIRS:
            path = folder / name
            if path.exists() and path.read_text() == text:
                continue
            stale.append(path)
            if not check:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args()
    stale = write(check=args.check)
    for path in stale:
        verb = "out of date" if args.check else "wrote"
        print(f"{verb}: {path.relative_to(ROOT)}", file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
