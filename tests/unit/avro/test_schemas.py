"""Bundled Avro schemas: documented, evolvable, fingerprinted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.avro.schemas import (
    AvroSchema,
    bundled_schemas,
    fingerprint,
    get_schema,
    load_schemas,
    make_schema,
    schema_dir,
)

DATA = Path(__file__).parent / "data"
NAMES = ["Command", "EffectsEmitted"]


def named_types(node: Any) -> Iterator[dict[str, Any]]:
    """Every record and enum defined anywhere inside a schema."""
    if isinstance(node, list):
        for item in node:
            yield from named_types(item)
    elif isinstance(node, dict):
        if node.get("type") in ("record", "enum"):
            yield node
        for field in node.get("fields", []):
            yield from named_types(field["type"])
        for key in ("items", "values"):
            if key in node:
                yield from named_types(node[key])


def all_fields(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for node in named_types(definition):
        for field in node.get("fields", []):
            yield f"{node['name']}.{field['name']}", field


# --- the schema files -------------------------------------------------------------------------


def test_bundled_schemas_are_found_and_named_after_their_files() -> None:
    assert (schema_dir() / "Command.avsc").is_file()
    schemas = bundled_schemas()
    assert sorted(schemas.current) == NAMES
    for name in NAMES:
        schema = schemas.current[name]
        assert schema.full_name == f"one.talon.bridge.{name}"
        assert schema.definition["namespace"] == "one.talon.bridge"
    assert bundled_schemas() is schemas


@pytest.mark.parametrize("name", NAMES)
def test_every_record_and_field_has_a_doc(name: str) -> None:
    definition = get_schema(name).definition
    for node in named_types(definition):
        assert node.get("doc", "").strip(), f"{node['name']} has no doc"
    for path, field in all_fields(definition):
        assert field.get("doc", "").strip(), f"{path} has no doc"


@pytest.mark.parametrize("name", NAMES)
def test_optional_fields_default_to_null(name: str) -> None:
    for path, field in all_fields(get_schema(name).definition):
        kind = field["type"]
        if isinstance(kind, list) and "null" in kind:
            assert kind[0] == "null", path
            assert "default" in field and field["default"] is None, path


def named(schema: str, name: str) -> dict[str, Any]:
    return next(n for n in named_types(get_schema(schema).definition) if n["name"] == name)


def test_update_session_lists_and_maps_are_nullable() -> None:
    update = named("Command", "UpdateCustomerSession")
    for field in update["fields"]:
        kind = field["type"]
        if field["name"] == "state":
            assert kind["symbols"] == ["open", "closed", "partially_returned", "cancelled"]
            assert field["default"] == "open"
            continue
        assert isinstance(kind, list) and kind[0] == "null", field["name"]
        assert field["default"] is None


def test_field_names_follow_talon_wire_names() -> None:
    names = {path.split(".")[1] for path, _ in all_fields(get_schema("Command").definition)}
    wire = {
        "profileId",
        "storeIntegrationId",
        "cartItems",
        "couponCodes",
        "referralCode",
        "loyaltyCards",
        "identifiers",
        "additionalCosts",
        "attributes",
        "state",
        "returnedCartItems",
        "position",
        "quantity",
        "sku",
        "price",
        "name",
        "category",
    }
    assert wire <= names


def test_attributes_are_maps_of_json_text() -> None:
    for name in NAMES:
        for path, field in all_fields(get_schema(name).definition):
            if field["name"] == "attributes":
                assert field["type"] == ["null", {"type": "map", "values": "string"}], path


def test_shared_enums_are_identical() -> None:
    assert named("Command", "SessionState") == named("EffectsEmitted", "SessionState")


def test_timestamps_are_millis() -> None:
    occurred = next(
        f for f in get_schema("Command").definition["fields"] if f["name"] == "occurredAt"
    )
    assert occurred["type"] == {"type": "long", "logicalType": "timestamp-millis"}


# --- fingerprints -----------------------------------------------------------------------------


def test_fingerprint_matches_the_avro_reference_value() -> None:
    # From the Avro specification's test data: the CRC-64-AVRO fingerprint of "null".
    assert fingerprint('"null"') == 7195948357588979594


def test_fingerprints_ignore_docs_but_not_structure() -> None:
    command = get_schema("Command")
    undocumented = json.loads(command.to_json())
    undocumented["doc"] = "something else"
    assert fingerprint(undocumented) == command.fingerprint
    older = make_schema((DATA / "Command.v0.avsc").read_text(encoding="utf-8"))
    assert older.fingerprint != command.fingerprint
    assert command.fingerprint_bytes == command.fingerprint.to_bytes(8, "little")


# --- loading ----------------------------------------------------------------------------------


def copy_bundled(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        (directory / f"{name}.avsc").write_text(get_schema(name).to_json(), encoding="utf-8")


def test_previous_versions_are_loaded_as_known_writers(tmp_path: Path) -> None:
    copy_bundled(tmp_path)
    (tmp_path / "previous").mkdir()
    (tmp_path / "previous" / "Command.v0.avsc").write_bytes((DATA / "Command.v0.avsc").read_bytes())
    schemas = load_schemas(tmp_path)
    assert sorted(schemas.current) == NAMES
    (older,) = schemas.previous
    assert older.name == "Command.v0" and older.full_name == "one.talon.bridge.Command"


def test_a_file_must_hold_the_record_it_is_named_after(tmp_path: Path) -> None:
    (tmp_path / "Commands.avsc").write_text(get_schema("Command").to_json(), encoding="utf-8")
    with pytest.raises(ValueError, match="expected Commands"):
        load_schemas(tmp_path)


def test_a_previous_version_must_belong_to_a_current_schema(tmp_path: Path) -> None:
    (tmp_path / "previous").mkdir()
    (tmp_path / "previous" / "Command.v0.avsc").write_bytes((DATA / "Command.v0.avsc").read_bytes())
    with pytest.raises(ValueError, match="no current schema"):
        load_schemas(tmp_path)


@pytest.mark.parametrize("text", ['"string"', "{", '{"type": "record", "name": "R", "fields": 1}'])
def test_make_schema_rejects_non_records(text: str) -> None:
    with pytest.raises(ValueError):
        make_schema(text)


def test_avro_schema_json_is_compact_or_pretty() -> None:
    schema: AvroSchema = get_schema("Command")
    assert "\n" not in schema.to_json()
    assert json.loads(schema.to_json(indent=2)) == schema.definition
