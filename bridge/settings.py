"""Typed settings, read from `BRIDGE_*` environment variables (and mounted secret files).

Two layers: `KafkaSettings` is all that Kafka-only commands (`produce`, `replay`) need;
`Settings` adds the Talon.One and worker runtime settings used by `run`.

librdkafka pass-through: `BRIDGE_KAFKA_CONFIG` takes a JSON object of librdkafka properties,
e.g. `{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}`. It is plain
configuration (a ConfigMap, `repr`), so secret-bearing properties are refused there: the SASL
password, OIDC client secret and SSL key password have typed secret fields, and any other
secret property (a PEM private key, ...) goes in `BRIDGE_KAFKA_SECRET_CONFIG`, a JSON object
like the pass-through that is kept secret (usually a secret file).
Secret files, one per setting and named like its variable (e.g. `BRIDGE_TALON_API_KEY`), are
read from `BRIDGE_SECRETS_DIR` (default `/var/run/secrets/talon-bridge`) when it exists.
Properties the bridge relies on for correctness are enforced on top (see `kafka_io`).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import orjson
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from bridge.errors import ConfigError

__all__ = ["ENV_PREFIX", "KafkaSettings", "Settings", "is_secret_property", "load"]

ENV_PREFIX = "BRIDGE_"
SECRETS_DIR = "/var/run/secrets/talon-bridge"

Encoding = Literal["single-object", "confluent"]
SubjectStrategy = Literal["topic", "record", "topic-record"]


class KafkaSettings(BaseSettings):
    """Where the records live and how they are encoded."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    kafka_bootstrap_servers: str = Field(min_length=1, description="host:port[,host:port...]")
    input_topics: Annotated[list[str], NoDecode] = Field(default=["talon.commands"], min_length=1)
    output_topic: str = Field(default="talon.effects", min_length=1)
    dlq_topic: str = Field(default="talon.commands.dlq", min_length=1)
    parking_topic: str = Field(default="talon.bridge.parked", min_length=1)
    group_id: str = Field(default="talon-bridge", min_length=1)
    kafka_config: dict[str, str | int | float | bool] = Field(default_factory=dict)
    kafka_secret_config: SecretStr | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_sasl_oauthbearer_client_secret: SecretStr | None = None
    encoding: Encoding = "single-object"
    schema_registry_url: str | None = None
    schema_registry_timeout: float = Field(default=5.0, gt=0)
    schema_registry_subject_strategy: SubjectStrategy = "topic"
    schema_registry_ca_location: str | None = None
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None
    schema_registry_bearer_token: SecretStr | None = None
    schema_registry_logical_cluster: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"

    @field_validator("input_topics", mode="before")
    @classmethod
    def _split_topics(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("kafka_config")
    @classmethod
    def _no_secret_properties(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in sorted(value):
            if is_secret_property(name):
                where = _TYPED_SECRETS.get(name, f"{ENV_PREFIX}KAFKA_SECRET_CONFIG")
                raise ValueError(f"{name} is a secret: set it in {where} (a secret file) instead")
        return value

    @field_validator("kafka_secret_config")
    @classmethod
    def _secret_json(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        try:
            parsed = orjson.loads(value.get_secret_value())
        except orjson.JSONDecodeError:
            raise ValueError("is not valid JSON") from None
        scalars = (str, int, float, bool)
        if not isinstance(parsed, dict) or not all(isinstance(v, scalars) for v in parsed.values()):
            raise ValueError("must be a JSON object of librdkafka properties")
        return value

    @field_validator("schema_registry_url")
    @classmethod
    def _registry_url(cls, value: str | None) -> str | None:
        for url in (value or "").split(","):
            if "@" in urlsplit(url.strip()).netloc:
                raise ValueError(
                    "holds credentials; set them as secrets instead: "
                    f"{ENV_PREFIX}SCHEMA_REGISTRY_USERNAME and {ENV_PREFIX}SCHEMA_REGISTRY_PASSWORD"
                )
        return value

    @field_validator("schema_registry_password")
    @classmethod
    def _registry_basic_auth(cls, value: SecretStr | None, info: ValidationInfo) -> Any:
        if (value is None) != (info.data.get("schema_registry_username") is None):
            raise ValueError(f"and {ENV_PREFIX}SCHEMA_REGISTRY_USERNAME go together (basic auth)")
        return value

    @field_validator("schema_registry_bearer_token")
    @classmethod
    def _registry_one_auth(cls, value: SecretStr | None, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("schema_registry_password") is not None:
            raise ValueError(f"and {ENV_PREFIX}SCHEMA_REGISTRY_PASSWORD exclude each other")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def librdkafka_common(self) -> dict[str, str | int | float | bool]:
        """Connection properties shared by every client, pass-through first, typed on top."""
        conf: dict[str, str | int | float | bool] = {
            # librdkafka's default, "rebootstrap", drops and re-adds the bootstrap brokers
            # while all brokers are down, which resets their reconnect backoff: about ten
            # connection attempts a second per client for as long as an outage lasts.
            "metadata.recovery.strategy": "none",
            # With the backoff in force, a broker that comes back is found within 2 s
            # (librdkafka's default ceiling is 10 s).
            "reconnect.backoff.max.ms": 2000,
            **self.kafka_config,
        }
        if self.kafka_secret_config is not None:
            conf.update(orjson.loads(self.kafka_secret_config.get_secret_value()))
        conf["bootstrap.servers"] = self.kafka_bootstrap_servers
        if self.kafka_sasl_username is not None:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password is not None:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_key_password is not None:
            conf["ssl.key.password"] = self.kafka_ssl_key_password.get_secret_value()
        if self.kafka_sasl_oauthbearer_client_secret is not None:
            secret = self.kafka_sasl_oauthbearer_client_secret.get_secret_value()
            conf["sasl.oauthbearer.client.secret"] = secret
        return conf


class Settings(KafkaSettings):
    """Everything the worker needs."""

    # Before the base URL, whose validator reads it.
    talon_allow_insecure_http: bool = False
    talon_base_url: str = Field(
        min_length=1, description="e.g. https://acme.europe-west1.talon.one"
    )
    talon_api_key: SecretStr
    talon_connect_timeout: float = Field(default=2.0, gt=0)
    talon_read_timeout: float = Field(default=5.0, gt=0)
    talon_pool_timeout: float = Field(default=5.0, gt=0)
    talon_call_timeout: float = Field(default=10.0, gt=0)
    talon_idempotency_keys: bool = True
    talon_http_engine: Literal["reqwest", "aiohttp"] = "reqwest"

    max_in_flight: int = Field(default=256, ge=1, le=10_000)
    max_buffered_records: int = Field(default=5_000, ge=1)
    drain_timeout: float = Field(default=30.0, gt=0)
    commit_interval: float = Field(default=1.0, gt=0)
    skip_empty_effects: bool = False

    retry_max_attempts: int = Field(default=10, ge=1)
    retry_max_elapsed: float = Field(default=300.0, gt=0)
    retry_base_delay: float = Field(default=0.1, gt=0)
    retry_max_delay: float = Field(default=30.0, gt=0)
    on_poison: Literal["park", "skip"] = "park"
    exactly_once: bool = False
    transactional_id: str | None = None  # exactly-once only; default: unique per process

    metrics_port: int = Field(default=9100, ge=0, le=65535)
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    @field_validator("event_loop")
    @classmethod
    def _loop_installed(cls, value: str) -> str:
        if value == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError("uvloop is not installed on this platform; set asyncio")
        return value

    @field_validator("talon_base_url")
    @classmethod
    def _base_url(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if "@" in urlsplit(value).netloc:
            raise ValueError(f"holds credentials; the API key goes in {ENV_PREFIX}TALON_API_KEY")
        if value.startswith("http://") and not info.data.get("talon_allow_insecure_http"):
            raise ValueError(
                "is plain http, which sends the API key in clear text; use https "
                f"(or set {ENV_PREFIX}TALON_ALLOW_INSECURE_HTTP=true for a local simulator)"
            )
        return value


# librdkafka properties whose values are credentials (plus Java's JAAS line, which embeds them).
_SECRET_SUFFIXES = (".password", ".secret", ".passphrase", ".key.pem")
_SECRET_NAMES = frozenset({"sasl.jaas.config"})
_TYPED_SECRETS = {
    "sasl.password": f"{ENV_PREFIX}KAFKA_SASL_PASSWORD",
    "ssl.key.password": f"{ENV_PREFIX}KAFKA_SSL_KEY_PASSWORD",
    "sasl.oauthbearer.client.secret": f"{ENV_PREFIX}KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
}


def is_secret_property(name: str) -> bool:
    """Whether librdkafka property `name` holds a credential (e.g. ``sasl.password``,
    ``sasl.oauthbearer.client.secret``, ``ssl.key.pem``)."""
    lowered = name.strip().lower()
    return lowered.endswith(_SECRET_SUFFIXES) or lowered in _SECRET_NAMES


def _env_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + str(loc[0]).upper() if loc else ENV_PREFIX + "*"


T = TypeVar("T", bound=KafkaSettings)


def load(cls: type[T], overrides: Mapping[str, Any] | None = None) -> T:
    """Build settings from the environment, turning the first problem into a `ConfigError`."""
    secrets_dir = os.environ.get(ENV_PREFIX + "SECRETS_DIR", SECRETS_DIR)
    kwargs: dict[str, Any] = dict(overrides or {})
    if os.path.isdir(secrets_dir):
        kwargs["_secrets_dir"] = secrets_dir
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"]
        if first["type"] == "missing":
            message = "is required but not set"
        elif first["type"] == "value_error":
            message = str(first["ctx"]["error"])  # without pydantic's "Value error, " prefix
        raise ConfigError(_env_name(first["loc"]), message) from None
    except SettingsError as exc:
        # Raised for values that must be JSON (e.g. BRIDGE_KAFKA_CONFIG) but are not.
        match = re.search(r'field "([a-z_]+)"', str(exc))
        name = ENV_PREFIX + match.group(1).upper() if match else ENV_PREFIX + "*"
        raise ConfigError(name, "is not valid JSON") from None
