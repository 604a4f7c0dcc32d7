"""The bundled Avro schemas: where they live, parsed once, and their fingerprints.

The current schemas are `schemas/avro/*.avsc` in a checkout and `bridge/_schemas/*.avsc` in
the installed wheel. Older versions that records on Kafka may still carry go in a
`previous/` folder beside them; they are known writer schemas for decoding, never written.

Each schema is identified by the CRC-64-AVRO (Rabin) fingerprint of its Parsing Canonical
Form, the 8 bytes that follow ``C3 01`` in Avro single-object encoding.

The `talon-bridge schemas` subcommand is `bridge.tools.schemas`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

__all__ = [
    "COMMAND",
    "EFFECTS_EMITTED",
    "NAMESPACE",
    "PREVIOUS_DIR",
    "AvroSchema",
    "SchemaSet",
    "bundled_schemas",
    "fingerprint",
    "get_schema",
    "load_schemas",
    "make_schema",
    "schema_dir",
]

NAMESPACE = "one.talon.bridge"
COMMAND = "Command"
EFFECTS_EMITTED = "EffectsEmitted"

# The folder of older schema versions, beside the current ones.
PREVIOUS_DIR = "previous"


@dataclass(frozen=True, slots=True)
class AvroSchema:
    """One Avro record schema, parsed once, with its identity.

    Attributes:
        name: Short name: the record name (``Command``), or the file stem for older versions.
        full_name: Namespace-qualified record name, e.g. ``one.talon.bridge.Command``.
        definition: The schema JSON as written, docs included.
        parsed: `fastavro.parse_schema` of `definition`.
        canonical_form: The Avro Parsing Canonical Form.
        fingerprint: CRC-64-AVRO (Rabin) fingerprint of `canonical_form`.
    """

    name: str
    full_name: str
    definition: dict[str, Any]
    parsed: dict[str, Any]
    canonical_form: str
    fingerprint: int

    @property
    def fingerprint_bytes(self) -> bytes:
        """The fingerprint as it appears on the wire: 8 bytes, little-endian."""
        return self.fingerprint.to_bytes(8, "little")

    def to_json(self, *, indent: int | None = None) -> str:
        """The schema JSON (docs included): compact by default, or pretty with `indent`."""
        if indent is None:
            return json.dumps(self.definition, separators=(",", ":"), ensure_ascii=False)
        return json.dumps(self.definition, indent=indent, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class SchemaSet:
    """The current schemas by short name, and older writer versions still to be decoded."""

    current: Mapping[str, AvroSchema]
    previous: tuple[AvroSchema, ...] = ()

    def get(self, name: str) -> AvroSchema:
        """The current schema called `name` (short or full name).

        Raises:
            KeyError: No current schema has that name.
        """
        found = self.current.get(name)
        if found is not None:
            return found
        for schema in self.current.values():
            if schema.full_name == name:
                return schema
        raise KeyError(name)


def fingerprint(definition: Mapping[str, Any] | str) -> int:
    """CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form, as an unsigned integer.

    Args:
        definition: The schema as JSON text or as the decoded JSON object.
    """
    loaded = json.loads(definition) if isinstance(definition, str) else dict(definition)
    return _crc64(to_parsing_canonical_form(loaded))


def _crc64(canonical_form: str) -> int:
    # fastavro renders the Rabin value as its little-endian bytes in hex.
    digest = _fastavro_fingerprint(canonical_form, "CRC-64-AVRO")
    return int.from_bytes(bytes.fromhex(digest), "little")


def make_schema(definition: Mapping[str, Any] | str, name: str | None = None) -> AvroSchema:
    """Parse a record schema (a JSON string or its decoded form) into an `AvroSchema`.

    Args:
        definition: The schema, as JSON text or as the decoded JSON object.
        name: Short name to use; defaults to the record name.

    Raises:
        ValueError: The schema is not valid Avro or is not a named record.
    """
    loaded: Any = json.loads(definition) if isinstance(definition, str) else dict(definition)
    if not isinstance(loaded, dict) or loaded.get("type") != "record" or "name" not in loaded:
        raise ValueError("an Avro record schema is required")
    try:
        parsed = cast(dict[str, Any], fastavro.parse_schema(loaded))
        canonical = to_parsing_canonical_form(loaded)
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise ValueError(f"invalid Avro schema: {exc}") from exc
    full_name = str(parsed["name"])
    return AvroSchema(
        name=name or full_name.rpartition(".")[2],
        full_name=full_name,
        definition=loaded,
        parsed=parsed,
        canonical_form=canonical,
        fingerprint=_crc64(canonical),
    )


def schema_dir() -> Path:
    """Folder of the bundled `.avsc` files: the checkout's, else the installed wheel's."""
    package = Path(__file__).resolve().parents[1]  # bridge/, where the wheel puts _schemas
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "schemas" / "avro").is_dir():
        return checkout / "schemas" / "avro"
    return package / "_schemas"


def load_schemas(directory: Path | None = None) -> SchemaSet:
    """Read and parse every `.avsc` file in `directory` (default: `schema_dir()`).

    Raises:
        ValueError: A file is not a valid record schema, a current schema's record name
            differs from its file name, or an older version names no current schema.
    """
    root = schema_dir() if directory is None else directory
    current: dict[str, AvroSchema] = {}
    for path in sorted(root.glob("*.avsc")):
        schema = make_schema(path.read_text(encoding="utf-8"))
        if schema.name != path.stem:
            raise ValueError(f"{path.name} defines record {schema.name}, expected {path.stem}")
        current[schema.name] = schema
    full_names = {s.full_name for s in current.values()}
    previous: list[AvroSchema] = []
    for path in sorted((root / PREVIOUS_DIR).glob("*.avsc")):
        schema = make_schema(path.read_text(encoding="utf-8"), name=path.stem)
        if schema.full_name not in full_names:
            raise ValueError(f"{PREVIOUS_DIR}/{path.name} is a version of no current schema")
        previous.append(schema)
    return SchemaSet(current=current, previous=tuple(previous))


@functools.cache
def bundled_schemas() -> SchemaSet:
    """The bundled schemas, read and parsed on first use and shared afterwards."""
    return load_schemas()


def get_schema(name: str) -> AvroSchema:
    """The bundled current schema called `name` (``Command``, ``EffectsEmitted``)."""
    return bundled_schemas().get(name)
