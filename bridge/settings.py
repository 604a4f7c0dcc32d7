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
Properties the bridge relies on for correctness are enforced on top (see `bridge.kafka.config`).
Reading them from the environment, and the settings reference, are `bridge.environment`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bridge import applications as apps
from bridge.passthrough import check_pass_through
from bridge.types import EventsApi, HttpEngine, LogFormat

__all__ = ["ENV_PREFIX", "SECRETS_DIR", "KafkaSettings", "Settings"]

log = logging.getLogger(__name__)

ENV_PREFIX = "BRIDGE_"
SECRETS_DIR = "/var/run/secrets/talon-bridge"

Encoding = Literal["single-object", "confluent"]
SubjectStrategy = Literal["topic", "record", "topic-record"]
_INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,249}")


class KafkaSettings(BaseSettings):
    """Where the records live and how they are encoded."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    kafka_bootstrap_servers: str = Field(
        min_length=1, description="Kafka bootstrap servers, `host:port[,host:port...]`"
    )
    input_topics: Annotated[list[str], NoDecode] = Field(
        default=["talon.commands"], min_length=1, description="comma-separated input topics"
    )
    output_topic: str = Field(
        default="talon.effects", min_length=1, description="effects output topic"
    )
    dlq_topic: str = Field(
        default="talon.commands.dlq", min_length=1, description="dead-letter topic"
    )
    parking_topic: str = Field(
        default="talon.bridge.parked",
        min_length=1,
        description="compacted topic of parked sessions (`park` mode checks it at start)",
    )
    group_id: str = Field(default="talon-bridge", min_length=1, description="consumer group")
    # KIP-848's protocol lets a revoking member commit while others join or leave.
    group_protocol: Literal["classic", "consumer"] = Field(
        default="classic",
        description="consumer-group protocol: `classic`, or `consumer` (KIP-848, Kafka 4.0+ "
        "brokers), whose handover commits go through even while other members join or leave",
    )
    # KIP-345: a restarted member with the same id takes its partitions back, no rebalance.
    group_instance_id: str | None = Field(
        default=None,
        description="static group membership (`group.instance.id`): a name unique in the "
        "group and stable across restarts (e.g. a StatefulSet pod name), so a restart moves no "
        "partitions; unset: dynamic membership. A stopped member's partitions wait for it "
        "until the session timeout (see docs/deployment.md)",
    )
    # Decoded by `_json_object` so a malformed value is reported with every other problem.
    kafka_config: Annotated[dict[str, str | int | float | bool], NoDecode] = Field(
        default_factory=dict,
        description="JSON object of librdkafka properties passed through (SASL/SSL included); "
        "secret properties (`*.password`, `*.secret`, `*.passphrase`, `*.key.pem`, "
        "`sasl.jaas.config`) are refused here",
    )
    kafka_producer_config: Annotated[dict[str, str | int | float | bool], NoDecode] = Field(
        default_factory=dict,
        description="JSON object of librdkafka properties for the producers only (e.g. "
        "`linger.ms`), on top of BRIDGE_KAFKA_CONFIG; secret properties are refused here",
    )
    kafka_consumer_config: Annotated[dict[str, str | int | float | bool], NoDecode] = Field(
        default_factory=dict,
        description="JSON object of librdkafka properties for the worker's input consumer only "
        "(e.g. `fetch.wait.max.ms`), on top of BRIDGE_KAFKA_CONFIG; secrets are refused here",
    )
    kafka_secret_config: SecretStr | None = Field(
        default=None,
        description="JSON object of secret librdkafka properties without a variable of their "
        'own, e.g. `{"ssl.keystore.password": "..."}` (secret, usually a secret file)',
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (secret)"
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="SSL key password (secret)"
    )
    kafka_sasl_oauthbearer_client_secret: SecretStr | None = Field(
        default=None,
        description="OIDC client secret for `sasl.mechanism=OAUTHBEARER` with "
        "`sasl.oauthbearer.method=oidc` (secret)",
    )
    encoding: Encoding = Field(
        default="single-object",
        description="`single-object` (Avro single-object encoding) or `confluent` "
        "(Schema Registry wire format)",
    )
    schema_registry_url: str | None = Field(
        default=None,
        description="Schema Registry for the `confluent` format (and for reading "
        "Confluent-framed records); credentials in it are refused",
    )
    schema_registry_timeout: float = Field(
        default=5.0, gt=0, description="seconds per registry request (one retry)"
    )
    schema_registry_subject_strategy: SubjectStrategy = Field(
        default="topic",
        description="`topic` (`<topic>-value`), `record` (the record's full name) or "
        "`topic-record` (`<topic>-<record>`)",
    )
    schema_registry_ca_location: str | None = Field(
        default=None,
        description="CA bundle (file or folder) that signs the registry's certificate; "
        "unset: the system CAs",
    )
    schema_registry_username: str | None = Field(
        default=None, description="registry basic auth user name"
    )
    schema_registry_password: SecretStr | None = Field(
        default=None, description="registry basic auth password (secret)"
    )
    schema_registry_bearer_token: SecretStr | None = Field(
        default=None, description="registry bearer token (secret) instead of basic auth"
    )
    schema_registry_logical_cluster: str | None = Field(
        default=None, description="the registry's logical cluster ID, for Confluent Cloud"
    )
    application_header: str = Field(
        default="talon-application",
        min_length=1,
        description="record header naming the application a record goes to (with "
        "`BRIDGE_APPLICATIONS_FILE`; it beats the topic)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="`DEBUG`, `INFO`, `WARNING` or `ERROR`"
    )
    log_format: LogFormat = Field(
        default="auto", description="`auto` is JSON lines, or text on a terminal; or `json`, `text`"
    )

    @field_validator("input_topics", mode="before")
    @classmethod
    def _split_topics(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator(
        "kafka_config", "kafka_producer_config", "kafka_consumer_config", mode="before"
    )
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str | bytes):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("is not valid JSON") from None
        return value

    @field_validator("kafka_config", "kafka_producer_config", "kafka_consumer_config")
    @classmethod
    def _pass_through(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_pass_through(value, ENV_PREFIX)

    @field_validator("group_instance_id")
    @classmethod
    def _instance_id(cls, value: str | None) -> str | None:
        # Kafka's own rule for the id (JoinGroupRequest.validateGroupInstanceId), checked here
        # so a bad one stops the worker at start, naming the setting, not at its first join.
        if value is not None and (value in (".", "..") or _INSTANCE_ID.fullmatch(value) is None):
            raise ValueError(
                "must be 1 to 249 letters, digits, '.', '_' or '-' (and not '.' or '..'); "
                "unset it for dynamic membership"
            )
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

    def librdkafka_common(
        self, producer: bool = False, consumer: bool = False
    ) -> dict[str, str | int | float | bool]:
        """Connection properties of every client (`producer`, `consumer`: the worker's own
        pass-through too), typed on top."""
        conf: dict[str, str | int | float | bool] = {
            # librdkafka's default, "rebootstrap", drops and re-adds the bootstrap brokers
            # while all brokers are down, which resets their reconnect backoff: about ten
            # connection attempts a second per client for as long as an outage lasts.
            "metadata.recovery.strategy": "none",
            # With the backoff in force, a broker that comes back is found within 2 s
            # (librdkafka's default ceiling is 10 s).
            "reconnect.backoff.max.ms": 2000,
            **self.kafka_config,
            **(self.kafka_producer_config if producer else {}),
            **(self.kafka_consumer_config if consumer else {}),
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
    talon_allow_insecure_http: bool = Field(
        default=False,
        description="accept an `http://` base URL, which sends the API key in clear text (a "
        "local simulator only)",
    )
    # Before the base URL and key, which it makes optional.
    applications_file: Annotated[apps.ApplicationsTable | None, NoDecode] = Field(
        default=None,
        description="YAML or JSON routing table of several Talon.One applications (see "
        "docs/operations.md); unset: one, `default`, from the two settings below",
    )
    talon_base_url: str | None = Field(
        default=None,
        min_length=1,
        description="Talon.One deployment URL, e.g. `https://acme.europe-west1.talon.one` "
        "(required without `BRIDGE_APPLICATIONS_FILE`)",
    )
    talon_api_key: SecretStr | None = Field(
        default=None,
        description="Integration API key (secret, never logged; required without "
        "`BRIDGE_APPLICATIONS_FILE`)",
    )
    talon_connect_timeout: float = Field(
        default=2.0, gt=0, description="seconds to open a connection to Talon.One"
    )
    talon_read_timeout: float = Field(
        default=5.0, gt=0, description="seconds to wait for Talon.One's answer"
    )
    talon_pool_timeout: float = Field(
        default=5.0, gt=0, description="seconds to wait for a free connection"
    )
    talon_idle_timeout: float = Field(
        default=15.0,
        gt=0,
        description="seconds an idle connection to Talon.One is kept for reuse; keep it below "
        "the idle timeout of whatever closes connections on the way (a load balancer, a proxy)",
    )
    talon_call_timeout: float = Field(
        default=10.0,
        gt=0,
        description="seconds a whole call may take, from sending the request to the last byte "
        "of the answer (a server dripping its answer under the read timeout cannot hold it "
        "longer)",
    )
    talon_idempotency_keys: bool = Field(
        default=True,
        description="send an `Idempotency-Key` derived from each command's `eventId`",
    )
    talon_events_api: EventsApi = Field(
        default="v2",
        description="endpoint of `track_event` commands: `v2` (trackEventV2) or `v3` "
        "(trackEventV3, registered once per integrationId, which is the command's `eventId`)",
    )
    talon_http_engine: HttpEngine = Field(
        default="httptools",
        description="HTTP client underneath: `httptools` (HTTP/1.1 on the event loop: the least "
        "CPU), `reqwest` (pyreqwest, exchanges run outside the GIL) or `aiohttp`",
    )

    # Unset, nothing caps the group's calls but what Talon.One's 429s teach the pacer.
    talon_max_rps: float | None = Field(
        default=None,
        gt=0,
        description="Talon.One calls per second for the whole consumer group: each member "
        "takes the share of the input partitions it owns (unset: no cap)",
    )
    max_in_flight: int = Field(
        default=256, ge=1, le=10_000, description="API calls running at once, across sessions"
    )
    adaptive_in_flight: bool = Field(
        default=False,
        description="adapt the calls running at once to Talon.One's answers: fewer on 429s, "
        "503s, timeouts and rising latency, back up to `BRIDGE_MAX_IN_FLIGHT` when healthy",
    )
    max_buffered_records: int = Field(
        default=5_000, ge=1, description="records held in memory before partitions are paused"
    )
    max_queued_per_session: int = Field(
        default=1_000,
        ge=0,
        description="commands one session may have queued; past it the session's records go "
        "to the dead-letter topic (parked behind the first, in `park` mode) so a hot session "
        "cannot fill the buffer. 0: no limit",
    )
    max_in_flight_per_profile: int = Field(
        default=16,
        ge=0,
        description="API calls running at once for one customer profile (its sessions' "
        "commands wait past it). 0: no limit",
    )
    drain_timeout: float = Field(
        default=30.0,
        gt=0,
        description="seconds to let in-flight calls finish on revoke or shutdown",
    )
    commit_interval: float = Field(default=1.0, gt=0, description="seconds between offset commits")
    skip_empty_effects: bool = Field(
        default=False, description="publish no effects record for results without effects"
    )

    retry_max_attempts: int = Field(default=10, ge=1, description="attempts per command")
    retry_max_elapsed: float = Field(
        default=300.0, gt=0, description="seconds of retrying per command"
    )
    retry_base_delay: float = Field(
        default=0.1,
        gt=0,
        description="seconds before the first retry; capped exponential backoff, full jitter",
    )
    retry_max_delay: float = Field(
        default=30.0, gt=0, description="seconds between retries at most"
    )
    on_poison: Literal["park", "skip"] = Field(
        default="park", description="`park` a session behind its dead letter, or `skip` it"
    )
    exactly_once: bool = Field(
        default=False,
        description="effects and offsets in one Kafka transaction (see docs/architecture.md)",
    )
    transactional_id: str | None = Field(
        default=None,
        description="exactly-once only; unset, it is unique per process. A stable id (e.g. a "
        "StatefulSet pod name) lets a restarted worker fence its predecessor's open "
        "transaction at once",
    )

    metrics_port: int = Field(
        default=9100, ge=0, le=65535, description="port of `/metrics`, `/healthz`, `/readyz`"
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="worker processes in one pod, each a member of the consumer group, behind "
        "one metrics endpoint (see docs/deployment.md); 1 runs the worker in this process",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="`uvloop` (libuv; about a tenth less CPU per command, see "
        "docs/benchmarks.md) or `asyncio`, Python's own loop",
    )

    @field_validator("event_loop")
    @classmethod
    def _loop_installed(cls, value: str) -> str:
        if value == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError("uvloop is not installed on this platform; set asyncio")
        return value

    @field_validator("applications_file", "talon_base_url", "talon_api_key", mode="before")
    @classmethod
    def _applications(cls, value: Any, info: ValidationInfo) -> Any:
        return apps.application_setting(info.field_name or "", value, info.data)

    def applications(self) -> apps.ApplicationsTable:
        """The routing table, or one application, `default`, from the base URL and key."""
        return self.applications_file or apps.single_application(
            self.talon_base_url, self.talon_api_key
        )
