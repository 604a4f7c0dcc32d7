"""The `confluent` encoding against a real Schema Registry (Apicurio's Confluent-compatible API,
or the one `SCHEMA_REGISTRY_URL` names): registering the schemas, their evolution, the worker
reading and writing through it, and the doctor's check of it."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import pytest

from bridge.avro.codec import Codec
from bridge.avro.registry import new_client
from bridge.avro.schemas import COMMAND, EFFECTS_EMITTED, get_schema
from bridge.cli import main
from bridge.commands import Command, TrackEvent
from bridge.settings import KafkaSettings
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, read_topic, wait_for
from tests.support.bridge import Bridge
from tests.support.docs import producer_examples
from tests.support.registry import (
    confluent_record,
    incompatible_command_schema,
    older_command_schema,
    register,
    schema_by_id,
    set_compatibility,
    versions,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No BRIDGE_* variable and no secrets folder from the machine running the tests."""
    for key in list(os.environ):
        if key.startswith("BRIDGE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BRIDGE_SECRETS_DIR", str(tmp_path / "no-secrets"))
    return monkeypatch


def _topics(env: pytest.MonkeyPatch, url: str) -> tuple[str, str]:
    # `schemas register` talks to no broker: the topics need only names.
    run = uuid.uuid4().hex[:8]
    commands, effects = f"sr-in-{run}", f"sr-out-{run}"
    env.setenv("BRIDGE_SCHEMA_REGISTRY_URL", url)
    env.setenv("BRIDGE_INPUT_TOPICS", commands)
    env.setenv("BRIDGE_OUTPUT_TOPIC", effects)
    return commands, effects


def _same_schema(registered: dict[str, Any], name: str) -> bool:
    ours = fastavro.schema.to_parsing_canonical_form(json.loads(get_schema(name).to_json()))
    return bool(ours == fastavro.schema.to_parsing_canonical_form(registered))


def test_schemas_register_puts_the_bundled_schemas_under_the_topic_subjects(
    schema_registry_url: str, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands, effects = _topics(env, schema_registry_url)

    assert main(["schemas", "register"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in first] == [
        [f"{commands}-value", get_schema(COMMAND).full_name],
        [f"{effects}-value", get_schema(EFFECTS_EMITTED).full_name],
    ]
    ids = [int(line.rsplit("id=", 1)[1]) for line in first]
    assert _same_schema(schema_by_id(schema_registry_url, ids[0]), COMMAND)
    assert _same_schema(schema_by_id(schema_registry_url, ids[1]), EFFECTS_EMITTED)
    # Registering again changes nothing: same ids, one version per subject.
    assert main(["schemas", "register"]) == 0
    assert capsys.readouterr().out.splitlines() == first
    assert versions(schema_registry_url, f"{commands}-value") == [1]


def test_a_backward_compatible_evolution_registers_and_an_incompatible_one_is_refused(
    schema_registry_url: str, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands, _ = _topics(env, schema_registry_url)
    subject = f"{commands}-value"
    set_compatibility(schema_registry_url, subject, "BACKWARD")
    register(schema_registry_url, subject, older_command_schema())

    # The current schema reads everything the older one wrote: a new version.
    assert main(["schemas", "register"]) == 0
    capsys.readouterr()
    assert versions(schema_registry_url, subject) == [1, 2]

    # On a subject whose latest version the current schema cannot read, it is refused.
    commands, _ = _topics(env, schema_registry_url)
    subject = f"{commands}-value"
    set_compatibility(schema_registry_url, subject, "BACKWARD")
    register(schema_registry_url, subject, incompatible_command_schema())
    assert main(["schemas", "register"]) == 1
    err = capsys.readouterr().err
    assert f"talon-bridge schemas: {subject}: " in err
    assert "409" in err and "incompatible" in err.lower(), err
    assert versions(schema_registry_url, subject) == [1]


def test_worker_reads_and_writes_through_the_registry(
    schema_registry_url: str,
    bridge_factory: Callable[..., Bridge],
    simulator: SimulatorProcess,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = bridge_factory(
        partitions=2,
        BRIDGE_ENCODING="confluent",
        BRIDGE_SCHEMA_REGISTRY_URL=schema_registry_url,
    )
    for name, value in b.env.items():
        env.setenv(name, value)
    subject = f"{b.input}-value"
    set_compatibility(schema_registry_url, subject, "BACKWARD")
    older = older_command_schema()
    older_id = register(schema_registry_url, subject, older)
    assert main(["schemas", "register"]) == 0

    # Producers on the current schema: `send` (JSON lines) and `produce` (the load generator).
    lines = producer_examples()
    path = tmp_path / "commands.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["send", str(path)]) == 0
    assert main(["produce", "--sessions", "4", "--commands", "12", "--run-id", "sr"]) == 0
    produced = int(capsys.readouterr().out.split("produced ", 1)[1].split()[0])
    # A producer still on the older version.
    old = Command("old-writer-1", "old-writer", 1_700_000_000_000, TrackEvent("viewed", "p-old"))
    b.produce_raw([(b"old-writer", confluent_record(old, older, older_id))])
    total = len(lines) + produced + 1

    with WorkerProcess(b.env) as worker:
        out = read_topic(b.conf, b.output, expected=total)
        processed = "bridge_commands_processed_total"
        wait_for(lambda: worker.metric_sum(processed) >= total, 60, "every command counted")
        assert worker.stop() == 0

    settings = KafkaSettings(kafka_bootstrap_servers=b.bootstrap)
    registry = new_client(settings, schema_registry_url)
    try:
        codec = Codec("confluent", registry=registry)
        effects = [codec.decode_effects(r.value()) for r in out]
    finally:
        registry.close()
    assert len(effects) == total
    assert all(r.value()[:1] == b"\x00" for r in out)
    # The worker registered its effects schema under the output topic's subject.
    effects_id = int.from_bytes(out[0].value()[1:5], "big")
    assert _same_schema(schema_by_id(schema_registry_url, effects_id), EFFECTS_EMITTED)
    assert "old-writer-1" in {e.event_id for e in effects}
    assert [e["eventId"] for e in simulator.journal(profile="p-old")] == ["old-writer-1"]
    assert read_topic(b.conf, b.dlq, idle=1.0) == []

    # With both schemas registered, the doctor's registry checks pass.
    capsys.readouterr()
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {r["subject"]: r for r in report["checks"] if r["area"] == "registry"}
    assert rows[subject]["status"] == "ok", rows
    assert rows[f"{b.output}-value"] == {
        "area": "registry",
        "subject": f"{b.output}-value",
        "status": "ok",
        "detail": f"EffectsEmitted registered, id {effects_id}",
        "fix": "",
    }
