"""`talon-bridge doctor`: check a deployment's setup before (or while) the worker runs.

It reads the same settings as `run` and tries, without writing anything, what the worker
will do: reach the brokers; find each topic with a sane shape (the parking topic compacted,
the input and dead-letter topics not); hold the ACLs the worker needs on its topics and its
group; read the group's committed offsets; decode the newest input records; find the Schema
Registry (confluent encoding);
and have Talon.One accept the API key on a ``dry=true`` updateCustomerSessionV2, which
Talon.One does not persist.

ACLs are read as the broker's own answer to "what may I do with this topic / group"
(KIP-430 authorized operations), so super users, prefixed and wildcard ACLs and DENY rules
count exactly as they will for the worker. Nothing is produced to check WRITE: a probe
record, even an aborted transactional one, is seen by read-uncommitted consumers. What
cannot be checked this way (the transactional ID of exactly-once) is reported as such.

Prints one row per check and exits 0 when nothing failed, 1 otherwise (warnings pass).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

# The package re-exports these without naming them in __all__, which mypy --strict rejects.
from confluent_kafka.admin._acl import AclOperation
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType

from bridge.avro.codec import Codec, RegistryError
from bridge.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    DecodeError,
    FatalApiError,
    KafkaUnreachableError,
)
from bridge.kafka.clients import LIBRDKAFKA_LOGGER, Cluster, new_client
from bridge.settings import ENV_PREFIX, Settings, load, warn_unknown

__all__ = ["HELP", "Check", "Status", "configure", "diagnose", "run"]

HELP = "check brokers, topics, ACLs, registry and Talon.One credentials without writing"

Status = Literal["ok", "warn", "fail", "skipped"]

# The session ID of the dry call; Talon.One stores nothing for a dry request.
DRY_SESSION_ID = "talon-bridge-doctor"

# Coordinator errors that go away once the group coordinator has loaded.
_COORDINATOR_BUSY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
_TOPICS_FIX = "create it: `talon-bridge topics create` (or the chart's topics Job)"


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the report: what was checked, how it went, and what to do about it."""

    area: str
    subject: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class _Topic:
    role: str
    name: str
    # Operations the worker (and replay, for the DLQ) performs on it.
    needs: tuple[AclOperation, ...]
    optional: tuple[AclOperation, ...] = ()
    optional_why: str = ""


def _topics(settings: Settings) -> list[_Topic]:
    read, write, describe = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE
    topics = [_Topic("input", t, (read, describe)) for t in settings.input_topics]
    topics.append(_Topic("output", settings.output_topic, (write, describe)))
    topics.append(
        _Topic("dlq", settings.dlq_topic, (write, describe), (read,), "`talon-bridge replay`")
    )
    topics.append(_Topic("parking", settings.parking_topic, (read, write, describe)))
    return topics


def diagnose(
    settings: Settings, *, timeout: float = 10.0, worker_url: str | None = None
) -> list[Check]:
    """Run every check against the deployment `settings` describe; returns the rows.

    With `worker_url` (the metrics address of running workers) their health is checked too.
    """
    rows = _kafka_checks(settings, timeout)
    rows += _registry_checks(settings)
    rows.append(_talon_check(settings))
    if worker_url:
        rows.append(_worker_check(worker_url.rstrip("/"), timeout))
    return rows


# --- Kafka ------------------------------------------------------------------------------------


def _kafka_checks(settings: Settings, timeout: float) -> list[Check]:
    try:
        cluster = Cluster(settings.librdkafka_common(), timeout)
    except KafkaUnreachableError as exc:
        return [
            _unreachable(settings, timeout, exc),
            Check("kafka", "topics, ACLs, group", "skipped", "not checked: no broker"),
        ]
    admin, metadata = cluster.admin, cluster.metadata
    try:
        rows = [
            Check(
                "kafka",
                settings.kafka_bootstrap_servers,
                "ok",
                f"{len(metadata.brokers)} broker(s), cluster {metadata.cluster_id}",
            )
        ]
        topics = _topics(settings)
        found = _describe_topics(admin, topics, timeout)
        configs = _describe_configs(admin, [t.name for t in topics if found[t.name][0]], timeout)
        for t in topics:
            described, error = found[t.name]
            rows.append(_topic_row(t, described, error, configs.get(t.name)))
            if described is not None:
                rows.append(_acl_row(f"topic {t.name}", described.authorized_operations, t))
        rows += _group_checks(admin, settings, topics, found, timeout)
        rows += _newest_records(settings, topics, found, timeout)
        if settings.exactly_once:
            # Without the setting each worker uses "<group>-<random>", see worker.py.
            tid = settings.transactional_id or f"{settings.group_id}-* (prefixed)"
            rows.append(
                Check(
                    "acl",
                    f"transactional id {tid}",
                    "skipped",
                    "not verified (needs WRITE, DESCRIBE): checking it means starting a "
                    "transaction, which would fence a running worker with the same ID",
                )
            )
        return rows
    finally:
        admin.poll(0)  # hands librdkafka's queued lines to the logger


def _unreachable(settings: Settings, timeout: float, exc: KafkaUnreachableError) -> Check:
    subject = settings.kafka_bootstrap_servers
    if exc.credentials_refused:
        return Check(
            "kafka",
            subject,
            "fail",
            f"the brokers refused the credentials: {exc.reason}",
            f"check {ENV_PREFIX}KAFKA_SASL_USERNAME, {ENV_PREFIX}KAFKA_SASL_PASSWORD and "
            f"sasl.mechanism in {ENV_PREFIX}KAFKA_CONFIG",
        )
    return Check(
        "kafka",
        subject,
        "fail",
        f"no broker answered within {timeout:g}s: {exc.reason}",
        f"check {ENV_PREFIX}KAFKA_BOOTSTRAP_SERVERS, the network path and the "
        f"security settings in {ENV_PREFIX}KAFKA_CONFIG",
    )


def _describe_topics(
    admin: AdminClient, topics: list[_Topic], timeout: float
) -> dict[str, tuple[Any, KafkaError | None]]:
    names = list(dict.fromkeys(t.name for t in topics))
    futures = admin.describe_topics(
        TopicCollection(names), include_authorized_operations=True, request_timeout=timeout
    )
    out: dict[str, tuple[Any, KafkaError | None]] = {}
    for name, future in futures.items():
        try:
            out[name] = (future.result(timeout), None)
        except KafkaException as exc:
            out[name] = (None, exc.args[0])
    return out


def _describe_configs(
    admin: AdminClient, names: list[str], timeout: float
) -> dict[str, dict[str, str] | str]:
    """Each topic's configs, or the reason they could not be read."""
    if not names:
        return {}
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, n) for n in names], request_timeout=timeout
    )
    out: dict[str, dict[str, str] | str] = {}
    for resource, future in futures.items():
        try:
            entries = future.result(timeout)
            out[resource.name] = {k: str(v.value) for k, v in entries.items()}
        except KafkaException as exc:
            out[resource.name] = _kafka_text(exc)
    return out


def _topic_row(
    t: _Topic, described: Any, error: KafkaError | None, config: dict[str, str] | str | None
) -> Check:
    subject = f"{t.role} {t.name}"
    if described is None:
        assert error is not None  # noqa: S101 - one of the two is always set
        if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            return Check(
                "topic", subject, "fail", "not allowed to describe it", "grant DESCRIBE on it"
            )
        if error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):  # noqa: SLF001
            return Check("topic", subject, "fail", "does not exist", _TOPICS_FIX)
        return Check("topic", subject, "fail", f"cannot describe it: {error.str()}")
    partitions = described.partitions
    replicas = min((len(p.replicas) for p in partitions), default=0)
    shape = f"{len(partitions)} partition(s), replication {replicas}"
    if isinstance(config, str) or config is None:
        why = config or "no answer"
        return Check(
            "topic",
            subject,
            "warn",
            f"{shape}; cleanup.policy not verified ({why})",
            "grant DESCRIBE_CONFIGS on it so the policy can be checked",
        )
    policy = config.get("cleanup.policy", "delete")
    compacted = "compact" in {p.strip() for p in policy.split(",")}
    shape += f", cleanup.policy={policy}"
    alter = f"kafka-configs --alter --entity-type topics --entity-name {t.name} --add-config"
    if t.role == "parking" and policy != "compact":
        # Without compaction (or with compact,delete) retention drops parked sessions and
        # the worker would forget them after a restart.
        return Check(
            "topic",
            subject,
            "fail",
            f"{shape}: must be compact, or parked sessions are lost to retention",
            f"{alter} cleanup.policy=compact",
        )
    if t.role in ("input", "dlq") and compacted:
        # Records are keyed by session: compaction would keep only a session's last command.
        return Check(
            "topic",
            subject,
            "fail",
            f"{shape}: compaction keeps only the last record of each session",
            f"{alter} cleanup.policy=delete",
        )
    if t.role == "output" and compacted:
        return Check(
            "topic",
            subject,
            "warn",
            f"{shape}: consumers see only the last effects of each session",
        )
    return Check("topic", subject, "ok", shape)


def _missing(granted: Iterable[AclOperation], wanted: Sequence[AclOperation]) -> list[str]:
    have = set(granted)
    if AclOperation.ALL in have:
        return []
    return [op.name for op in wanted if op not in have]


def _acl_row(subject: str, granted: list[AclOperation] | None, t: _Topic) -> Check:
    return acl_check(subject, granted, t.needs, t.optional, t.optional_why)


def acl_check(
    subject: str,
    granted: list[AclOperation] | None,
    needs: Sequence[AclOperation],
    optional: Sequence[AclOperation] = (),
    optional_why: str = "",
) -> Check:
    """The row for one resource, from the operations the broker says are allowed."""
    wanted = ", ".join(op.name for op in needs)
    if granted is None:
        return Check(
            "acl",
            subject,
            "skipped",
            f"not verified: the broker did not report allowed operations (needs {wanted})",
        )
    missing = _missing(granted, needs)
    if missing:
        return Check(
            "acl",
            subject,
            "fail",
            f"missing {', '.join(missing)} (needs {wanted})",
            f"grant {', '.join(missing)} on {subject} to the bridge's principal",
        )
    extra = _missing(granted, optional)
    if extra:
        return Check(
            "acl",
            subject,
            "warn",
            f"{wanted} allowed; {', '.join(extra)} missing, needed by {optional_why}",
        )
    return Check("acl", subject, "ok", f"{wanted} allowed")


def _group_checks(
    admin: AdminClient,
    settings: Settings,
    topics: list[_Topic],
    found: dict[str, tuple[Any, KafkaError | None]],
    timeout: float,
) -> list[Check]:
    group = settings.group_id
    subject = f"group {group}"
    needs = (AclOperation.READ, AclOperation.DESCRIBE)
    try:
        described = _retry_coordinator(
            lambda: admin.describe_consumer_groups(
                [group], include_authorized_operations=True, request_timeout=timeout
            )[group].result(timeout),
            timeout,
        )
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
            return [
                Check("acl", subject, "fail", "not allowed to describe it", "grant READ, DESCRIBE")
            ]
        return [Check("acl", subject, "fail", f"cannot describe it: {_kafka_text(exc)}")]
    members = len(described.members or [])
    state = described.state.name.lower() if described.state is not None else "unknown"
    if state == "dead":
        state = "not created yet"
    rows = [acl_check(subject, described.authorized_operations, needs)]
    partitions = [
        TopicPartition(t.name, p)
        for t in topics
        if t.role == "input" and found[t.name][0] is not None
        for p in sorted(x.id for x in found[t.name][0].partitions)
    ]
    if not partitions:
        return rows
    try:
        listed = _retry_coordinator(
            lambda: admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, partitions)], request_timeout=timeout
            )[group].result(timeout),
            timeout,
        )
    except KafkaException as exc:
        rows.append(
            Check(
                "group",
                subject,
                "fail",
                f"cannot read its committed offsets: {_kafka_text(exc)}",
                "grant DESCRIBE on the group and the input topics",
            )
        )
        return rows
    committed = [tp for tp in listed.topic_partitions if tp.offset >= 0]
    detail = (
        f"{state}, {members} member(s); committed offsets on {len(committed)} of "
        f"{len(partitions)} input partition(s)"
    )
    if not committed:
        detail += " (a new group starts at the oldest records)"
    rows.append(Check("group", subject, "ok", detail))
    return rows


def _newest_records(
    settings: Settings,
    topics: list[_Topic],
    found: dict[str, tuple[Any, KafkaError | None]],
    timeout: float,
) -> list[Check]:
    """Decode the newest record of each input partition, as the worker would.

    Catches producers writing another encoding (JSON, another schema) before the worker
    dead-letters their records. Reads by assignment: no group, nothing committed.
    """
    inputs = [t for t in topics if t.role == "input" and found[t.name][0] is not None]
    if not inputs:
        return []
    consumer = new_client(
        Consumer,
        {
            **settings.librdkafka_common(),
            "group.id": "talon-bridge-doctor",  # required by the client; never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "logger": LIBRDKAFKA_LOGGER,
        },
    )
    codec = Codec.from_settings(settings)
    rows: list[Check] = []
    try:
        for t in inputs:
            wanted: dict[int, int] = {}
            for p in sorted(x.id for x in found[t.name][0].partitions):
                try:
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(t.name, p), timeout=timeout
                    )
                except KafkaException as exc:
                    rows.append(Check("records", f"input {t.name}", "skipped", _kafka_text(exc)))
                    break
                if high > low:
                    wanted[p] = high - 1
            else:
                rows.append(_decode_newest(consumer, codec, t.name, wanted, timeout))
    finally:
        consumer.close()
        codec.close()
    return rows


def _decode_newest(
    consumer: Consumer, codec: Codec, topic: str, wanted: dict[int, int], timeout: float
) -> Check:
    subject = f"input {topic}"
    if not wanted:
        return Check("records", subject, "ok", "no records yet")
    consumer.assign([TopicPartition(topic, p, o) for p, o in wanted.items()])
    problems: list[str] = []
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    # Compaction or retention may have removed the offset asked for: stop at the deadline.
    while len(seen) < len(wanted) and time.monotonic() < deadline:
        for msg in consumer.consume(len(wanted), 0.5):
            partition = msg.partition()
            if msg.error() is not None or partition is None or partition in seen:
                continue
            seen.add(partition)
            try:
                codec.decode_command(msg.value())
            except DecodeError as exc:  # its message never quotes the record
                problems.append(f"partition {partition} offset {msg.offset()}: {exc}")
            except RegistryError as exc:
                problems.append(f"partition {partition}: registry: {exc}")
    consumer.unassign()
    if problems:
        return Check(
            "records",
            subject,
            "warn",
            f"newest record not readable: {'; '.join(problems)}",
            "the worker dead-letters records it cannot decode: check the producers' encoding "
            "against docs/producers.md",
        )
    return Check("records", subject, "ok", f"newest record of {len(seen)} partition(s) decodes")


def _retry_coordinator(call: Callable[[], Any], timeout: float) -> Any:
    """`call()`, again while the group coordinator is still being found or loaded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            if exc.args[0].code() not in _COORDINATOR_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(0.2)  # backoff before asking the coordinator again


def _kafka_text(exc: KafkaException) -> str:
    error = exc.args[0]
    return str(error.str()) if isinstance(error, KafkaError) else str(exc)


# --- Schema Registry --------------------------------------------------------------------------


def _registry_checks(settings: Settings) -> list[Check]:
    from bridge.avro.schemas import COMMAND, EFFECTS_EMITTED

    if not settings.schema_registry_url:
        detail = "not checked: single-object encoding needs no registry"
        return [Check("registry", "Schema Registry", "skipped", detail)]
    codec = Codec.from_settings(settings)
    plan = [(COMMAND, t, "producers register it") for t in settings.input_topics]
    plan.append((EFFECTS_EMITTED, settings.output_topic, "the worker registers it on first write"))
    rows: list[Check] = []
    try:
        for name, topic, who in plan:
            subject = codec.subject(name, topic)
            try:
                schema_id = codec.registered_id(name, topic)
            except RegistryError as exc:
                fix = f"check {ENV_PREFIX}SCHEMA_REGISTRY_URL and the registry's credentials"
                rows.append(Check("registry", subject, "fail", str(exc), fix))
                if exc.status is None:
                    break  # unreachable: every other subject fails the same way
                continue
            if schema_id is None:
                detail = f"{name} is not registered yet ({who})"
                rows.append(
                    Check("registry", subject, "warn", detail, "`talon-bridge schemas register`")
                )
            else:
                rows.append(Check("registry", subject, "ok", f"{name} registered, id {schema_id}"))
    finally:
        codec.close()
    return rows


# --- Talon.One --------------------------------------------------------------------------------


def _talon_check(settings: Settings) -> Check:
    return asyncio.run(_dry_call(settings))


async def _dry_call(settings: Settings) -> Check:
    from bridge.talon import IntegrationRequest, NewCustomerSessionV2, TalonClient

    subject = settings.talon_base_url
    client = TalonClient(
        settings.talon_base_url,
        settings.talon_api_key.get_secret_value(),
        connect_timeout=settings.talon_connect_timeout,
        read_timeout=settings.talon_read_timeout,
        pool_timeout=settings.talon_pool_timeout,
        max_connections=1,
        http_engine=settings.talon_http_engine,
    )
    body = IntegrationRequest(customer_session=NewCustomerSessionV2())
    started = time.monotonic()
    try:
        async with client:
            await client.update_customer_session(DRY_SESSION_ID, body, dry=True)
    except FatalApiError as exc:
        return Check(
            "talon",
            subject,
            "fail",
            f"API key rejected (HTTP {exc.status})",
            f"set {ENV_PREFIX}TALON_API_KEY to an Integration API key of the Application",
        )
    except (ApiConnectionError, ApiTimeoutError) as exc:
        return Check(
            "talon",
            subject,
            "fail",
            f"unreachable: {exc.message}",
            f"check {ENV_PREFIX}TALON_BASE_URL and the egress network path",
        )
    except ApiError as exc:
        return Check("talon", subject, "fail", f"dry call failed: {exc.message}")
    ms = (time.monotonic() - started) * 1000
    return Check(
        "talon",
        subject,
        "ok",
        f"API key accepted: dry updateCustomerSessionV2 answered in {ms:.0f} ms",
    )


# --- a running worker -------------------------------------------------------------------------


def _worker_check(base: str, timeout: float) -> Check:
    import urllib.error
    import urllib.request

    fix = "see the worker's logs and the runbook in docs/operations.md"
    try:
        urllib.request.urlopen(f"{base}/healthz", timeout=timeout).close()  # noqa: S310
        with urllib.request.urlopen(f"{base}/metrics", timeout=timeout) as answer:  # noqa: S310
            metrics = answer.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return Check("worker", base, "fail", f"not healthy: {exc}", fix)
    ready = [line for line in metrics.splitlines() if line.startswith("bridge_ready")]
    if not ready:
        return Check("worker", base, "fail", "/metrics serves no bridge_ready", fix)
    state = "ready" if ready[0].split()[-1] in ("1", "1.0") else "not ready yet"
    return Check("worker", base, "ok", f"/healthz answers; {state}")


# --- the subcommand ---------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per Kafka request (default 10)"
    )
    parser.add_argument(
        "--worker-url",
        default=None,
        metavar="URL",
        help="also check running workers' /healthz and /metrics at URL (their metrics port)",
    )
    parser.epilog = "Reads the same BRIDGE_* settings as `run`. Exit status: 0 fine, 1 failed."


def run(args: argparse.Namespace) -> int:
    from bridge.logs import configure_logging

    settings = load(Settings)
    configure_logging(settings.log_level, settings.log_format)
    warn_unknown()
    rows = diagnose(settings, timeout=args.timeout, worker_url=args.worker_url)
    failed = any(r.status == "fail" for r in rows)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(r) for r in rows]}, indent=2))
    else:
        print(render(rows))
    return 1 if failed else 0


def render(rows: Sequence[Check]) -> str:
    """The rows as a plain-text table, then one line per fix."""
    head = ("STATUS", "AREA", "SUBJECT", "DETAIL")
    cells = [head, *((r.status.upper(), r.area, r.subject, r.detail) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = ["  ".join([*(c[i].ljust(widths[i]) for i in range(3)), c[3]]).rstrip() for c in cells]
    fixes = [f"- {r.subject}: {r.fix}" for r in rows if r.fix and r.status in ("fail", "warn")]
    if fixes:
        lines += ["", "To fix:", *fixes]
    failed = sum(r.status == "fail" for r in rows)
    skipped = sum(r.status == "skipped" for r in rows)
    lines.append("")
    lines.append(
        f"{failed} failed, {sum(r.status == 'warn' for r in rows)} warning(s), "
        f"{skipped} not checked"
    )
    return "\n".join(lines)
