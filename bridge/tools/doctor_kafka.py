"""`talon-bridge doctor`'s Kafka checks: brokers, topics, ACLs, the group, the newest records.

ACLs are read as the broker's own answer to "what may I do with this topic / group"
(KIP-430 authorized operations), so super users, prefixed and wildcard ACLs and DENY rules
count exactly as they will for the worker. Nothing is produced to check WRITE: a probe
record, even an aborted transactional one, is seen by read-uncommitted consumers. What
cannot be checked this way (the transactional ID of exactly-once) is reported as such.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bridge.avro.codec import Codec, RegistryError
from bridge.errors import DecodeError, KafkaRequestError, KafkaUnreachableError
from bridge.kafka.admin import (
    AclOperation,
    AdminClient,
    NewestRecords,
    TopicInfo,
    committed_partitions,
    describe_configs,
    describe_group,
    describe_topics,
)
from bridge.kafka.cluster import Cluster
from bridge.kafka.config import DEFAULT_MESSAGE_MAX_BYTES, message_max_bytes
from bridge.settings import ENV_PREFIX, Settings
from bridge.tools.doctor_report import Check

__all__ = ["acl_check", "kafka_checks"]

_TOPICS_FIX = "create it: `talon-bridge topics create` (or the chart's topics Job)"

# Each topic: its description, or why it could not be described.
_Found = dict[str, TopicInfo | KafkaRequestError]


@dataclass(frozen=True, slots=True)
class _Topic:
    role: str
    name: str
    # Operations the worker (and replay, for the DLQ) performs on it.
    needs: tuple[AclOperation, ...]
    optional: tuple[AclOperation, ...] = ()
    optional_why: str = ""


# The broker's default max.message.bytes, which a topic without its own has.
_BROKER_MAX_MESSAGE_BYTES = 1_048_588


def _topics(settings: Settings) -> list[_Topic]:
    read, write, describe = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE
    topics = [_Topic("input", t, (read, describe)) for t in settings.input_topics]
    topics.append(_Topic("output", settings.output_topic, (write, describe)))
    topics.append(
        _Topic("dlq", settings.dlq_topic, (write, describe), (read,), "`talon-bridge replay`")
    )
    topics.append(_Topic("parking", settings.parking_topic, (read, write, describe)))
    return topics


def kafka_checks(settings: Settings, timeout: float) -> list[Check]:
    """The rows of every Kafka check; without a broker, one failure and one skipped row."""
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
        found = describe_topics(admin, [t.name for t in topics], timeout)
        described = [t.name for t in topics if isinstance(found[t.name], TopicInfo)]
        configs = describe_configs(admin, described, timeout)
        producer_max = message_max_bytes(settings)
        for t in topics:
            info = found[t.name]
            rows.append(_topic_row(t, info, configs.get(t.name), producer_max))
            if isinstance(info, TopicInfo):
                rows.append(_acl_row(f"topic {t.name}", info.authorized, t))
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


def _topic_row(
    t: _Topic,
    info: TopicInfo | KafkaRequestError,
    config: dict[str, str] | str | None,
    producer_max: int = DEFAULT_MESSAGE_MAX_BYTES,
) -> Check:
    subject = f"{t.role} {t.name}"
    if isinstance(info, KafkaRequestError):
        if info.unauthorized:
            return Check(
                "topic", subject, "fail", "not allowed to describe it", "grant DESCRIBE on it"
            )
        if info.unknown_topic:
            return Check("topic", subject, "fail", "does not exist", _TOPICS_FIX)
        return Check("topic", subject, "fail", f"cannot describe it: {info.reason}")
    shape = f"{len(info.partitions)} partition(s), replication {info.replication}"
    if isinstance(config, str) or config is None:
        why = config or "no answer"
        return Check(
            "topic",
            subject,
            "warn",
            f"{shape}; cleanup.policy not verified ({why})",
            "grant DESCRIBE_CONFIGS on it so the policy can be checked (the worker also "
            "reads its max.message.bytes at start)",
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
    topic_max = int(config.get("max.message.bytes", _BROKER_MAX_MESSAGE_BYTES))
    if t.role != "input" and topic_max < producer_max:
        # The worker keeps its batches under the topic's limit; a record over it cannot go.
        return Check(
            "topic",
            subject,
            "warn",
            f"{shape}, max.message.bytes={topic_max}: below the producer's message.max.bytes "
            f"({producer_max}); a record between the two is dead-lettered, or goes without "
            "its value, and the producer's batches are capped at it",
            f"{alter} max.message.bytes={producer_max}, or a lower message.max.bytes in "
            f"{ENV_PREFIX}KAFKA_PRODUCER_CONFIG",
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


def _described_inputs(topics: list[_Topic], found: _Found) -> list[tuple[_Topic, TopicInfo]]:
    return [
        (t, info)
        for t in topics
        if t.role == "input" and isinstance(info := found[t.name], TopicInfo)
    ]


def _group_checks(
    admin: AdminClient,
    settings: Settings,
    topics: list[_Topic],
    found: _Found,
    timeout: float,
) -> list[Check]:
    group = settings.group_id
    subject = f"group {group}"
    needs = (AclOperation.READ, AclOperation.DESCRIBE)
    try:
        described = describe_group(admin, group, timeout)
    except KafkaRequestError as exc:
        if exc.unauthorized:
            return [
                Check("acl", subject, "fail", "not allowed to describe it", "grant READ, DESCRIBE")
            ]
        return [Check("acl", subject, "fail", f"cannot describe it: {exc.reason}")]
    state = "not created yet" if described.state == "dead" else described.state
    rows = [acl_check(subject, described.authorized, needs)]
    partitions = [
        (t.name, p) for t, info in _described_inputs(topics, found) for p in info.partitions
    ]
    if not partitions:
        return rows
    try:
        committed = committed_partitions(admin, group, partitions, timeout)
    except KafkaRequestError as exc:
        rows.append(
            Check(
                "group",
                subject,
                "fail",
                f"cannot read its committed offsets: {exc.reason}",
                "grant DESCRIBE on the group and the input topics",
            )
        )
        return rows
    detail = (
        f"{state}, {described.members} member(s); committed offsets on {len(committed)} of "
        f"{len(partitions)} input partition(s)"
    )
    if not committed:
        detail += " (a new group starts at the oldest records)"
    rows.append(Check("group", subject, "ok", detail))
    return rows


def _newest_records(
    settings: Settings, topics: list[_Topic], found: _Found, timeout: float
) -> list[Check]:
    """Decode the newest record of each input partition, as the worker would.

    Catches producers writing another encoding (JSON, another schema) before the worker
    dead-letters their records. Reads by assignment: no group, nothing committed.
    """
    inputs = _described_inputs(topics, found)
    if not inputs:
        return []
    reader = NewestRecords(settings.librdkafka_common())
    codec = Codec.from_settings(settings)
    rows: list[Check] = []
    try:
        for t, info in inputs:
            wanted: dict[int, int] = {}
            for p in info.partitions:
                try:
                    last = reader.last_offset(t.name, p, timeout)
                except KafkaRequestError as exc:
                    rows.append(Check("records", f"input {t.name}", "skipped", exc.reason))
                    break
                if last is not None:
                    wanted[p] = last
            else:
                rows.append(_decode_newest(reader, codec, t.name, wanted, timeout))
    finally:
        reader.close()
        codec.close()
    return rows


def _decode_newest(
    reader: NewestRecords, codec: Codec, topic: str, wanted: dict[int, int], timeout: float
) -> Check:
    subject = f"input {topic}"
    if not wanted:
        return Check("records", subject, "ok", "no records yet")
    problems: list[str] = []
    read = 0
    for partition, offset, value in reader.read(topic, wanted, timeout):
        read += 1
        try:
            codec.decode_command(value)
        except DecodeError as exc:  # its message never quotes the record
            problems.append(f"partition {partition} offset {offset}: {exc}")
        except RegistryError as exc:
            problems.append(f"partition {partition}: registry: {exc}")
    if problems:
        return Check(
            "records",
            subject,
            "warn",
            f"newest record not readable: {'; '.join(problems)}",
            "the worker dead-letters records it cannot decode: check the producers' encoding "
            "against docs/producers.md",
        )
    return Check("records", subject, "ok", f"newest record of {read} partition(s) decodes")
