"""The schema change that added TrackEventV3: records of the previous versions still read."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from fastavro.read import SchemaResolutionError

from bridge.avro.codec import Codec
from bridge.avro.mapping import command_to_avro, effects_to_avro
from bridge.avro.schemas import bundled_schemas, get_schema
from bridge.commands import Command, EffectsEmitted
from tests.support.codec_samples import (
    COMMANDS_TOPIC,
    EFFECTS,
    EFFECTS_EVENT,
    EFFECTS_TOPIC,
    RETURN,
    TRACK,
    TRACK_V3,
    UPDATE_ABSENT,
    UPDATE_EMPTY,
    UPDATE_FULL,
    avro_body,
    single_object,
)


def _previous(name: str) -> dict[str, Any]:
    (schema,) = [s for s in bundled_schemas().previous if s.name == f"{name}.v1"]
    return schema.definition


@pytest.mark.parametrize(
    "cmd", [TRACK, UPDATE_FULL, UPDATE_ABSENT, UPDATE_EMPTY, RETURN], ids=lambda c: c.event_id
)
def test_commands_written_before_track_event_v3_still_decode(cmd: Command) -> None:
    written = single_object(_previous("Command"), command_to_avro(cmd))
    assert Codec().decode_command(written) == cmd


@pytest.mark.parametrize("rec", [EFFECTS, EFFECTS_EVENT], ids=["session", "event"])
def test_effects_written_before_track_event_v3_still_decode(rec: EffectsEmitted) -> None:
    written = single_object(_previous("EffectsEmitted"), effects_to_avro(rec))
    assert Codec().decode_effects(written) == rec


def test_the_new_payload_is_the_last_union_branch() -> None:
    # Appended, so every older record keeps its branch index.
    body = Codec().encode_command(TRACK_V3, COMMANDS_TOPIC)[10:]
    old = fastavro.parse_schema(_previous("Command"))
    new = get_schema("Command").parsed
    branches = [b["name"] for b in next(f for f in new["fields"] if f["name"] == "payload")["type"]]
    assert branches[-1] == "one.talon.bridge.TrackEventV3"
    assert avro_body(_previous("Command"), command_to_avro(TRACK)) == avro_body(
        get_schema("Command").definition, command_to_avro(TRACK)
    )
    # A reader of the previous version refuses the new record instead of misreading it.
    with pytest.raises(SchemaResolutionError, match="not found in"):
        fastavro.schemaless_reader(_buffer(body), new, old)


def test_a_reader_of_the_previous_effects_refuses_the_new_command_type() -> None:
    rec = EffectsEmitted(**{**_fields(EFFECTS_EVENT), "command_type": "track_event_v3"})
    body = Codec().encode_effects(rec, EFFECTS_TOPIC)[10:]
    old = fastavro.parse_schema(_previous("EffectsEmitted"))
    with pytest.raises(SchemaResolutionError, match="track_event_v3 not found"):
        fastavro.schemaless_reader(_buffer(body), get_schema("EffectsEmitted").parsed, old)


def _buffer(body: bytes) -> io.BytesIO:
    return io.BytesIO(body)


def _fields(rec: EffectsEmitted) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in rec.__struct_fields__}
