"""Avro codec: round trips in both wire formats, registry subjects, and schema evolution."""

from __future__ import annotations

import io
import json

import fastavro
import msgspec
import orjson
import pytest
from confluent_kafka.schema_registry import Schema

from bridge.avro.codec import Codec
from bridge.avro.schemas import SchemaSet, bundled_schemas, get_schema, make_schema
from bridge.commands import (
    CartItem,
    Command,
    EffectsEmitted,
    ReturnCartItems,
    ReturnedCartItem,
    UpdateCustomerSession,
)
from bridge.errors import ConfigError, DecodeError, RegistryError, SchemaNotCached
from bridge.settings import KafkaSettings
from tests.support.codec_samples import (
    COMMANDS,
    COMMANDS_TOPIC,
    EFFECTS,
    EFFECTS_EVENT,
    EFFECTS_TOPIC,
    ENCODINGS,
    RETURN,
    TRACK,
    UPDATE_ABSENT,
    UPDATE_EMPTY,
    UPDATE_FULL,
    avro_body,
    confluent,
    new_codec,
    new_registry,
    single_object,
    v0_schema,
)

# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c.event_id)
def test_command_round_trip(encoding: str, cmd: Command) -> None:
    codec = new_codec(encoding)
    assert codec.decode_command(codec.encode_command(cmd, COMMANDS_TOPIC)) == cmd


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("rec", [EFFECTS, EFFECTS_EVENT], ids=["session", "event"])
def test_effects_round_trip(encoding: str, rec: EffectsEmitted) -> None:
    codec = new_codec(encoding)
    assert codec.decode_effects(codec.encode_effects(rec, EFFECTS_TOPIC)) == rec


def test_absent_and_empty_lists_stay_distinct() -> None:
    codec = Codec()
    absent = codec.decode_command(codec.encode_command(UPDATE_ABSENT, COMMANDS_TOPIC)).payload
    empty = codec.decode_command(codec.encode_command(UPDATE_EMPTY, COMMANDS_TOPIC)).payload
    assert isinstance(absent, UpdateCustomerSession)
    assert isinstance(empty, UpdateCustomerSession)
    assert absent.coupon_codes is None and absent.cart_items is None
    assert absent.additional_costs is None and absent.attributes is None
    assert empty.coupon_codes == [] and empty.cart_items == []
    assert empty.additional_costs == {} and empty.attributes == {}
    assert absent.state == "open"


def test_attribute_values_are_json_documents_on_the_wire() -> None:
    codec = Codec()
    data = codec.encode_command(TRACK, COMMANDS_TOPIC)
    datum = fastavro.schemaless_reader(io.BytesIO(data[10:]), get_schema("Command").parsed)
    attributes = datum["payload"]["attributes"]
    assert attributes["score"] == "12"
    assert attributes["SubscriptionType"] == '"weekly"'
    assert orjson.loads(attributes["nested"]) == TRACK.payload.attributes["nested"]  # type: ignore[union-attr]


def test_single_object_header_carries_the_fingerprint() -> None:
    data = Codec().encode_command(TRACK, COMMANDS_TOPIC)
    command = get_schema("Command")
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == command.fingerprint_bytes
    assert int.from_bytes(data[2:10], "little") == command.fingerprint


def test_confluent_registers_under_topic_name_strategy() -> None:
    registry = new_registry()
    codec = Codec("confluent", registry=registry)
    data = codec.encode_command(TRACK, COMMANDS_TOPIC)
    effects = codec.encode_effects(EFFECTS, EFFECTS_TOPIC)
    command_id = registry.get_latest_version(f"{COMMANDS_TOPIC}-value").schema_id
    effects_id = registry.get_latest_version(f"{EFFECTS_TOPIC}-value").schema_id
    assert data[:5] == b"\x00" + command_id.to_bytes(4, "big")
    assert effects[:5] == b"\x00" + effects_id.to_bytes(4, "big")
    assert command_id != effects_id
    # A fresh codec must fetch the writer schema by id to read the record.
    assert Codec("confluent", registry=registry).decode_command(data) == TRACK


@pytest.mark.parametrize(
    ("strategy", "subject"),
    [
        ("record", "one.talon.bridge.Command"),
        ("topic-record", f"{COMMANDS_TOPIC}-one.talon.bridge.Command"),
    ],
)
def test_confluent_registers_under_the_subject_name_strategy(strategy: str, subject: str) -> None:
    registry = new_registry()
    codec = Codec("confluent", registry=registry, subject_strategy=strategy)  # type: ignore[arg-type]
    data = codec.encode_command(TRACK, COMMANDS_TOPIC)
    assert data[1:5] == registry.get_latest_version(subject).schema_id.to_bytes(4, "big")


def test_decoding_without_fetch_leaves_the_registry_call_to_the_caller() -> None:
    registry = new_registry()
    data = Codec("confluent", registry=registry).encode_command(TRACK, COMMANDS_TOPIC)
    codec = Codec("single-object", registry=registry)
    with pytest.raises(SchemaNotCached) as missing:
        codec.decode_command(data, fetch=False)
    assert missing.value.schema_id == int.from_bytes(data[1:5], "big")
    assert isinstance(missing.value, RegistryError) and missing.value.retryable
    codec.fetch_command_schema(data)
    assert codec.decode_command(data, fetch=False) == TRACK
    # Bad framing is the record's fault whether or not a fetch is allowed.
    with pytest.raises(DecodeError):
        codec.decode_command(b"\x00\x00", fetch=False)


def test_effects_subject_is_prepared_ahead_of_encoding() -> None:
    registry = new_registry()
    codec = Codec("confluent", registry=registry)
    codec.prepare_effects(EFFECTS_TOPIC)
    effects_id = registry.get_latest_version(f"{EFFECTS_TOPIC}-value").schema_id
    registry.close()  # the prefix is cached: no registry call from here on
    assert codec.encode_effects(EFFECTS, EFFECTS_TOPIC)[1:5] == effects_id.to_bytes(4, "big")


def test_lookup_only_needs_a_registered_schema() -> None:
    registry = new_registry()
    codec = Codec("confluent", registry=registry, auto_register=False)
    with pytest.raises(RegistryError) as err:
        codec.encode_command(TRACK, COMMANDS_TOPIC)
    assert err.value.status == 404 and not err.value.retryable
    schema = Schema(get_schema("Command").to_json(), "AVRO")
    registry.register_schema(f"{COMMANDS_TOPIC}-value", schema)
    assert codec.decode_command(codec.encode_command(TRACK, COMMANDS_TOPIC)) == TRACK


def test_both_wire_formats_decode_whatever_the_encoding() -> None:
    registry = new_registry()
    framed = Codec("confluent", registry=registry).encode_command(UPDATE_FULL, COMMANDS_TOPIC)
    plain = Codec().encode_command(UPDATE_FULL, COMMANDS_TOPIC)
    single = Codec("single-object", registry=registry)
    assert single.decode_command(framed) == UPDATE_FULL
    assert Codec("confluent", registry=registry).decode_command(plain) == UPDATE_FULL


def test_confluent_needs_a_registry() -> None:
    with pytest.raises(ConfigError) as err:
        Codec("confluent")
    assert err.value.setting == "BRIDGE_SCHEMA_REGISTRY_URL"


def test_from_settings_builds_a_registry_client_from_the_url() -> None:
    conf = KafkaSettings(
        kafka_bootstrap_servers="127.0.0.1:9092",
        encoding="confluent",
        schema_registry_url="mock://from-settings",
    )
    codec = Codec.from_settings(conf)
    try:
        assert codec.encoding == "confluent"
        assert codec.decode_command(codec.encode_command(RETURN, COMMANDS_TOPIC)) == RETURN
    finally:
        codec.close()


# --- schema evolution -------------------------------------------------------------------------

V0_UPDATE = {
    "eventId": "evt-old",
    "sessionId": "order-9",
    "occurredAt": 1_600_000_000_000,
    "payload": (
        "one.talon.bridge.UpdateCustomerSession",
        {
            "profileId": "cust-1",
            "state": "closed",
            "cartItems": [{"sku": "SKU-1", "quantity": 3, "price": 9.5, "name": "Socks"}],
            "couponCodes": [],
            "referralCode": None,
            "loyaltyCards": None,
            "additionalCosts": None,
            "attributes": {"channel": '"pos"'},
        },
    ),
}
V0_UPDATE_DECODED = Command(
    event_id="evt-old",
    session_id="order-9",
    occurred_at_ms=1_600_000_000_000,
    payload=UpdateCustomerSession(
        profile_id="cust-1",
        state="closed",
        cart_items=[CartItem(sku="SKU-1", quantity=3, price=9.5, name="Socks")],
        coupon_codes=[],
        attributes={"channel": "pos"},
    ),
)
V0_RETURN = {
    "eventId": "evt-old-2",
    "sessionId": "order-9",
    "occurredAt": 5,
    "payload": (
        "one.talon.bridge.ReturnCartItems",
        {"returnedCartItems": [{"position": 0, "quantity": 2}]},
    ),
}


def test_old_single_object_writer_needs_to_be_known() -> None:
    data = single_object(v0_schema(), V0_UPDATE)
    with pytest.raises(DecodeError) as err:
        Codec().decode_command(data)
    assert err.value.reason == "unknown-fingerprint"


def test_old_single_object_writer_resolves_with_defaults() -> None:
    codec = Codec()
    assert codec.add_writer_schema(v0_schema()) == make_schema(v0_schema()).fingerprint
    decoded = codec.decode_command(single_object(v0_schema(), V0_UPDATE))
    assert decoded == V0_UPDATE_DECODED
    assert decoded.source is None and decoded.dry is False
    returned = codec.decode_command(single_object(v0_schema(), V0_RETURN)).payload
    assert returned == ReturnCartItems([ReturnedCartItem(position=0, quantity=2, sku=None)])


def test_previous_schema_versions_are_known_writers() -> None:
    bundled = bundled_schemas()
    schemas = SchemaSet(current=bundled.current, previous=(make_schema(v0_schema()),))
    codec = Codec(schemas=schemas)
    assert codec.decode_command(single_object(v0_schema(), V0_UPDATE)) == V0_UPDATE_DECODED


def test_old_confluent_writer_resolves_with_defaults() -> None:
    registry = new_registry()
    schema_id = registry.register_schema(
        f"{COMMANDS_TOPIC}-value", Schema(json.dumps(v0_schema()), "AVRO")
    )
    data = confluent(schema_id, avro_body(v0_schema(), V0_UPDATE))
    codec = Codec("confluent", registry=registry)
    assert codec.decode_command(data) == V0_UPDATE_DECODED
    assert codec.decode_command(data) == V0_UPDATE_DECODED  # the cached writer


def test_writer_schema_of_another_record_is_incompatible() -> None:
    registry = new_registry()
    effects_id = registry.register_schema(
        "other-value", Schema(get_schema("EffectsEmitted").to_json(), "AVRO")
    )
    body = Codec().encode_command(TRACK, COMMANDS_TOPIC)[10:]
    with pytest.raises(DecodeError) as err:
        Codec(registry=registry).decode_command(confluent(effects_id, body))
    assert err.value.reason == "incompatible-schema"


def test_newer_writer_with_an_unknown_payload_branch() -> None:
    newer = json.loads(get_schema("Command").to_json())
    payload = next(f for f in newer["fields"] if f["name"] == "payload")
    payload["type"].append(
        {
            "type": "record",
            "name": "RedeemPoints",
            "doc": "A payload type this reader does not know.",
            "fields": [{"name": "points", "type": "long", "doc": "Points to redeem."}],
        }
    )
    datum = {
        "eventId": "e",
        "sessionId": "s",
        "occurredAt": 1,
        "source": None,
        "dry": False,
        "payload": ("one.talon.bridge.RedeemPoints", {"points": 5}),
    }
    registry = new_registry()
    schema_id = registry.register_schema("x-value", Schema(json.dumps(newer), "AVRO"))
    with pytest.raises(DecodeError) as err:
        Codec(registry=registry).decode_command(confluent(schema_id, avro_body(newer, datum)))
    assert err.value.reason == "incompatible-schema"

    # The same bytes claiming to be the current schema: branch 4 does not exist.
    lying = b"\xc3\x01" + get_schema("Command").fingerprint_bytes + avro_body(newer, datum)
    with pytest.raises(DecodeError) as err:
        Codec().decode_command(lying)
    assert err.value.reason == "invalid"


@pytest.mark.parametrize("size", [10, 10_000], ids=["small", "large"])
def test_effect_encodings_are_kept_only_when_small(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    from bridge.avro import writer

    monkeypatch.setattr(writer, "_EFFECTS", {})
    effect = msgspec.structs.replace(
        EFFECTS.effects[0], props=orjson.dumps({"v": "x" * size}).decode()
    )
    rec = msgspec.structs.replace(EFFECTS, effects=[effect])
    codec = new_codec("confluent")
    assert codec.decode_effects(codec.encode_effects(rec, EFFECTS_TOPIC)) == rec
    assert codec.decode_effects(codec.encode_effects(rec, EFFECTS_TOPIC)) == rec
    assert len(writer._EFFECTS) == (1 if size < 1000 else 0)
