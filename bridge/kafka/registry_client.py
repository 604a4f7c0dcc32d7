"""The vendor's Schema Registry client, as the rest of the bridge sees it.

Import this module on demand (inside the function that needs it, or under TYPE_CHECKING):
the registry client's HTTP stack takes longer to import than the rest of the bridge, and
single-object deployments never need it.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

__all__ = ["Schema", "SchemaRegistryClient", "SchemaRegistryError", "new_registry_client"]


def new_registry_client(conf: dict[str, Any]) -> SchemaRegistryClient:
    """A client for `conf` (the vendor's configuration keys); the caller closes it."""
    return SchemaRegistryClient.new_client(conf)
