"""`talon-bridge schemas`: list, show, export or register the bundled Avro schemas.

``list``, ``show NAME``, ``export DIR`` (with ``--previous`` and ``--canonical``; see
docs/producers.md for generating code from them) and ``register`` (into the Schema Registry at
``BRIDGE_SCHEMA_REGISTRY_URL``, under the subjects of the configured topics that
``BRIDGE_SCHEMA_REGISTRY_SUBJECT_STRATEGY`` names). The schemas themselves are
`bridge.avro.schemas`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from bridge.avro.schemas import (
    COMMAND,
    EFFECTS_EMITTED,
    PREVIOUS_DIR,
    SchemaSet,
    bundled_schemas,
)
from bridge.environment import load
from bridge.errors import ConfigError
from bridge.settings import ENV_PREFIX, KafkaSettings

__all__ = ["HELP", "configure", "run"]

HELP = "List, show, export or register the bundled Avro schemas."


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
        plan += [(directory / PREVIOUS_DIR, s) for s in schemas.previous]
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
    from bridge.avro.registry import new_client, subject_name
    from bridge.kafka.registry_client import Schema

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
