"""The bundled Avro schemas: where they live, parsed once, and their fingerprints.

The current schemas are `schemas/avro/*.avsc` in a checkout and `bridge/_schemas/*.avsc` in
the installed wheel. Older versions that records on Kafka may still carry go in a
`previous/` folder beside them; they are known writer schemas for decoding, never written.

Each schema is identified by the CRC-64-AVRO (Rabin) fingerprint of its Parsing Canonical
Form, the 8 bytes that follow ``C3 01`` in Avro single-object encoding.

Also the `talon-bridge schemas` subcommand: ``list``, ``show NAME``, ``export DIR`` (with
``--previous`` and ``--canonical``; see docs/producers.md for generating code from them) and
``register`` (into the Schema Registry at ``BRIDGE_SCHEMA_REGISTRY_URL``, under the subjects
of the configured topics that ``BRIDGE_SCHEMA_REGISTRY_SUBJECT_STRATEGY`` names).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from bridge.errors import ConfigError
from bridge.settings import ENV_PREFIX, KafkaSettings, load

__all__ = [
    "COMMAND",
    "EFFECTS_EMITTED",
    "HELP",
    "NAMESPACE",
    "AvroSchema",
    "SchemaSet",
    "bundled_schemas",
    "configure",
    "fingerprint",
    "get_schema",
    "load_schemas",
    "make_schema",
    "run",
    "schema_dir",
]

NAMESPACE = "one.talon.bridge"
COMMAND = "Command"
EFFECTS_EMITTED = "EffectsEmitted"

HELP = "List, show, export or register the bundled Avro schemas."

_PREVIOUS_DIR = "previous"


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
    for path in sorted((root / _PREVIOUS_DIR).glob("*.avsc")):
        schema = make_schema(path.read_text(encoding="utf-8"), name=path.stem)
        if schema.full_name not in full_names:
            raise ValueError(f"{_PREVIOUS_DIR}/{path.name} is a version of no current schema")
        previous.append(schema)
    return SchemaSet(current=current, previous=tuple(previous))


@functools.cache
def bundled_schemas() -> SchemaSet:
    """The bundled schemas, read and parsed on first use and shared afterwards."""
    return load_schemas()


def get_schema(name: str) -> AvroSchema:
    """The bundled current schema called `name` (``Command``, ``EffectsEmitted``)."""
    return bundled_schemas().get(name)


# --- the `talon-bridge schemas` subcommand ---------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `schemas` actions to its parser."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="names and CRC-64-AVRO fingerprints")
    show = actions.add_parser("show", help="print one schema")
    show.add_argument("name", help="schema name, e.g. Command or EffectsEmitted")
    show.add_argument(
        "--canonical", action="store_true", help="print the Parsing Canonical Form instead"
    )
    export = actions.add_parser(
        "export",
        help="write every schema to DIR as NAME.avsc, for code generators in other languages",
    )
    export.add_argument("directory", type=Path, metavar="DIR")
    export.add_argument(
        "--previous",
        action="store_true",
        help="also write the older versions still on Kafka to DIR/previous/ (readers of "
        "single-object records need them)",
    )
    export.add_argument(
        "--canonical",
        action="store_true",
        help="write the Parsing Canonical Form instead (what the fingerprint is computed from; "
        "it drops docs and defaults, so generate code from the default export)",
    )
    register = actions.add_parser(
        "register",
        help="register the schemas under the subjects of the configured topics",
    )
    register.add_argument(
        "--url",
        default=None,
        help=f"Schema Registry URL (default: ${ENV_PREFIX}SCHEMA_REGISTRY_URL)",
    )


def run(args: argparse.Namespace) -> int:
    """Run one `schemas` action; 0 on success, 1 on failure."""
    schemas = bundled_schemas()
    action: str = args.action
    if action == "list":
        return _list(schemas)
    if action == "show":
        return _show(schemas, args.name, canonical=args.canonical)
    if action == "export":
        return _export(schemas, args.directory, previous=args.previous, canonical=args.canonical)
    return _register(schemas, args.url)


def _list(schemas: SchemaSet) -> int:
    rows = [(s, "current") for s in schemas.current.values()]
    rows += [(s, "previous") for s in schemas.previous]
    width = max(len(s.name) for s, _ in rows)
    for schema, status in rows:
        print(
            f"{schema.name:<{width}}  {schema.full_name}  "
            f"crc64=0x{schema.fingerprint:016x}  header=c301{schema.fingerprint_bytes.hex()}  "
            f"{status}"
        )
    return 0


def _show(schemas: SchemaSet, name: str, *, canonical: bool) -> int:
    try:
        schema = schemas.get(name)
    except KeyError:
        known = ", ".join(schemas.current)
        print(f"talon-bridge schemas: no schema named {name!r} (known: {known})", file=sys.stderr)
        return 1
    print(schema.canonical_form if canonical else schema.to_json(indent=2))
    return 0


def _export(schemas: SchemaSet, directory: Path, *, previous: bool, canonical: bool) -> int:
    """Write the schemas, one self-contained file each; prints each path and its header."""
    plan = [(directory, s) for s in schemas.current.values()]
    if previous:
        plan += [(directory / _PREVIOUS_DIR, s) for s in schemas.previous]
    for folder, schema in plan:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{schema.name}.avsc"
        text = schema.canonical_form if canonical else schema.to_json(indent=2)
        path.write_text(text + "\n", encoding="utf-8")
        # The single-object header, for producers whose Avro library cannot compute it.
        print(f"{path}  header=c301{schema.fingerprint_bytes.hex()}")
    return 0


def _register(schemas: SchemaSet, url: str | None) -> int:
    # Imported here: the registry client pulls in an HTTP stack the other actions do not need.
    from confluent_kafka.schema_registry import Schema

    from bridge.avro.registry import new_client, subject_name

    settings = _registry_settings()
    url = url or settings.schema_registry_url
    if not url:
        raise ConfigError(f"{ENV_PREFIX}SCHEMA_REGISTRY_URL", "is required to register schemas")
    strategy = settings.schema_registry_subject_strategy
    placed = [(topic, schemas.get(COMMAND)) for topic in settings.input_topics]
    placed.append((settings.output_topic, schemas.get(EFFECTS_EMITTED)))
    # Under the record strategy, topics sharing a record share its subject: register it once.
    plan = {subject_name(strategy, t, s.full_name): s for t, s in placed}
    client = new_client(settings, url)
    failed = False
    try:
        for subject, schema in plan.items():
            try:
                schema_id = client.register_schema(subject, Schema(schema.to_json(), "AVRO"))
            except Exception as exc:  # HTTP, transport and compatibility failures alike
                print(f"talon-bridge schemas: {subject}: {exc}", file=sys.stderr)
                failed = True
                continue
            print(f"{subject}  {schema.full_name}  id={schema_id}")
    finally:
        client.close()
    return 1 if failed else 0


def _registry_settings() -> KafkaSettings:
    # Registering talks to no broker, so a missing bootstrap setting must not stop it.
    overrides: dict[str, Any] = {}
    if not os.environ.get(f"{ENV_PREFIX}KAFKA_BOOTSTRAP_SERVERS"):
        overrides["kafka_bootstrap_servers"] = "unused:9092"
    return load(KafkaSettings, overrides)
