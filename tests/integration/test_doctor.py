"""`talon-bridge doctor` against a real broker and the simulator: a good setup and broken ones."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from bridge.cli import main
from bridge.commands import Command, TrackEvent
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess
from bridge.tools.ports import free_port
from tests.support.bridge import Bridge

pytestmark = pytest.mark.kafka


def _command(session: str, n: int) -> Command:
    return Command(f"{session}:{n}", session, 0, TrackEvent(type="viewed", profile_id="p"))


def _doctor(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    *args: str,
) -> tuple[int, dict[str, Any]]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = main(["doctor", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def _rows(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["area"], r["subject"]): r for r in report["checks"]}


def test_good_setup_passes_every_check_and_stores_nothing(
    bridge_factory: Callable[..., Bridge],
    simulator: SimulatorProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = bridge_factory(partitions=2)
    b.produce([_command("s-1", 1)])
    code, report = _doctor(monkeypatch, capsys, b.env)
    rows = _rows(report)
    assert code == 0 and report["ok"], report
    assert rows["records", f"input {b.input}"] == {
        "area": "records",
        "subject": f"input {b.input}",
        "status": "ok",
        "detail": "newest record of 1 partition(s) decodes",
        "fix": "",
    }
    for role, name in (("input", b.input), ("output", b.output), ("dlq", b.dlq)):
        assert rows["topic", f"{role} {name}"]["status"] == "ok"
        assert "cleanup.policy=delete" in rows["topic", f"{role} {name}"]["detail"]
        assert rows["acl", f"topic {name}"]["status"] == "ok"
    assert rows["topic", f"parking {b.parking}"]["status"] == "ok"
    assert rows["acl", f"group {b.group}"]["status"] == "ok"
    assert "committed offsets on 0 of 2" in rows["group", f"group {b.group}"]["detail"]
    assert rows["registry", "Schema Registry"]["status"] == "skipped"
    assert rows["talon", simulator.base_url]["status"] == "ok"
    # The dry call reached Talon.One, which kept no trace of it.
    stats = simulator.stats()
    assert stats["requests"] == 1 and stats["dry"] == 1, stats
    assert simulator.session("talon-bridge-doctor").status == 404


@pytest.mark.parametrize("broken", ["missing-topic", "uncompacted-parking", "wrong-api-key"])
def test_broken_setup_names_what_to_fix(
    broken: str,
    bridge_factory: Callable[..., Bridge],
    topic_factory: Callable[..., str],
    simulator: SimulatorProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = bridge_factory(partitions=1)
    env = dict(b.env)
    if broken == "missing-topic":
        env["BRIDGE_OUTPUT_TOPIC"] = f"{b.output}-missing"
        subject, detail = ("topic", f"output {b.output}-missing"), "does not exist"
    elif broken == "uncompacted-parking":
        env["BRIDGE_PARKING_TOPIC"] = parking = topic_factory("park-delete", 1)
        subject, detail = ("topic", f"parking {parking}"), "must be compact"
    else:
        env["BRIDGE_TALON_API_KEY"] = "not-the-key"
        subject, detail = ("talon", simulator.base_url), "API key rejected (HTTP 401)"
    code, report = _doctor(monkeypatch, capsys, env)
    rows = _rows(report)
    assert code == 1 and not report["ok"]
    assert rows[subject]["status"] == "fail" and detail in rows[subject]["detail"], rows[subject]
    assert rows[subject]["fix"]
    failed = [key for key, row in rows.items() if row["status"] == "fail"]
    assert failed == [subject]
    assert "not-the-key" not in json.dumps(report)


def test_undecodable_newest_record_is_a_warning(
    bridge_factory: Callable[..., Bridge],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = bridge_factory(partitions=1)
    b.produce([_command("s-1", 1)])
    b.produce_raw([(b"s-2", b'{"eventId": "json-instead-of-avro"}')])
    code, report = _doctor(monkeypatch, capsys, b.env)
    row = _rows(report)["records", f"input {b.input}"]
    assert code == 0  # the worker runs; it dead-letters what it cannot read
    assert row["status"] == "warn"
    assert row["detail"] == (
        "newest record not readable: partition 0 offset 1: unknown-magic: "
        "first byte 0x7b starts neither supported wire format"
    )
    assert "docs/producers.md" in row["fix"]
    assert "json-instead-of-avro" not in json.dumps(report)


def test_unreachable_broker_fails_and_skips_the_kafka_checks(
    bridge_factory: Callable[..., Bridge],
    simulator: SimulatorProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = bridge_factory(partitions=1)
    nowhere = f"127.0.0.1:{free_port()}"
    env = {**b.env, "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": nowhere}
    code, report = _doctor(monkeypatch, capsys, env, "--timeout", "2")
    rows = _rows(report)
    assert code == 1
    assert rows["kafka", nowhere]["status"] == "fail"
    assert "BRIDGE_KAFKA_BOOTSTRAP_SERVERS" in rows["kafka", nowhere]["fix"]
    assert rows["kafka", "topics, ACLs, group"]["status"] == "skipped"
    assert rows["talon", simulator.base_url]["status"] == "ok"


def test_table_output_lists_fixes(
    bridge_factory: Callable[..., Bridge],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = bridge_factory(partitions=1)
    env = {**b.env, "BRIDGE_DLQ_TOPIC": f"{b.dlq}-missing", "BRIDGE_EXACTLY_ONCE": "true"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if f"dlq {b.dlq}-missing" in line)
    assert row.split()[:2] == ["FAIL", "topic"] and row.endswith("does not exist")
    assert "To fix:" in out and "talon-bridge topics create" in out
    eos = next(line for line in out.splitlines() if "transactional id" in line)
    assert eos.split()[:2] == ["SKIPPED", "acl"]
    assert f"transactional id {b.group}-* (prefixed)" in eos and "not verified" in eos
    assert out.rstrip().endswith("1 failed, 0 warning(s), 2 not checked")


def test_running_worker_is_seen_in_its_group_and_on_its_metrics_port(
    bridge_factory: Callable[..., Bridge],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = bridge_factory(partitions=2)
    with WorkerProcess(b.env) as worker:
        url = f"http://127.0.0.1:{worker.metrics_port}"
        code, report = _doctor(monkeypatch, capsys, b.env, "--worker-url", url)
    rows = _rows(report)
    assert code == 0, report
    assert rows["worker", url] == {
        "area": "worker",
        "subject": url,
        "status": "ok",
        "detail": "/healthz answers; ready",
        "fix": "",
    }
    assert rows["group", f"group {b.group}"]["detail"].startswith("stable, 1 member(s)")
