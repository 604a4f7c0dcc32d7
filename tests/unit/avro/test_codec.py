"""Avro codec: round trips in both wire formats, schema evolution, and typed decode failures."""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any, get_args

import fastavro
import msgspec
import orjson
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.avro import reader as command_reader
from bridge.avro import writer as effects_writer
from bridge.avro.codec import Codec
from bridge.avro.datum import _strip_logical_types
from bridge.avro.mapping import command_from_avro, command_to_avro, effects_to_avro
from bridge.avro.schemas import SchemaSet, bundled_schemas, get_schema, make_schema
from bridge.commands import (
    AdditionalCost,
    CartItem,
    Command,
    CreatedCouponRecord,
    CreatedReferralRecord,
    EffectRecord,
    EffectsEmitted,
    JsonValue,
    ReturnCartItems,
    ReturnedCartItem,
    SessionState,
    TrackEvent,
    UpdateCustomerSession,
)
from bridge.errors import ConfigError, DecodeError, EncodeError, RegistryError, SchemaNotCached
from bridge.settings import KafkaSettings
from bridge.types import CommandType

DATA = Path(__file__).parent / "data"
COMMANDS_TOPIC = "talon.commands"
EFFECTS_TOPIC = "talon.effects"
ENCODINGS = ["single-object", "confluent"]
SECRET = "s3cr3t-customer-value"

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
STATES = st.sampled_from(["open", "closed", "partially_returned", "cancelled"])


def new_registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": "mock://test"})


def new_codec(encoding: str) -> Codec:
    if encoding == "confluent":
        return Codec("confluent", registry=new_registry())
    return Codec("single-object")


@cache
def shared_codec(encoding: str) -> Codec:
    # Hypothesis runs many examples per test; one codec per encoding keeps them fast.
    return new_codec(encoding)


def v0_schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / "Command.v0.avsc").read_text(encoding="utf-8"))
    return loaded


def avro_body(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), datum)
    return buf.getvalue()


def single_object(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    return b"\xc3\x01" + make_schema(schema).fingerprint_bytes + avro_body(schema, datum)


def confluent(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


# --- samples ----------------------------------------------------------------------------------

TRACK = Command(
    event_id="evt-1",
    session_id="order-1001",
    occurred_at_ms=1_760_000_000_000,
    payload=TrackEvent(
        type="newsletter_signup",
        profile_id="cust-42",
        attributes={
            "SubscriptionType": "weekly",
            "score": 12,
            "ratio": 0.25,
            "opt_in": True,
            "nothing": None,
            "nested": {"tags": ["a", "ü", {"deep": [1, 2.5, None]}], "big": 2**63 - 1},
        },
        loyalty_cards=["card-1"],
        store_integration_id="store-7",
    ),
    source="web-shop",
    dry=True,
)
UPDATE_FULL = Command(
    event_id="evt-2",
    session_id="order-1001",
    occurred_at_ms=1_760_000_000_001,
    payload=UpdateCustomerSession(
        profile_id="cust-42",
        state="closed",
        cart_items=[
            CartItem(sku="SKU-1", quantity=1, price=60.0, name="Shoes", category="shoes"),
            CartItem(sku="SKU-2", quantity=2, price=None, attributes={"color": "red", "size": 42}),
        ],
        coupon_codes=["XMAS-20"],
        referral_code="REF-1",
        loyalty_cards=["card-1"],
        identifiers=["hash-1", "hash-2"],
        additional_costs={"shipping": AdditionalCost(5.0), "wrapping": AdditionalCost(1.5)},
        attributes={"channel": "web", "first": False},
        store_integration_id="store-7",
    ),
)
UPDATE_ABSENT = Command(
    event_id="evt-3",
    session_id="order-1002",
    occurred_at_ms=0,
    payload=UpdateCustomerSession(),
)
UPDATE_EMPTY = Command(
    event_id="evt-4",
    session_id="order-1003",
    occurred_at_ms=-1,
    payload=UpdateCustomerSession(
        profile_id="",
        cart_items=[],
        coupon_codes=[],
        referral_code="",
        loyalty_cards=[],
        identifiers=[],
        additional_costs={},
        attributes={},
    ),
)
RETURN = Command(
    event_id="evt-5",
    session_id="order-1001",
    occurred_at_ms=1_760_000_000_002,
    payload=ReturnCartItems(
        returned_cart_items=[
            ReturnedCartItem(position=1, quantity=1),
            ReturnedCartItem(sku="SKU-2"),
            ReturnedCartItem(),
        ]
    ),
)
COMMANDS = [TRACK, UPDATE_FULL, UPDATE_ABSENT, UPDATE_EMPTY, RETURN]

EFFECTS = EffectsEmitted(
    event_id="evt-2",
    session_id="order-1001",
    profile_id="cust-42",
    command_type="update_customer_session",
    source_topic=COMMANDS_TOPIC,
    source_partition=3,
    source_offset=2**40,
    processed_at_ms=1_760_000_000_123,
    session_state="closed",
    effects=[
        EffectRecord(
            campaign_id=12,
            ruleset_id=34,
            rule_index=0,
            rule_name="XMAS coupon",
            effect_type="acceptCoupon",
            props='{"value":"XMAS-20"}',
            triggered_by_coupon=991,
        ),
        EffectRecord(
            campaign_id=13,
            ruleset_id=35,
            rule_index=1,
            rule_name="5 off per item",
            effect_type="setDiscountPerItem",
            props='{"name":"5off#1","value":5,"position":1,"subPosition":0}',
            triggered_for_catalog_item=77,
            condition_index=2,
            evaluation_group_id=5,
            evaluation_group_mode="stackable",
            campaign_revision_id=8,
            campaign_revision_version_id=9,
        ),
    ],
    created_coupons=[CreatedCouponRecord(id=1, campaign_id=12, value="NEW-COUPON")],
    created_referrals=[
        CreatedReferralRecord(
            id=2, campaign_id=12, code="REF-ABCD", advocate_profile_integration_id="cust-42"
        )
    ],
    dry=True,
)
EFFECTS_EVENT = EffectsEmitted(
    event_id="evt-1",
    session_id="order-1001",
    profile_id=None,
    command_type="track_event",
    source_topic=COMMANDS_TOPIC,
    source_partition=0,
    source_offset=0,
    processed_at_ms=0,
    session_state=None,
    effects=[],
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

    # The same bytes claiming to be the current schema: branch 3 does not exist.
    lying = b"\xc3\x01" + get_schema("Command").fingerprint_bytes + avro_body(newer, datum)
    with pytest.raises(DecodeError) as err:
        Codec().decode_command(lying)
    assert err.value.reason == "invalid"


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


# --- properties -------------------------------------------------------------------------------

json_values: st.SearchStrategy[JsonValue] = st.recursive(
    st.none() | st.booleans() | INT64 | FLOATS | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
attributes = st.dictionaries(st.text(max_size=12), json_values, max_size=4)
short_lists = st.lists(st.text(max_size=12), max_size=3)
optional_text = st.none() | st.text(max_size=20)

cart_items = st.builds(
    CartItem,
    sku=st.text(min_size=1, max_size=12),
    quantity=st.integers(min_value=1, max_value=2**31 - 1),
    price=st.none() | FLOATS,
    name=optional_text,
    category=optional_text,
    attributes=attributes,
)
payloads = st.one_of(
    st.builds(
        TrackEvent,
        type=st.text(min_size=1, max_size=20),
        profile_id=st.text(max_size=20),
        attributes=attributes,
        loyalty_cards=short_lists,
        store_integration_id=optional_text,
    ),
    st.builds(
        UpdateCustomerSession,
        profile_id=optional_text,
        state=STATES,
        cart_items=st.none() | st.lists(cart_items, max_size=3),
        coupon_codes=st.none() | short_lists,
        referral_code=optional_text,
        loyalty_cards=st.none() | short_lists,
        identifiers=st.none() | short_lists,
        additional_costs=st.none()
        | st.dictionaries(st.text(max_size=8), st.builds(AdditionalCost, FLOATS), max_size=3),
        attributes=st.none() | attributes,
        store_integration_id=optional_text,
    ),
    st.builds(
        ReturnCartItems,
        st.lists(
            st.builds(
                ReturnedCartItem,
                position=st.none() | INT32,
                quantity=st.none() | INT32,
                sku=optional_text,
            ),
            max_size=4,
        ),
    ),
)
commands = st.builds(
    Command,
    event_id=st.text(min_size=1, max_size=40),
    session_id=st.text(min_size=1, max_size=40),
    occurred_at_ms=INT64,
    payload=payloads,
    source=optional_text,
    dry=st.booleans(),
)
optional_long = st.none() | INT64
effect_records = st.builds(
    EffectRecord,
    campaign_id=INT64,
    ruleset_id=INT64,
    rule_index=INT32,
    rule_name=st.text(max_size=20),
    effect_type=st.text(max_size=20),
    props=json_values.map(lambda v: orjson.dumps(v).decode()),
    triggered_by_coupon=optional_long,
    triggered_for_catalog_item=optional_long,
    condition_index=st.none() | INT32,
    evaluation_group_id=optional_long,
    evaluation_group_mode=optional_text,
    campaign_revision_id=optional_long,
    campaign_revision_version_id=optional_long,
)
effects_records = st.builds(
    EffectsEmitted,
    event_id=st.text(max_size=40),
    session_id=st.text(max_size=40),
    profile_id=optional_text,
    command_type=st.sampled_from(["track_event", "update_customer_session", "return_cart_items"]),
    source_topic=st.text(max_size=20),
    source_partition=INT32,
    source_offset=INT64,
    processed_at_ms=INT64,
    session_state=st.none()
    | st.sampled_from(["open", "closed", "partially_returned", "cancelled"]),
    effects=st.lists(effect_records, max_size=3),
    created_coupons=st.lists(st.builds(CreatedCouponRecord, INT64, INT64, st.text()), max_size=2),
    created_referrals=st.lists(
        st.builds(CreatedReferralRecord, INT64, INT64, st.text(), st.text()), max_size=2
    ),
    dry=st.booleans(),
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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


@cache
def _fastavro_command() -> Any:
    return fastavro.parse_schema(_strip_logical_types(get_schema("Command").definition))


def _fastavro_body(cmd: Command) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _fastavro_command(), command_to_avro(cmd))
    return out.getvalue()


def _fastavro_read(body: bytes) -> Command:
    buf = io.BytesIO(body)
    datum = fastavro.schemaless_reader(buf, _fastavro_command(), None)
    assert buf.tell() == len(body)
    return command_from_avro(datum)  # type: ignore[arg-type]


@PROPERTY
@given(cmd=commands)
def test_property_command_reader_matches_fastavro(cmd: Command) -> None:
    body = _fastavro_body(cmd)
    assert command_reader.read(body, 0) == _fastavro_read(body) == cmd


@PROPERTY
@given(cmd=commands, data=st.data())
def test_property_command_reader_accepts_nothing_fastavro_refuses(
    cmd: Command, data: st.DataObject
) -> None:
    # Damaged commands: whatever the hand-written reader accepts, fastavro reads the same way.
    body = bytearray(_fastavro_body(cmd))
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
    assert _fastavro_read(bytes(body)) == fast


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
    assert codec._read_command is command_reader.read
    assert codec.decode_command(data) == UPDATE_FULL


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
