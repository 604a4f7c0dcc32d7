"""Shared pieces of the codec tests: registries, sample records, Hypothesis strategies."""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any, get_args

import fastavro
import orjson
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from bridge.avro.codec import Codec
from bridge.avro.datum import _strip_logical_types
from bridge.avro.mapping import command_from_avro, command_to_avro
from bridge.avro.schemas import get_schema, make_schema
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
    TrackEventV3,
    UpdateCustomerSession,
)
from bridge.types import CommandType

DATA = Path(__file__).resolve().parents[1] / "unit" / "avro" / "data"
COMMANDS_TOPIC = "talon.commands"
EFFECTS_TOPIC = "talon.effects"
ENCODINGS = ["single-object", "confluent"]
SECRET = "s3cr3t-customer-value"

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
STATES = st.sampled_from(get_args(SessionState))


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
TRACK_V3 = Command(
    event_id="evt-6",
    session_id="order-1001",
    occurred_at_ms=1_760_000_000_005,
    payload=TrackEventV3(
        type="order_shipped",
        profile_id="cust-42",
        attributes={"carrier": "dhl", "parcels": 2},
        loyalty_cards=["card-1"],
        store_integration_id="store-7",
        integration_id="order-1001/shipped",
    ),
)
# Without an integrationId of its own: Talon.One gets the eventId.
TRACK_V3_DEFAULT = Command(
    event_id="evt-7",
    session_id="order-1001",
    occurred_at_ms=1_760_000_000_006,
    payload=TrackEventV3(type="order_delivered", profile_id="cust-42"),
)
COMMANDS = [TRACK, UPDATE_FULL, UPDATE_ABSENT, UPDATE_EMPTY, RETURN, TRACK_V3, TRACK_V3_DEFAULT]

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
        TrackEventV3,
        type=st.text(min_size=1, max_size=20),
        profile_id=st.text(max_size=20),
        attributes=attributes,
        loyalty_cards=short_lists,
        store_integration_id=optional_text,
        integration_id=optional_text,
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
    command_type=st.sampled_from(get_args(CommandType)),
    source_topic=st.text(max_size=20),
    source_partition=INT32,
    source_offset=INT64,
    processed_at_ms=INT64,
    session_state=st.none() | STATES,
    effects=st.lists(effect_records, max_size=3),
    created_coupons=st.lists(st.builds(CreatedCouponRecord, INT64, INT64, st.text()), max_size=2),
    created_referrals=st.lists(
        st.builds(CreatedReferralRecord, INT64, INT64, st.text(), st.text()), max_size=2
    ),
    dry=st.booleans(),
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def _fastavro_command() -> Any:
    return fastavro.parse_schema(_strip_logical_types(get_schema("Command").definition))


def fastavro_body(cmd: Command) -> bytes:
    """`cmd` as fastavro writes it with the bundled Command schema (the reference encoder)."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _fastavro_command(), command_to_avro(cmd))
    return out.getvalue()


def fastavro_read(body: bytes) -> Command:
    """`body` as fastavro reads it, the whole of it (the reference decoder)."""
    buf = io.BytesIO(body)
    datum = fastavro.schemaless_reader(buf, _fastavro_command(), None)
    assert buf.tell() == len(body)
    return command_from_avro(datum)  # type: ignore[arg-type]
