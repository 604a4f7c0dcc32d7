"""The doctor's verdicts from what the broker reports, and its table."""

from __future__ import annotations

import argparse

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from pydantic import SecretStr

from bridge.avro.codec import Codec
from bridge.cli import main
from bridge.commands import Command, TrackEvent
from bridge.kafka.admin import AclOperation, TopicInfo
from bridge.settings import Settings
from bridge.tools import doctor, doctor_kafka
from bridge.tools.doctor_kafka import acl_check
from bridge.tools.doctor_report import Check, render
from bridge.tools.doctor_services import registry_checks
from bridge.tools.ports import free_port

READ, WRITE, DESCRIBE = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE
_COMMAND = Command("e1", "s1", 0, TrackEvent(type="viewed", profile_id="p1"))


def test_missing_operations_fail_and_name_the_grant() -> None:
    row = acl_check("topic out", [READ, DESCRIBE], (WRITE, DESCRIBE))
    assert row.status == "fail"
    assert row.detail == "missing WRITE (needs WRITE, DESCRIBE)"
    assert row.fix == "grant WRITE on topic out to the bridge's principal"


def test_all_covers_every_operation() -> None:
    assert acl_check("group g", [AclOperation.ALL], (READ, DESCRIBE)).status == "ok"


def test_optional_operation_missing_is_a_warning() -> None:
    row = acl_check("topic dlq", [WRITE, DESCRIBE], (WRITE, DESCRIBE), (READ,), "replay")
    assert row.status == "warn"
    assert "READ missing, needed by replay" in row.detail


def test_unreported_operations_are_said_to_be_unverified() -> None:
    row = acl_check("topic in", None, (READ, DESCRIBE))
    assert row.status == "skipped"
    assert row.detail.startswith("not verified")


def test_table_aligns_rows_and_lists_fixes_of_failures_and_warnings() -> None:
    out = render(
        [
            Check("kafka", "b:9092", "ok", "1 broker(s)"),
            Check("topic", "parking p", "fail", "cleanup.policy=delete", "compact it"),
            Check("topic", "output o", "warn", "compacted", "delete it"),
            Check("registry", "Schema Registry", "skipped", "not checked"),
        ]
    ).splitlines()
    assert out[0].split() == ["STATUS", "AREA", "SUBJECT", "DETAIL"]
    assert out[2].index("parking p") == out[1].index("b:9092")
    assert out[-4:] == [
        "- parking p: compact it",
        "- output o: delete it",
        "",
        "1 failed, 1 warning(s), 1 not checked",
    ]


def _settings(registry_url: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers="unused:9092",
        talon_base_url="http://unused",
        talon_allow_insecure_http=True,
        talon_api_key=SecretStr("k"),
        encoding="confluent",
        schema_registry_url=registry_url,
        output_topic="fx",
        input_topics=["cmds"],
    )


def test_registered_id_looks_up_without_registering() -> None:
    registry = SchemaRegistryClient.new_client({"url": "mock://doctor"})
    codec = Codec("confluent", registry=registry)
    assert codec.registered_id("Command", "cmds") is None
    assert registry.get_subjects() == []
    schema_id = int.from_bytes(codec.encode_command(_COMMAND, "cmds")[1:5], "big")
    assert codec.registered_id("Command", "cmds") == schema_id
    assert codec.registered_id("EffectsEmitted", "cmds") is None


def test_unregistered_subjects_are_warnings() -> None:
    rows = registry_checks(_settings("mock://doctor-empty"))
    assert [(r.subject, r.status) for r in rows] == [
        ("cmds-value", "warn"),
        ("fx-value", "warn"),
    ]
    assert "the worker registers it on first write" in rows[1].detail


def test_unreachable_registry_fails_once() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    rows = registry_checks(_settings(url))
    assert [(r.subject, r.status) for r in rows] == [("cmds-value", "fail")]
    assert "BRIDGE_SCHEMA_REGISTRY_URL" in rows[0].fix


def test_run_check_is_the_doctor(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []

    def fake_run(args: argparse.Namespace) -> int:
        seen.append(args)
        return 1

    monkeypatch.setattr(doctor, "run", fake_run)
    assert main(["run", "--check"]) == 1
    assert seen and seen[0].json is False and seen[0].worker_url is None


def _described(partitions: int = 3) -> TopicInfo:
    return TopicInfo(partitions=tuple(range(partitions)), replication=3, authorized=None)


@pytest.mark.parametrize(
    ("role", "policy", "status", "detail"),
    [
        ("parking", "compact", "ok", "3 partition(s), replication 3, cleanup.policy=compact"),
        ("parking", "delete", "fail", "must be compact"),
        ("parking", "compact,delete", "fail", "must be compact"),
        ("input", "compact", "fail", "keeps only the last record of each session"),
        ("dlq", "delete,compact", "fail", "keeps only the last record of each session"),
        ("output", "compact", "warn", "only the last effects of each session"),
        ("output", "delete", "ok", "cleanup.policy=delete"),
    ],
)
def test_topic_cleanup_policy_verdicts(role: str, policy: str, status: str, detail: str) -> None:
    topic = doctor_kafka._Topic(role, "t", ())
    row = doctor_kafka._topic_row(topic, _described(), {"cleanup.policy": policy})
    assert row.status == status
    assert detail in row.detail
    if status == "fail":
        assert "kafka-configs --alter --entity-type topics --entity-name t" in row.fix


@pytest.mark.parametrize(
    ("role", "topic_max", "status"),
    [
        ("output", "900000", "warn"),
        ("dlq", "999999", "warn"),
        ("parking", "900000", "warn"),
        ("output", "1000000", "ok"),
        ("input", "900000", "ok"),  # the worker does not write to it
    ],
)
def test_a_topic_smaller_than_the_producers_records_is_a_warning(
    role: str, topic_max: str, status: str
) -> None:
    policy = "compact" if role == "parking" else "delete"
    config = {"cleanup.policy": policy, "max.message.bytes": topic_max}
    row = doctor_kafka._topic_row(doctor_kafka._Topic(role, "t", ()), _described(), config)
    assert row.status == status
    if status == "warn":
        assert "below the producer's message.max.bytes (1000000)" in row.detail
        assert "max.message.bytes=1000000" in row.fix


def test_unreadable_config_is_a_warning_that_says_why() -> None:
    row = doctor_kafka._topic_row(
        doctor_kafka._Topic("parking", "t", ()), _described(1), "Broker: Authorization failed"
    )
    assert row.status == "warn"
    assert "cleanup.policy not verified (Broker: Authorization failed)" in row.detail
    assert "DESCRIBE_CONFIGS" in row.fix


def test_subjects_follow_the_subject_name_strategy() -> None:
    settings = _settings("mock://doctor-record").model_copy(
        update={"schema_registry_subject_strategy": "record"}
    )
    rows = registry_checks(settings)
    assert [r.subject for r in rows] == [
        "one.talon.bridge.Command",
        "one.talon.bridge.EffectsEmitted",
    ]
