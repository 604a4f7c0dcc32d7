"""The `talon-bridge schemas` subcommand: list, show, export and register."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.avro.schemas import get_schema, load_schemas
from bridge.cli import main

NAMES = ["Command", "EffectsEmitted"]


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "list"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        schema = get_schema(name)
        assert f"0x{schema.fingerprint:016x}" in out
        assert f"c301{schema.fingerprint_bytes.hex()}" in out
        assert schema.full_name in out


def test_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "show", "Command"]) == 0
    assert json.loads(capsys.readouterr().out) == get_schema("Command").definition
    assert main(["schemas", "show", "--canonical", "one.talon.bridge.EffectsEmitted"]) == 0
    assert capsys.readouterr().out.strip() == get_schema("EffectsEmitted").canonical_form


def test_show_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "show", "Nope"]) == 1
    assert "Nope" in capsys.readouterr().err


def test_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out"
    assert main(["schemas", "export", str(target)]) == 0
    exported = load_schemas(target)
    for name in NAMES:
        assert exported.current[name].definition == get_schema(name).definition
        assert exported.current[name].fingerprint == get_schema(name).fingerprint
    assert str(target / "Command.avsc") in capsys.readouterr().out


def test_register_under_topic_subjects(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("BRIDGE_SCHEMA_REGISTRY_URL", "mock://schemas-cli")
    env.setenv("BRIDGE_INPUT_TOPICS", "orders.commands,events.commands")
    env.setenv("BRIDGE_OUTPUT_TOPIC", "talon.effects")
    assert main(["schemas", "register"]) == 0
    lines = capsys.readouterr().out.splitlines()
    subjects = {line.split()[0]: line.split()[1] for line in lines}
    assert subjects == {
        "orders.commands-value": "one.talon.bridge.Command",
        "events.commands-value": "one.talon.bridge.Command",
        "talon.effects-value": "one.talon.bridge.EffectsEmitted",
    }
    assert all("id=" in line for line in lines)


@pytest.mark.parametrize(
    ("strategy", "subjects"),
    [
        (
            "record",
            {
                "one.talon.bridge.Command": "one.talon.bridge.Command",
                "one.talon.bridge.EffectsEmitted": "one.talon.bridge.EffectsEmitted",
            },
        ),
        (
            "topic-record",
            {
                "orders.commands-one.talon.bridge.Command": "one.talon.bridge.Command",
                "events.commands-one.talon.bridge.Command": "one.talon.bridge.Command",
                "talon.effects-one.talon.bridge.EffectsEmitted": "one.talon.bridge.EffectsEmitted",
            },
        ),
    ],
)
def test_register_follows_the_subject_name_strategy(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    strategy: str,
    subjects: dict[str, str],
) -> None:
    env.setenv("BRIDGE_SCHEMA_REGISTRY_URL", f"mock://schemas-{strategy}")
    env.setenv("BRIDGE_SCHEMA_REGISTRY_SUBJECT_STRATEGY", strategy)
    env.setenv("BRIDGE_INPUT_TOPICS", "orders.commands,events.commands")
    env.setenv("BRIDGE_OUTPUT_TOPIC", "talon.effects")
    assert main(["schemas", "register"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert {line.split()[0]: line.split()[1] for line in lines} == subjects


def test_register_url_option_wins(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schemas", "register", "--url", "mock://option"]) == 0
    assert "talon.commands-value" in capsys.readouterr().out


def test_register_needs_a_registry(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schemas", "register"]) == 2
    assert "BRIDGE_SCHEMA_REGISTRY_URL" in capsys.readouterr().err
