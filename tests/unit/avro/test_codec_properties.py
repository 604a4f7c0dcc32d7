"""Avro codec properties: round trips, and the hand-written reader and writer against fastavro."""

from __future__ import annotations

import io
from functools import cache, partial
from typing import Any, get_args

import fastavro
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.avro import reader as command_reader
from bridge.avro import writer as effects_writer
from bridge.avro.codec import Codec
from bridge.avro.datum import _strip_logical_types
from bridge.avro.mapping import effects_to_avro
from bridge.avro.schemas import get_schema
from bridge.commands import Command, EffectsEmitted, SessionState
from bridge.errors import EncodeError
from bridge.types import CommandType
from tests.support.codec_samples import (
    COMMANDS_TOPIC,
    EFFECTS,
    EFFECTS_TOPIC,
    ENCODINGS,
    PROPERTY,
    UPDATE_FULL,
    commands,
    effects_records,
    fastavro_body,
    fastavro_read,
    shared_codec,
)


@PROPERTY
@given(cmd=commands, encoding=st.sampled_from(ENCODINGS))
def test_property_command_round_trip(cmd: Command, encoding: str) -> None:
    codec = shared_codec(encoding)
    assert codec.decode_command(codec.encode_command(cmd, COMMANDS_TOPIC)) == cmd


@PROPERTY
@given(rec=effects_records, encoding=st.sampled_from(ENCODINGS))
def test_property_effects_round_trip(rec: EffectsEmitted, encoding: str) -> None:
    codec = shared_codec(encoding)
    assert codec.decode_effects(codec.encode_effects(rec, EFFECTS_TOPIC)) == rec


@cache
def _fastavro_effects() -> Any:
    return fastavro.parse_schema(_strip_logical_types(get_schema("EffectsEmitted").definition))


@PROPERTY
@given(rec=effects_records)
def test_property_effects_writer_matches_fastavro(rec: EffectsEmitted) -> None:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _fastavro_effects(), effects_to_avro(rec))
    assert effects_writer.write(rec) == out.getvalue()


def test_effects_writer_follows_the_bundled_schema() -> None:
    # A schema change must come with a writer change (or drop the writer).
    assert get_schema("EffectsEmitted").fingerprint == effects_writer.FINGERPRINT


def test_enum_symbols_are_the_vocabularies_in_order() -> None:
    # The hand-written reader and writer number enum symbols by the vocabularies' order.
    def symbols(node: Any, name: str) -> list[str]:
        if isinstance(node, dict):
            if node.get("type") == "enum" and node.get("name") == name:
                return list(node["symbols"])
            return [s for value in node.values() for s in symbols(value, name)]
        if isinstance(node, list):
            return [s for value in node for s in symbols(value, name)]
        return []

    for record in ("Command", "EffectsEmitted"):
        states = symbols(get_schema(record).definition, "SessionState")
        assert tuple(states) == get_args(SessionState), record
    kinds = symbols(get_schema("EffectsEmitted").definition, "CommandType")
    assert tuple(kinds) == get_args(CommandType)


@pytest.mark.parametrize(
    "change",
    [
        {"source_partition": 2**31},
        {"source_offset": -(2**63) - 1},
        {"command_type": "no_such_call"},
        {"session_id": None},
    ],
)
def test_effects_that_do_not_fit_are_encode_errors(change: dict[str, Any]) -> None:
    with pytest.raises(EncodeError):
        Codec().encode_effects(msgspec.structs.replace(EFFECTS, **change), EFFECTS_TOPIC)


@PROPERTY
@given(cmd=commands)
def test_property_command_reader_matches_fastavro(cmd: Command) -> None:
    body = fastavro_body(cmd)
    assert command_reader.read(body, 0) == fastavro_read(body) == cmd


@PROPERTY
@given(cmd=commands, data=st.data())
def test_property_command_reader_accepts_nothing_fastavro_refuses(
    cmd: Command, data: st.DataObject
) -> None:
    # Damaged commands: whatever the hand-written reader accepts, fastavro reads the same way.
    body = bytearray(fastavro_body(cmd))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body)))
        edit = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if edit == "flip" and at < len(body):
            body[at] = data.draw(st.integers(0, 255))
        elif edit == "cut":
            del body[at:]
        else:
            body[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        fast = command_reader.read(bytes(body), 0)
    except command_reader.Unreadable:
        return
    assert fastavro_read(bytes(body)) == fast


def test_command_reader_follows_the_bundled_schema() -> None:
    # A schema change must come with a reader change (or drop the reader).
    assert get_schema("Command").fingerprint == command_reader.FINGERPRINT


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x7f",  # a length of -64
        b"\x02a\x02b\x00\x00\x02",  # dry is 2
        b"\x02a\x02b\x00\x00\x00\x06",  # payload branch 3 of 3
        b"\x02a\x02b\x00\x00\x00\x04\x00\x00",  # an empty return, then a trailing byte
        b"\x02a\x02b\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # beyond a long
    ],
)
def test_command_reader_leaves_doubtful_bytes_to_fastavro(body: bytes) -> None:
    with pytest.raises(command_reader.Unreadable):
        command_reader.read(body, 0)


def test_codec_reads_the_bundled_schema_by_hand() -> None:
    codec = Codec()
    data = codec.encode_command(UPDATE_FULL, COMMANDS_TOPIC)
    assert isinstance(codec._read_command, partial)
    assert codec._read_command.func is command_reader.read
    assert codec.decode_command(data) == UPDATE_FULL


@PROPERTY
@given(rec=effects_records)
def test_property_effects_written_again_are_the_same_bytes(rec: EffectsEmitted) -> None:
    # The writer keeps each effect record's encoding; the same records, or equal new ones,
    # write the same bytes.
    first = effects_writer.write(rec)
    assert effects_writer.write(rec) == first
    copies = [msgspec.structs.replace(e) for e in rec.effects]
    assert effects_writer.write(msgspec.structs.replace(rec, effects=copies)) == first
