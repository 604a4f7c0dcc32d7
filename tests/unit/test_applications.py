"""The routing table: parsing, errors that name the setting and the entry, routing rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.applications import ApplicationsTable, load_table
from bridge.environment import load
from bridge.errors import ConfigError
from bridge.settings import Settings

TOPICS = ["commands.de", "commands.fr", "commands.shared"]


def _write(tmp_path: Path, table: dict[str, object] | str, name: str = "apps.yaml") -> str:
    for app in ("de", "fr"):
        (tmp_path / app).write_text(f"key-{app}\n", encoding="utf-8")
    path = tmp_path / name
    path.write_text(table if isinstance(table, str) else json.dumps(table), encoding="utf-8")
    return str(path)


def _table(tmp_path: Path, **changes: object) -> dict[str, object]:
    table: dict[str, object] = {
        "applications": [
            {
                "name": "de",
                "base_url": "https://acme.europe-west1.talon.one/",
                "api_key_file": str(tmp_path / "de"),
                "topics": ["commands.de"],
            },
            {
                "name": "fr",
                "base_url": "https://acme-fr.europe-west1.talon.one",
                "api_key_file": str(tmp_path / "fr"),
                "topics": ["commands.fr"],
            },
        ],
        **changes,
    }
    return table


def _load(path: str) -> ApplicationsTable:
    return load_table(path, input_topics=TOPICS, allow_http=False)


def test_a_yaml_table_is_read_with_its_keys_kept_secret(tmp_path: Path) -> None:
    yaml_text = f"""
applications:
  - name: de
    base_url: https://acme.europe-west1.talon.one/
    api_key_file: {tmp_path / "de"}
    topics: [commands.de]
  - name: fr
    base_url: https://acme-fr.europe-west1.talon.one
    api_key_file: {tmp_path / "fr"}
default: fr
"""
    table = _load(_write(tmp_path, yaml_text))
    assert table.names() == ["de", "fr"]
    de, fr = table.applications
    assert de.base_url == "https://acme.europe-west1.talon.one"
    assert de.api_key.get_secret_value() == "key-de", "read from its file, stripped"
    assert fr.topics == () and table.default == "fr"
    assert "key-de" not in repr(table) and "key-fr" not in str(table)


def test_a_json_table_is_read_too(tmp_path: Path) -> None:
    table = _load(_write(tmp_path, _table(tmp_path), "apps.json"))
    assert table.topic_routes() == {"commands.de": "de", "commands.fr": "fr"}


def test_a_header_beats_the_topic_and_an_unknown_one_routes_nowhere(tmp_path: Path) -> None:
    table = _load(_write(tmp_path, _table(tmp_path)))
    assert table.route("commands.de", None) == "de"
    assert table.route("commands.de", "fr") == "fr", "the header beats the topic"
    assert table.route("commands.de", "it") is None, "a name not in the table goes nowhere"
    assert table.route("commands.shared", None) is None, "no topic route and no default"
    assert "'it'" in table.unrouted("commands.de", "it")
    assert "no default" in table.unrouted("commands.shared", None)


def test_the_default_takes_records_no_topic_routes(tmp_path: Path) -> None:
    table = _load(_write(tmp_path, _table(tmp_path, default="fr")))
    assert table.route("commands.shared", None) == "fr"
    assert table.route("commands.de", None) == "de"
    assert table.route("commands.shared", "nope") is None, "a wrong header never falls back"


_MISSING = object()
FR = "applications[1] (fr)"


@pytest.mark.parametrize(
    ("index", "field", "value", "expected"),
    [
        (1, "base_url", "ftp://x", f"{FR}.base_url: must start with http:// or https://"),
        (1, "base_url", "http://x", f"{FR}.base_url: is plain http"),
        (1, "base_url", "https://u:p@x", f"{FR}.base_url: holds credentials"),
        (0, "api_key_file", _MISSING, "applications[0] (de).api_key_file: is required"),
        (1, "name", "FR!", "applications[1] (FR!).name: String should match"),
        (1, "name", "de", "applications[1] (de).name: applications[0] has it already"),
        (1, "topics", ["commands.de"], f"{FR}.topics: 'commands.de' goes to de already"),
        (1, "topics", ["other"], f"{FR}.topics: 'other' is not in BRIDGE_INPUT_TOPICS"),
        (1, "api_key_file", "/nonexistent/fr", f"{FR}.api_key_file: cannot read /nonexistent"),
        (1, "extra", 1, f"{FR}.extra: Extra inputs are not permitted"),
        (None, "default", "it", "default: 'it' is not one of the applications"),
        (None, "applications", [], "applications: List should have at least 1 item"),
    ],
)
def test_a_bad_table_names_the_entry_at_fault(
    tmp_path: Path, index: int | None, field: str, value: object, expected: str
) -> None:
    table = _table(tmp_path)
    entry: dict[str, object] = table if index is None else table["applications"][index]  # type: ignore[index]
    if value is _MISSING:
        entry.pop(field)
    else:
        entry[field] = value
    with pytest.raises(ValueError) as info:
        _load(_write(tmp_path, table))
    assert str(info.value).startswith(expected), str(info.value)


def test_a_file_that_is_not_yaml_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not valid YAML or JSON"):
        _load(_write(tmp_path, "applications: [\n"))
    with pytest.raises(ValueError, match="cannot read"):
        _load(str(tmp_path / "absent.yaml"))


def test_an_empty_key_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _table(tmp_path))
    (tmp_path / "fr").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"applications\[1\] \(fr\).api_key_file: .* is empty"):
        _load(path)


def test_the_settings_name_the_file_and_need_no_base_url_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    monkeypatch.setenv("BRIDGE_INPUT_TOPICS", ",".join(TOPICS))
    monkeypatch.delenv("BRIDGE_TALON_BASE_URL", raising=False)
    monkeypatch.delenv("BRIDGE_TALON_API_KEY", raising=False)
    monkeypatch.setenv("BRIDGE_SECRETS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("BRIDGE_APPLICATIONS_FILE", _write(tmp_path, _table(tmp_path)))
    settings = load(Settings)
    assert settings.applications().names() == ["de", "fr"]
    assert settings.application_header == "talon-application"

    bad = _table(tmp_path)
    bad["applications"][1]["topics"] = ["elsewhere"]  # type: ignore[index]
    monkeypatch.setenv("BRIDGE_APPLICATIONS_FILE", _write(tmp_path, bad))
    with pytest.raises(ConfigError) as info:
        load(Settings)
    assert info.value.problems == [
        (
            "BRIDGE_APPLICATIONS_FILE",
            "applications[1] (fr).topics: 'elsewhere' is not in BRIDGE_INPUT_TOPICS",
        )
    ], "only the file is named: the base URL and key are not missing then"
    assert "key-" not in str(info.value)


def test_without_a_file_the_one_application_is_default(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:9092",
        talon_base_url="https://acme.europe-west1.talon.one",
        talon_api_key="k",  # type: ignore[arg-type]
    )
    table = settings.applications()
    assert table.names() == ["default"] and table.route("anything", None) == "default"
