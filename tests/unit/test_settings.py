"""Settings load from BRIDGE_* variables; bad ones exit 2 naming the variable."""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer

from bridge.cli import main
from bridge.environment import load, reference, unknown_variables, warn_unknown
from bridge.errors import ConfigError
from bridge.settings import KafkaSettings, Settings
from tests.support.environment import clean_environment


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return clean_environment(monkeypatch)


def _plain(err: str) -> str:
    """stderr without the JSON log lines a command writes before it fails."""
    return "".join(line for line in err.splitlines(keepends=True) if not line.startswith("{"))


@pytest.fixture
def logs() -> Iterator[None]:
    """Commands configure the root logger; put pytest's handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_defaults_and_parsing(env: pytest.MonkeyPatch) -> None:
    env.setenv("BRIDGE_INPUT_TOPICS", "a, b,c")
    env.setenv("BRIDGE_KAFKA_CONFIG", '{"security.protocol": "SASL_SSL", "fetch.min.bytes": 1}')
    s = load(Settings)
    assert s.input_topics == ["a", "b", "c"]
    assert s.talon_base_url == "https://acme.talon.one"
    assert s.output_topic == "talon.effects"
    assert s.dlq_topic == "talon.commands.dlq"
    conf = s.librdkafka_common()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["bootstrap.servers"] == "127.0.0.1:9092"


def test_secret_is_never_printed(env: pytest.MonkeyPatch) -> None:
    env.setenv("BRIDGE_KAFKA_SASL_PASSWORD", "kafka-pw-987")
    s = load(Settings)
    assert "secret-key-123" not in repr(s) and "secret-key-123" not in str(s)
    assert "kafka-pw-987" not in repr(s)
    assert s.librdkafka_common()["sasl.password"] == "kafka-pw-987"


def test_secret_files(env: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory) -> None:
    env.delenv("BRIDGE_TALON_API_KEY")
    (tmp_path / "BRIDGE_TALON_API_KEY").write_text("from-file")  # type: ignore[operator]
    env.setenv("BRIDGE_SECRETS_DIR", str(tmp_path))
    assert load(Settings).talon_api_key.get_secret_value() == "from-file"


OIDC = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "OAUTHBEARER",
    "sasl.oauthbearer.method": "oidc",
    "sasl.oauthbearer.client.id": "talon-bridge",
    "sasl.oauthbearer.token.endpoint.url": "http://127.0.0.1:9/token",
}


def test_oidc_client_secret_from_a_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET").write_text("oidc-secret-55")
    env.setenv("BRIDGE_SECRETS_DIR", str(tmp_path))
    env.setenv("BRIDGE_KAFKA_CONFIG", json.dumps(OIDC))
    s = load(Settings)
    assert "oidc-secret-55" not in repr(s)
    conf = s.librdkafka_common()
    assert conf["sasl.oauthbearer.client.secret"] == "oidc-secret-55"
    # librdkafka refuses an OIDC configuration without the client secret; this one it takes.
    Producer(conf).flush(0)
    with pytest.raises(KafkaException, match=r"client\.secret"):
        Producer({k: v for k, v in conf.items() if k != "sasl.oauthbearer.client.secret"})


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("BRIDGE_MAX_IN_FLIGHT", "lots", "BRIDGE_MAX_IN_FLIGHT"),
        ("BRIDGE_MAX_IN_FLIGHT", "0", "BRIDGE_MAX_IN_FLIGHT"),
        ("BRIDGE_TALON_BASE_URL", "acme.talon.one", "BRIDGE_TALON_BASE_URL"),
        ("BRIDGE_TALON_BASE_URL", "https://key:s3cret@acme.talon.one", "BRIDGE_TALON_BASE_URL"),
        ("BRIDGE_ON_POISON", "ignore", "BRIDGE_ON_POISON"),
        ("BRIDGE_KAFKA_CONFIG", "not json", "BRIDGE_KAFKA_CONFIG"),
        ("BRIDGE_METRICS_PORT", "70000", "BRIDGE_METRICS_PORT"),
        ("BRIDGE_EVENT_LOOP", "trio", "BRIDGE_EVENT_LOOP"),
    ],
)
def test_invalid_setting_names_variable(
    env: pytest.MonkeyPatch, var: str, value: str, expected: str
) -> None:
    env.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load(Settings)
    assert info.value.setting == expected


def test_event_loop_needs_uvloop_installed(env: pytest.MonkeyPatch) -> None:
    assert load(Settings).event_loop == "uvloop"
    real = importlib.util.find_spec
    env.setattr(importlib.util, "find_spec", lambda name: None if name == "uvloop" else real(name))
    with pytest.raises(ConfigError, match="BRIDGE_EVENT_LOOP: uvloop is not installed"):
        load(Settings)
    env.setenv("BRIDGE_EVENT_LOOP", "asyncio")
    assert load(Settings).event_loop == "asyncio"


def test_missing_setting(env: pytest.MonkeyPatch) -> None:
    env.delenv("BRIDGE_KAFKA_BOOTSTRAP_SERVERS")
    with pytest.raises(ConfigError, match="BRIDGE_KAFKA_BOOTSTRAP_SERVERS: is required"):
        load(KafkaSettings)


def test_cli_exits_2_with_one_line_naming_the_variable(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("BRIDGE_MAX_IN_FLIGHT", "lots")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "BRIDGE_MAX_IN_FLIGHT" in err
    assert "secret-key-123" not in err


@pytest.mark.parametrize("argv", [["run"], ["topics", "create"], ["produce", "--commands", "1"]])
def test_a_property_librdkafka_refuses_names_the_pass_through(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], logs: None
) -> None:
    env.setenv("BRIDGE_KAFKA_CONFIG", '{"no.such.property": 1}')
    assert main(argv) == 2
    err = _plain(capsys.readouterr().err)
    assert err.count("\n") == 1
    assert "BRIDGE_KAFKA_CONFIG" in err and "no.such.property" in err


def test_a_metrics_port_in_use_names_the_setting(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], logs: None
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - the worker binds all interfaces too
        taken.listen()
        env.setenv("BRIDGE_METRICS_PORT", str(taken.getsockname()[1]))
        assert main(["run"]) == 2
    err = _plain(capsys.readouterr().err)
    assert err.count("\n") == 1
    assert "BRIDGE_METRICS_PORT" in err and "address already in use" in err


def test_reconnect_defaults_yield_to_the_pass_through(env: pytest.MonkeyPatch) -> None:
    common = load(KafkaSettings).librdkafka_common()
    assert common["metadata.recovery.strategy"] == "none"
    assert common["reconnect.backoff.max.ms"] == 2000
    env.setenv("BRIDGE_KAFKA_CONFIG", '{"metadata.recovery.strategy": "rebootstrap"}')
    assert load(KafkaSettings).librdkafka_common()["metadata.recovery.strategy"] == "rebootstrap"


def test_plain_http_is_refused_unless_allowed(env: pytest.MonkeyPatch) -> None:
    env.setenv("BRIDGE_TALON_BASE_URL", "http://acme.talon.one")
    with pytest.raises(ConfigError, match="BRIDGE_TALON_BASE_URL: is plain http") as info:
        load(Settings)
    assert "BRIDGE_TALON_ALLOW_INSECURE_HTTP" in info.value.reason
    env.setenv("BRIDGE_TALON_ALLOW_INSECURE_HTTP", "true")
    assert load(Settings).talon_base_url == "http://acme.talon.one"


@pytest.mark.parametrize(
    ("prop", "where"),
    [
        ("sasl.password", "BRIDGE_KAFKA_SASL_PASSWORD"),
        ("ssl.key.password", "BRIDGE_KAFKA_SSL_KEY_PASSWORD"),
        ("ssl.keystore.password", "BRIDGE_KAFKA_SECRET_CONFIG"),
        ("sasl.oauthbearer.client.secret", "BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET"),
        ("ssl.key.pem", "BRIDGE_KAFKA_SECRET_CONFIG"),
        ("sasl.jaas.config", "BRIDGE_KAFKA_SECRET_CONFIG"),
    ],
)
def test_secret_properties_are_refused_in_the_plain_pass_through(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], prop: str, where: str
) -> None:
    env.setenv("BRIDGE_KAFKA_CONFIG", f'{{"{prop}": "hunter2-secret"}}')
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "BRIDGE_KAFKA_CONFIG" in err and prop in err and where in err
    assert "hunter2-secret" not in err


def test_secret_properties_come_from_the_secret_config_file(
    env: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    (tmp_path / "BRIDGE_KAFKA_SECRET_CONFIG").write_text(  # type: ignore[operator]
        '{"sasl.oauthbearer.client.secret": "oauth-913"}'
    )
    env.setenv("BRIDGE_SECRETS_DIR", str(tmp_path))
    env.setenv("BRIDGE_KAFKA_CONFIG", '{"sasl.oauthbearer.client.id": "bridge"}')
    s = load(Settings)
    assert "oauth-913" not in repr(s)
    conf = s.librdkafka_common()
    assert conf["sasl.oauthbearer.client.secret"] == "oauth-913"
    assert conf["sasl.oauthbearer.client.id"] == "bridge"


@pytest.mark.parametrize("value", ["not json", '["a"]', '{"a": {"nested": 1}}'])
def test_secret_config_must_be_a_json_object(env: pytest.MonkeyPatch, value: str) -> None:
    env.setenv("BRIDGE_KAFKA_SECRET_CONFIG", value)
    with pytest.raises(ConfigError) as info:
        load(Settings)
    assert info.value.setting == "BRIDGE_KAFKA_SECRET_CONFIG"


def test_every_problem_is_named_at_once(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.delenv("BRIDGE_TALON_API_KEY")
    env.setenv("BRIDGE_MAX_IN_FLIGHT", "lots")
    env.setenv("BRIDGE_KAFKA_CONFIG", "not json")
    env.setenv("BRIDGE_ON_POISON", "ignore")
    with pytest.raises(ConfigError) as info:
        load(Settings)
    assert [name for name, _ in info.value.problems] == [
        "BRIDGE_KAFKA_CONFIG",
        "BRIDGE_TALON_API_KEY",
        "BRIDGE_MAX_IN_FLIGHT",
        "BRIDGE_ON_POISON",
    ]
    assert info.value.problems[0][1] == "is not valid JSON"
    assert info.value.problems[1][1] == (
        "is required but not set (or set BRIDGE_APPLICATIONS_FILE)"
    )
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for name, why in info.value.problems:
        assert f"{name}: {why}" in err


def test_a_misspelt_variable_is_named_with_the_closest_setting(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv("BRIDGE_MAX_INFLIGHT", "3")
    env.setenv("BRIDGE_ZZZ", "1")
    env.setenv("NOT_BRIDGE_X", "1")
    assert unknown_variables(__import__("os").environ) == [
        (
            "BRIDGE_MAX_INFLIGHT",
            "is not a setting of talon-bridge and is ignored; did you mean BRIDGE_MAX_IN_FLIGHT?",
        ),
        ("BRIDGE_ZZZ", "is not a setting of talon-bridge and is ignored"),
    ]
    with caplog.at_level(logging.WARNING, logger="bridge.settings"):
        warn_unknown()
    assert [r.getMessage() for r in caplog.records] == [
        "BRIDGE_MAX_INFLIGHT is not a setting of talon-bridge and is ignored; "
        "did you mean BRIDGE_MAX_IN_FLIGHT?",
        "BRIDGE_ZZZ is not a setting of talon-bridge and is ignored",
    ]
    # The secrets directory is read by `load` itself, not a field, and is no typo.
    env.setenv("BRIDGE_SECRETS_DIR", "/nonexistent")
    assert "BRIDGE_SECRETS_DIR" not in dict(unknown_variables(__import__("os").environ))


def test_a_misspelt_required_variable_is_named_in_the_error(env: pytest.MonkeyPatch) -> None:
    env.delenv("BRIDGE_TALON_API_KEY")
    env.setenv("BRIDGE_TALON_APIKEY", "secret-key-123")
    with pytest.raises(ConfigError) as info:
        load(Settings)
    assert info.value.problems == [
        ("BRIDGE_TALON_API_KEY", "is required but not set (or set BRIDGE_APPLICATIONS_FILE)"),
        (
            "BRIDGE_TALON_APIKEY",
            "is not a setting of talon-bridge and is ignored; did you mean BRIDGE_TALON_API_KEY?",
        ),
    ]
    assert "secret-key-123" not in str(info.value)


def test_every_setting_has_a_meaning() -> None:
    assert all(field.description for field in Settings.model_fields.values())


def test_run_help_lists_every_setting_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for variable, default, _ in reference():
        shown = "required" if default is None else f"default: {default or 'unset'}"
        assert f"  {variable}  ({shown})\n" in out
    assert "      API calls running at once, across sessions\n" in out


def test_readme_settings_table_is_the_model() -> None:
    """README's table, row by row, is `reference()`: names, defaults and meanings."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `BRIDGE_")
    ]
    expected = [
        [f"`{name}`", "(required)" if d is None else f"`{d}`" if d else "", meaning]
        for name, d, meaning in reference()
    ]
    table = "\n".join(f"| {' | '.join(row)} |" for row in expected)
    assert rows == expected, f"README's settings table should read:\n{table}"
