"""Reading one Avro datum with fastavro, safely: every failure is a `DecodeError`.

Owns how a writer schema is prepared for reading (`parse_wire`, `Writer`), the check that
refuses writer schemas whose arrays could make a few bytes hold the event loop
(`has_empty_items`), and the mapping of fastavro's many failure modes to decode reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import Any, cast

from fastavro import parse_schema, schemaless_reader
from fastavro.read import SchemaResolutionError

from bridge.avro.schemas import AvroSchema, make_schema
from bridge.errors import DecodeError

__all__ = ["Writer", "has_empty_items", "parse_wire", "read", "readable_writer", "unreadable"]


@dataclass(frozen=True, slots=True)
class Writer:
    """How to read bytes of one writer schema: its parse, and the reader to resolve into."""

    schema: dict[str, Any]
    reader: dict[str, Any] | None


def parse_wire(definition: dict[str, Any]) -> dict[str, Any]:
    """`definition` parsed for fastavro, as records are read and written with it."""
    return cast(dict[str, Any], parse_schema(_strip_logical_types(definition)))


def _strip_logical_types(node: Any) -> Any:
    # Logical types do not change the binary encoding; without them fastavro hands back the
    # plain long of a timestamp-millis instead of a datetime we would convert straight back.
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


def readable_writer(
    schema_id: int, schema_type: str | None, references: bool, text: str | None, expected: str
) -> AvroSchema:
    """The writer schema a registry holds under `schema_id`, if `expected` records written
    with it can be read: an Avro version of that record, self-contained, and safe to read.

    Raises:
        DecodeError: ``incompatible-schema``, saying why not.
    """
    if (schema_type or "AVRO") != "AVRO":
        raise DecodeError("incompatible-schema", f"schema id {schema_id} is {schema_type}")
    if references:
        raise DecodeError(
            "incompatible-schema", f"schema id {schema_id} uses unsupported references"
        )
    try:
        schema = make_schema(text or "")
    except ValueError as exc:
        raise DecodeError(
            "incompatible-schema", f"schema id {schema_id} is not an Avro record schema"
        ) from exc
    if schema.full_name != expected:
        raise DecodeError(
            "incompatible-schema",
            f"schema id {schema_id} is {schema.full_name}, not {expected}",
        )
    if has_empty_items(schema.parsed):
        raise DecodeError(
            "incompatible-schema",
            f"schema id {schema_id} has an array of items that take no bytes",
        )
    return schema


def has_empty_items(schema: Any) -> bool:
    """Whether a parsed schema has an array whose items take no bytes (null, empty records).

    Such a writer schema, served by the registry, lets a few bytes claim 2**62 items that
    fastavro then reads (or skips, for a field the reader does not have) one by one, holding
    the event loop for good. Every other item type takes at least a byte, so a record's own
    length bounds its arrays.
    """
    named: dict[str, bool] = {}

    def empty(node: Any) -> bool:
        if isinstance(node, str):
            return node == "null" or named.get(node, False)
        if isinstance(node, list):
            for branch in node:
                empty(branch)
            return False  # a union's branch index takes a byte
        kind = node.get("type")
        if kind in ("record", "error"):
            named[node["name"]] = False  # until its fields are known (recursive types)
            fields = [empty(f["type"]) for f in node.get("fields", [])]
            named[node["name"]] = all(fields)
            return named[node["name"]]
        if kind == "fixed":
            named[node["name"]] = node.get("size") == 0
            return named[node["name"]]
        if kind == "array":
            if empty(node["items"]):
                found.append(node)
            return False  # its block count takes a byte
        if kind == "map":
            empty(node["values"])
            return False  # every entry has a key
        if kind == "enum":
            return False
        return empty(kind) if isinstance(kind, (dict, list, str)) else False

    found: list[Any] = []
    empty(schema)
    return bool(found)


def unreadable(name: str, exc: Exception) -> DecodeError:
    """The DecodeError standing for any other failure to read a `name` record."""
    # A record's bytes must never fail its consumer in any other way than a DecodeError: the
    # caller dead-letters those and moves on. Only the type is named, never the content.
    return DecodeError("invalid", f"{name} is unreadable ({type(exc).__name__})")


def read(name: str, data: bytes, offset: int, writer: Writer) -> dict[str, Any]:
    buf = BytesIO(data)
    buf.seek(offset)
    try:
        datum = schemaless_reader(buf, writer.schema, writer.reader)
    except (EOFError, IndexError) as exc:
        # fastavro signals running out of bytes with either; an IndexError before the end is
        # a union branch or enum symbol that does not exist.
        if buf.tell() >= len(data):
            raise DecodeError("truncated", f"{name} ends early") from exc
        raise DecodeError(
            "invalid", f"{name} names a union branch or symbol that does not exist"
        ) from exc
    except SchemaResolutionError as exc:
        raise DecodeError(
            "incompatible-schema", f"{name} holds a value the reader schema cannot resolve"
        ) from exc
    except Exception as exc:  # garbage input makes fastavro fail in many different ways
        raise DecodeError("invalid", f"{name} is not valid Avro ({type(exc).__name__})") from exc
    if buf.tell() != len(data):
        raise DecodeError("trailing-bytes", f"{len(data) - buf.tell()} bytes after the {name}")
    if not isinstance(datum, dict):
        raise DecodeError("invalid", f"{name} is not a record")
    return datum
