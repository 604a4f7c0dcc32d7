"""Talking to a real Schema Registry in tests: its REST API, and Command schema versions.

The REST calls are plain HTTP on purpose: they check what the registry holds without going
through the client the bridge itself uses.
"""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import httpx

from bridge.avro.mapping import command_to_avro
from bridge.avro.schemas import COMMAND, bundled_schemas, get_schema
from bridge.commands import Command

_CONTENT_TYPE = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


def set_compatibility(url: str, subject: str, level: str) -> None:
    r = httpx.put(f"{url}/config/{subject}", json={"compatibility": level}, headers=_CONTENT_TYPE)
    r.raise_for_status()


def register(url: str, subject: str, schema: str) -> int:
    """Register an Avro schema (JSON text) under `subject`; returns its id."""
    r = httpx.post(
        f"{url}/subjects/{subject}/versions", json={"schema": schema}, headers=_CONTENT_TYPE
    )
    r.raise_for_status()
    schema_id: int = r.json()["id"]
    return schema_id


def versions(url: str, subject: str) -> list[int]:
    r = httpx.get(f"{url}/subjects/{subject}/versions")
    r.raise_for_status()
    found: list[int] = r.json()
    return found


def schema_by_id(url: str, schema_id: int) -> dict[str, Any]:
    r = httpx.get(f"{url}/schemas/ids/{schema_id}")
    r.raise_for_status()
    parsed: dict[str, Any] = json.loads(r.json()["schema"])
    return parsed


def older_command_schema() -> str:
    """A Command schema the current one can read records of (BACKWARD compatible): the newest
    file in schemas/avro/previous/ if there is one, else the current schema without its
    optional `source` field."""
    full_name = get_schema(COMMAND).full_name
    previous = [s for s in bundled_schemas().previous if s.full_name == full_name]
    if previous:
        return previous[-1].to_json()
    definition = json.loads(get_schema(COMMAND).to_json())
    definition["fields"] = [f for f in definition["fields"] if f["name"] != "source"]
    return json.dumps(definition)


def incompatible_command_schema() -> str:
    """A Command schema whose records the current one cannot read: `occurredAt` is a string."""
    definition = json.loads(get_schema(COMMAND).to_json())
    for field in definition["fields"]:
        if field["name"] == "occurredAt":
            field["type"] = "string"
    return json.dumps(definition)


def confluent_record(cmd: Command, schema: str, schema_id: int) -> bytes:
    """`cmd` in the Confluent wire format, written with writer schema `schema` (id
    `schema_id`): what a producer still on that schema version sends."""
    parsed = fastavro.parse_schema(json.loads(schema))
    field_names = {f["name"] for f in json.loads(schema)["fields"]}
    datum = {k: v for k, v in command_to_avro(cmd).items() if k in field_names}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, datum)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()
