"""Avro codec: every way a value can fail to decode or encode, as a typed error."""

from __future__ import annotations

import json

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryError
from hypothesis import given
from hypothesis import strategies as st

from bridge.avro.codec import Codec
from bridge.avro.schemas import get_schema
from bridge.commands import Command, TrackEvent, UpdateCustomerSession
from bridge.errors import DecodeError, EncodeError, RegistryError
from tests.support.codec_samples import (
    COMMANDS_TOPIC,
    EFFECTS,
    EFFECTS_TOPIC,
    ENCODINGS,
    PROPERTY,
    SECRET,
    TRACK,
    UPDATE_FULL,
    commands,
    confluent,
    new_registry,
    shared_codec,
    single_object,
)

# --- decode failures --------------------------------------------------------------------------


def reason_of(data: bytes | None, codec: Codec | None = None) -> str:
    with pytest.raises(DecodeError) as err:
        (codec or Codec()).decode_command(data)
    return err.value.reason


def test_empty_values() -> None:
    assert reason_of(None) == "empty"
    assert reason_of(b"") == "empty"


def test_unknown_magic() -> None:
    assert reason_of(b"\x01\x02\x03") == "unknown-magic"
    assert reason_of(b"{}") == "unknown-magic"
    assert reason_of(b"\xc3\x02" + bytes(20)) == "unknown-magic"


def test_short_headers_are_truncated() -> None:
    assert reason_of(b"\xc3") == "truncated"
    assert reason_of(b"\xc3\x01\x00\x00") == "truncated"
    assert reason_of(b"\x00\x00\x01") == "truncated"


def test_unknown_fingerprint() -> None:
    effects = Codec().encode_effects(EFFECTS, EFFECTS_TOPIC)
    assert reason_of(effects) == "unknown-fingerprint"
    assert reason_of(b"\xc3\x01" + bytes(8) + b"\x00") == "unknown-fingerprint"


def test_confluent_framing_without_a_registry() -> None:
    data = Codec("confluent", registry=new_registry()).encode_command(TRACK, COMMANDS_TOPIC)
    assert reason_of(data) == "unknown-schema-id"


def test_unknown_schema_id() -> None:
    assert (
        reason_of(confluent(4242, b"\x00"), Codec(registry=new_registry())) == "unknown-schema-id"
    )


class FailingRegistry:
    """Stands in for a registry client; every call fails the same way."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def get_schema(self, schema_id: int) -> Schema:
        self.calls += 1
        raise self.error

    def register_schema(self, subject: str, schema: Schema) -> int:
        self.calls += 1
        raise self.error


def test_unknown_ids_are_not_asked_about_again_at_once() -> None:
    registry = FailingRegistry(SchemaRegistryError(404, 40403, "Schema not found"))
    codec = Codec(registry=registry)  # type: ignore[arg-type]
    for _ in range(3):
        assert reason_of(confluent(7, b"\x00"), codec) == "unknown-schema-id"
    assert registry.calls == 1


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (SchemaRegistryError(503, 50301, "unavailable"), 503),
        (ConnectionRefusedError("refused"), None),
    ],
)
def test_registry_outage_is_not_a_decode_error(error: Exception, status: int | None) -> None:
    codec = Codec("confluent", registry=FailingRegistry(error))  # type: ignore[arg-type]
    with pytest.raises(RegistryError) as err:
        codec.decode_command(confluent(7, b"\x00"))
    assert err.value.status == status and err.value.retryable
    with pytest.raises(RegistryError):
        codec.encode_command(TRACK, COMMANDS_TOPIC)


def test_truncated_body() -> None:
    data = Codec().encode_command(UPDATE_FULL, COMMANDS_TOPIC)
    assert reason_of(data[:-1]) == "truncated"
    assert reason_of(data[:11]) == "truncated"


def test_trailing_bytes() -> None:
    data = Codec().encode_command(UPDATE_FULL, COMMANDS_TOPIC)
    assert reason_of(data + b"\x00") == "trailing-bytes"


def test_attribute_value_that_is_not_json() -> None:
    schema = json.loads(get_schema("Command").to_json())
    datum = {
        "eventId": "e",
        "sessionId": "s",
        "occurredAt": 1,
        "source": None,
        "dry": False,
        "payload": (
            "one.talon.bridge.TrackEvent",
            {
                "type": "t",
                "profileId": "p",
                "attributes": {"email": SECRET},
                "loyaltyCards": None,
                "storeIntegrationId": None,
            },
        ),
    }
    with pytest.raises(DecodeError) as err:
        Codec().decode_command(single_object(schema, datum))
    assert err.value.reason == "invalid"
    assert SECRET not in str(err.value)


def test_invalid_utf8_does_not_echo_the_content() -> None:
    data = Codec().encode_command(
        Command("e", "s", 1, TrackEvent(type="t", profile_id=SECRET + "é")), COMMANDS_TOPIC
    )
    broken = data.replace("é".encode(), b"\xff\xfe")
    with pytest.raises(DecodeError) as err:
        Codec().decode_command(broken)
    assert err.value.reason == "invalid"
    assert SECRET not in str(err.value)


# --- encode failures --------------------------------------------------------------------------


def test_attribute_value_without_a_json_form() -> None:
    cmd = Command("e", "s", 1, TrackEvent(type="t", profile_id="p", attributes={"x": {1, 2}}))  # type: ignore[dict-item]
    with pytest.raises(EncodeError):
        Codec().encode_command(cmd, COMMANDS_TOPIC)


def test_value_outside_the_schema() -> None:
    cmd = Command("e", "s", 1, UpdateCustomerSession(state="reopened"))  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        Codec().encode_command(cmd, COMMANDS_TOPIC)


@PROPERTY
@given(data=st.binary(max_size=200))
def test_property_garbage_only_raises_decode_error(data: bytes) -> None:
    codec = shared_codec("confluent")
    headers = [
        b"",
        b"\xc3\x01" + get_schema("Command").fingerprint_bytes,
        codec.encode_command(TRACK, COMMANDS_TOPIC)[:5],
    ]
    for header in headers:
        try:
            codec.decode_command(header + data)
        except DecodeError as exc:
            assert SECRET not in exc.message
        try:
            codec.decode_effects(header + data)
        except DecodeError:
            pass


@PROPERTY
@given(cmd=commands, encoding=st.sampled_from(ENCODINGS))
def test_property_truncations_are_decode_errors(cmd: Command, encoding: str) -> None:
    codec = shared_codec(encoding)
    data = codec.encode_command(cmd, COMMANDS_TOPIC)
    for end in range(len(data)):
        with pytest.raises(DecodeError) as err:
            codec.decode_command(data[:end])
        assert err.value.reason in {"empty", "truncated"}


@PROPERTY
@given(cmd=commands, flips=st.lists(st.tuples(st.integers(0), st.integers(0, 255)), max_size=4))
def test_property_corrupted_records_only_raise_decode_error(
    cmd: Command, flips: list[tuple[int, int]]
) -> None:
    codec = shared_codec("single-object")
    data = bytearray(codec.encode_command(cmd, COMMANDS_TOPIC))
    for index, value in flips:
        data[10 + index % (len(data) - 10)] = value
    try:
        codec.decode_command(bytes(data))
    except DecodeError:
        pass
