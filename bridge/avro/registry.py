"""The Schema Registry client as the settings describe it, and the subjects schemas go under.

Every request has a timeout (`BRIDGE_SCHEMA_REGISTRY_TIMEOUT`) and at most one retry: the
vendor client's defaults (no timeout, three retries with up to 20 s between them) let one
registry that accepts connections and never answers hold a caller forever. Credentials come
from typed secret settings (basic auth, or a bearer token), never from the URL.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from bridge.errors import ConfigError
from bridge.settings import ENV_PREFIX, KafkaSettings, SubjectStrategy

if TYPE_CHECKING:
    from bridge.kafka.registry_client import SchemaRegistryClient

__all__ = ["client_config", "new_client", "subject_name"]

# One retry, soon: callers retry with their own backoff (the worker holds the record's session).
_MAX_RETRIES = 1
_RETRY_WAIT_MS = 200


def subject_name(strategy: SubjectStrategy, topic: str, record_name: str) -> str:
    """The subject of record `record_name` (full name) on `topic`, as Confluent's
    TopicNameStrategy, RecordNameStrategy and TopicRecordNameStrategy name it."""
    if strategy == "topic":
        return f"{topic}-value"
    if strategy == "record":
        return record_name
    return f"{topic}-{record_name}"


def client_config(settings: KafkaSettings, url: str | None = None) -> dict[str, Any]:
    """The vendor client's configuration for `url` (default: the configured registry).

    Raises:
        ConfigError: The CA bundle is not a readable file or folder.
    """
    conf: dict[str, Any] = {
        "url": url or settings.schema_registry_url,
        "timeout": settings.schema_registry_timeout,
        "max.retries": _MAX_RETRIES,
        "retries.wait.ms": _RETRY_WAIT_MS,
        "retries.max.wait.ms": _RETRY_WAIT_MS,
    }
    ca = settings.schema_registry_ca_location
    if ca is not None:
        if not os.access(ca, os.R_OK):
            raise ConfigError(f"{ENV_PREFIX}SCHEMA_REGISTRY_CA_LOCATION", f"cannot read {ca}")
        conf["ssl.ca.location"] = ca
    if settings.schema_registry_password is not None:
        password = settings.schema_registry_password.get_secret_value()
        conf["basic.auth.user.info"] = f"{settings.schema_registry_username}:{password}"
    if settings.schema_registry_bearer_token is not None:
        conf["bearer.auth.credentials.source"] = "STATIC_TOKEN"
        conf["bearer.auth.token"] = settings.schema_registry_bearer_token.get_secret_value()
        # Confluent Cloud routes on it; the vendor client insists on one, empty or not.
        conf["bearer.auth.logical.cluster"] = settings.schema_registry_logical_cluster or ""
    return conf


def new_client(settings: KafkaSettings, url: str | None = None) -> SchemaRegistryClient:
    """A registry client for `url` (default: the configured registry); the caller closes it.

    Raises:
        ConfigError: See `client_config`.
    """
    # Imported on demand: the registry client's HTTP stack takes longer to import than the
    # rest of the bridge, and single-object deployments never need it.
    from bridge.kafka.registry_client import new_registry_client

    return new_registry_client(client_config(settings, url))
