"""The doctor's verdicts from what the broker reports, and its table."""

from __future__ import annotations

from confluent_kafka.admin._acl import AclOperation

from bridge.doctor import Check, acl_check, render

READ, WRITE, DESCRIBE = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE


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
