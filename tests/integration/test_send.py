"""`talon-bridge send` on the real broker: JSON lines in, records the worker's codec reads out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import get_args

import msgspec
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from bridge.avro.codec import Codec
from bridge.avro.schemas import get_schema
from bridge.cli import main
from bridge.tools.harness import read_topic
from bridge.tools.send import parse_command
from bridge.types import CommandType
from tests.support.docs import producer_examples
from tests.support.environment import clean_environment

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("encoding", ["single-object", "confluent"])
def test_send_round_trips_every_command_type(
    encoding: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = topic_factory("send", 3)
    clean_environment(
        monkeypatch,
        {
            "BRIDGE_SECRETS_DIR": str(tmp_path / "no-secrets"),
            "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "BRIDGE_INPUT_TOPICS": topic,
        },
    )
    monkeypatch.setenv("BRIDGE_ENCODING", encoding)
    registry = SchemaRegistryClient.new_client({"url": "mock://send-reader"})
    if encoding == "confluent":
        # The in-memory registry `send` gets numbers schemas from 1, as this one does.
        monkeypatch.setenv("BRIDGE_SCHEMA_REGISTRY_URL", "mock://send")
        registry.register_schema(f"{topic}-value", Schema(get_schema("Command").to_json(), "AVRO"))
    lines = producer_examples()
    path = tmp_path / "commands.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert main(["send", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"sent {len(lines)} command(s) to {topic}"

    records = read_topic({"bootstrap.servers": kafka_bootstrap}, topic, expected=len(lines))
    codec = Codec(encoding, registry=registry)  # type: ignore[arg-type]
    framing = b"\x00" if encoding == "confluent" else b"\xc3\x01"
    assert all(r.value().startswith(framing) for r in records)
    # One session, so one partition, in the order of the lines.
    decoded = [codec.decode_command(r.value()) for r in records]
    assert [r.key() for r in records] == [c.session_id.encode() for c in decoded]
    assert len({r.partition() for r in records}) == 1
    expected = [parse_command(line) for line in lines]
    for got, want in zip(decoded, expected, strict=True):
        # occurredAt defaults to the time the line was read when it is left out.
        assert got == msgspec.structs.replace(want, occurred_at_ms=got.occurred_at_ms)
    assert decoded[0].occurred_at_ms == expected[0].occurred_at_ms
    assert {c.command_type for c in decoded} == set(get_args(CommandType))
