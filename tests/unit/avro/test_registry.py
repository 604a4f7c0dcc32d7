"""The Schema Registry client built from settings: timeouts, credentials, CA bundle."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bridge.avro.codec import Codec, RegistryError
from bridge.avro.registry import client_config
from bridge.environment import load
from bridge.errors import ConfigError, DecodeError
from bridge.settings import KafkaSettings
from tests.support.environment import clean_environment

# A Confluent-framed record naming schema id 7, which no codec has cached.
FRAMED = b"\x00\x00\x00\x00\x07\x02"


def settings(**values: Any) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap_servers="127.0.0.1:9092", **values)


@pytest.fixture
def hanging_registry() -> Iterator[str]:
    """Accepts connections (the kernel completes them) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def recording_registry() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Answers every request 404 (no such schema), keeping the request headers."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            body = b'{"error_code": 40403, "message": "Schema not found"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_registry_that_never_answers_fails_the_fetch(hanging_registry: str) -> None:
    codec = Codec.from_settings(
        settings(schema_registry_url=hanging_registry, schema_registry_timeout=0.2)
    )
    outcome: list[BaseException] = []

    def fetch() -> None:
        try:
            codec.fetch_command_schema(FRAMED)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    # A thread, so that a fetch without a timeout fails this test instead of hanging it.
    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    thread.join(60)
    codec.close()
    assert not thread.is_alive(), "the registry call did not time out"
    (error,) = outcome
    assert isinstance(error, RegistryError) and error.retryable


@pytest.mark.parametrize(
    ("values", "authorization"),
    [
        (
            {"schema_registry_username": "sr-user", "schema_registry_password": "sr-pass"},
            "Basic " + base64.b64encode(b"sr-user:sr-pass").decode(),
        ),
        ({"schema_registry_bearer_token": "tok-123"}, "Bearer tok-123"),
        ({}, None),
    ],
)
def test_credentials_are_sent(
    recording_registry: tuple[str, list[dict[str, str]]],
    values: dict[str, Any],
    authorization: str | None,
) -> None:
    url, seen = recording_registry
    codec = Codec.from_settings(settings(schema_registry_url=url, **values))
    try:
        with pytest.raises(DecodeError, match="not in the registry"):
            codec.decode_command(FRAMED)
    finally:
        codec.close()
    assert seen and seen[0].get("Authorization") == authorization


def test_secret_settings_stay_out_of_repr() -> None:
    s = settings(
        schema_registry_url="https://sr.example",
        schema_registry_username="sr-user",
        schema_registry_password="sr-pass-913",
    )
    assert "sr-pass-913" not in repr(s)
    assert client_config(s)["basic.auth.user.info"] == "sr-user:sr-pass-913"


def test_ca_bundle_is_handed_to_the_client(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until a TLS handshake")
    s = settings(schema_registry_url="https://sr.example", schema_registry_ca_location=str(ca))
    assert client_config(s)["ssl.ca.location"] == str(ca)
    missing = settings(
        schema_registry_url="https://sr.example",
        schema_registry_ca_location=str(tmp_path / "nope.pem"),
    )
    with pytest.raises(ConfigError) as err:
        client_config(missing)
    assert err.value.setting == "BRIDGE_SCHEMA_REGISTRY_CA_LOCATION"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return clean_environment(monkeypatch, {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"})


@pytest.mark.parametrize(
    ("variables", "setting"),
    [
        (
            {"BRIDGE_SCHEMA_REGISTRY_URL": "https://user:pw-in-url@sr.example"},
            "BRIDGE_SCHEMA_REGISTRY_URL",
        ),
        (
            {"BRIDGE_SCHEMA_REGISTRY_URL": "https://a.example,https://user:pw@b.example"},
            "BRIDGE_SCHEMA_REGISTRY_URL",
        ),
        ({"BRIDGE_SCHEMA_REGISTRY_PASSWORD": "pw"}, "BRIDGE_SCHEMA_REGISTRY_PASSWORD"),
        ({"BRIDGE_SCHEMA_REGISTRY_USERNAME": "u"}, "BRIDGE_SCHEMA_REGISTRY_PASSWORD"),
        (
            {
                "BRIDGE_SCHEMA_REGISTRY_USERNAME": "u",
                "BRIDGE_SCHEMA_REGISTRY_PASSWORD": "pw",
                "BRIDGE_SCHEMA_REGISTRY_BEARER_TOKEN": "t",
            },
            "BRIDGE_SCHEMA_REGISTRY_BEARER_TOKEN",
        ),
        (
            {"BRIDGE_SCHEMA_REGISTRY_SUBJECT_STRATEGY": "io"},
            "BRIDGE_SCHEMA_REGISTRY_SUBJECT_STRATEGY",
        ),
        ({"BRIDGE_SCHEMA_REGISTRY_TIMEOUT": "0"}, "BRIDGE_SCHEMA_REGISTRY_TIMEOUT"),
    ],
)
def test_bad_registry_settings_name_the_variable(
    env: pytest.MonkeyPatch, variables: dict[str, str], setting: str
) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load(KafkaSettings)
    assert err.value.setting == setting
    assert "pw" not in str(err.value)


def test_registry_password_from_a_secret_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "BRIDGE_SCHEMA_REGISTRY_PASSWORD").write_text("from-file")
    env.setenv("BRIDGE_SECRETS_DIR", str(tmp_path))
    env.setenv("BRIDGE_SCHEMA_REGISTRY_USERNAME", "sr-user")
    loaded = load(KafkaSettings)
    assert loaded.schema_registry_password is not None
    assert loaded.schema_registry_password.get_secret_value() == "from-file"
