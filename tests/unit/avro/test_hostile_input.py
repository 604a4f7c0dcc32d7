"""Hostile records: whatever bytes a producer writes, decoding ends in a `DecodeError`, soon,
in little memory, and the worker dead-letters the record instead of losing its batch."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from datetime import timedelta
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.avro import reader as command_reader
from bridge.avro.codec import Codec
from bridge.avro.datum import has_empty_items
from bridge.avro.schemas import get_schema
from bridge.commands import (
    AdditionalCost,
    CartItem,
    Command,
    ReturnCartItems,
    ReturnedCartItem,
    TrackEvent,
    UpdateCustomerSession,
)
from bridge.errors import DecodeError
from bridge.kafka.records import InputRecord
from bridge.replay.kafka import DlqReader
from bridge.settings import Settings
from bridge.worker.root import Worker

HEADER = 10  # single-object framing: C3 01 and the fingerprint
FAST = Codec()  # the hand-written reader, and fastavro for what it refuses
SLOW = Codec()
SLOW._read_command = None  # fastavro only


def zigzag(n: int) -> bytes:
    """`n` as an Avro long (zig-zag varint)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def huge_length_command(session_id: str = "s-1") -> bytes:
    """A session update whose additional-cost name claims 2**63 - 1 bytes.

    The bytes after the name are valid UTF-8, so a reader that slices past the end and reads on
    gets as far as the cost's double, at an offset beyond any index.
    """
    cmd = Command(
        "e-huge",
        session_id,
        1,
        UpdateCustomerSession(additional_costs={"ship": AdditionalCost(0.0)}),
    )
    data = FAST.encode_command(cmd, "commands")
    at = data.index(b"\x08ship")
    return data[:at] + zigzag(2**63 - 1) + data[at + 1 :]


def decode_everywhere(data: bytes) -> None:
    """Decode with the hand-written reader alone, the codec, and fastavro alone."""
    try:
        command_reader.read(data, HEADER)
    except command_reader.Unreadable:
        pass
    for codec in (FAST, SLOW):
        try:
            codec.decode_command(data)
        except DecodeError:
            pass


def test_a_string_length_near_2_63_is_a_decode_error() -> None:
    data = huge_length_command()
    with pytest.raises(command_reader.Unreadable):
        command_reader.read(data, HEADER)
    for codec in (FAST, SLOW):
        with pytest.raises(DecodeError):
            codec.decode_command(data)


class _Watched(bytes):
    """Bytes that remember the furthest index read one at a time."""

    furthest = 0

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, int):
            self.furthest = max(self.furthest, i)
        return super().__getitem__(i)


def test_a_long_run_of_continuation_bytes_is_refused_at_once() -> None:
    # Read bit by bit, with ever larger integers, a megabyte of them would hold the event loop
    # for over a minute: the reader gives up after the ten bytes a long can take.
    data = FAST.encode_command(Command("e", "s", 1, TrackEvent("t", "p")), "commands")
    run = _Watched(data[:HEADER] + b"\x02e\x02s" + b"\xff" * 100_000 + b"\x01")
    with pytest.raises(command_reader.Unreadable):
        command_reader.read(run, HEADER)
    assert run.furthest < HEADER + 4 + 10
    with pytest.raises(DecodeError):
        FAST.decode_command(bytes(run))


def test_unexpected_failures_of_the_codec_become_decode_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*_: Any) -> Any:
        raise OverflowError("Python int too large to convert to C ssize_t")

    monkeypatch.setattr("bridge.avro.codec.command_from_avro", explode)
    monkeypatch.setattr("bridge.avro.codec.effects_from_avro", explode)
    codec = Codec()
    codec._read_command = None
    data = codec.encode_command(Command("e", "s", 1, TrackEvent("t", "p")), "commands")
    with pytest.raises(DecodeError) as err:
        codec.decode_command(data)
    assert err.value.reason == "invalid"
    assert "OverflowError" in err.value.message


# --- property: mutated valid records --------------------------------------------------------

text = st.text(max_size=8)
attributes = st.dictionaries(text, st.integers(-(2**63), 2**63 - 1) | text | st.none(), max_size=3)
cart = st.lists(
    st.builds(CartItem, text, st.integers(-(2**31), 2**31 - 1), st.none() | st.floats()),
    max_size=4,
)
payloads = st.one_of(
    st.builds(TrackEvent, text, text, attributes, st.lists(text, max_size=2)),
    st.builds(
        UpdateCustomerSession,
        profile_id=st.none() | text,
        cart_items=st.none() | cart,
        coupon_codes=st.none() | st.lists(text, max_size=3),
        additional_costs=st.none()
        | st.dictionaries(text, st.builds(AdditionalCost, st.floats()), max_size=3),
        attributes=st.none() | attributes,
    ),
    st.builds(
        ReturnCartItems,
        st.lists(st.builds(ReturnedCartItem, st.none() | st.integers(0, 9)), max_size=3),
    ),
)
commands = st.builds(Command, text, text, st.integers(-(2**63), 2**63 - 1), payloads)
# Lengths and counts a hostile producer would pick: past any buffer, negative, at the edges.
lengths = st.sampled_from([2**63 - 1, 2**62, 2**32, 2**31, -1, -(2**31), -(2**63)]) | st.integers(
    -(2**63), 2**63 - 1
)
EDITS = ["length", "cut", "flip", "byte", "run", "insert"]


def mutate(data: bytes, draw: Any) -> bytes:
    body = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(HEADER, len(body)))
        edit = draw(st.sampled_from(EDITS))
        if edit == "length":  # one varint (a string length or block count) becomes another
            body[at : at + 1] = zigzag(draw(lengths))
        elif edit == "cut":
            del body[at:]
        elif edit == "flip" and at < len(body):
            body[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "byte" and at < len(body):
            body[at] = draw(st.integers(0, 255))
        elif edit == "run":  # a varint that never ends
            body[at:at] = b"\xff" * draw(st.sampled_from([10, 11, 64, 4096]))
        else:
            body[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(body)


# A generous deadline per example: reading a record is microseconds, and a pathological one
# (a varint read bit by bit, a quadratic walk) runs for seconds.
FUZZ = settings(
    max_examples=2000,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(cmd=commands, data=st.data())
def test_property_mutated_records_only_raise_decode_error(cmd: Command, data: Any) -> None:
    record = mutate(FAST.encode_command(cmd, "commands"), data.draw)
    tracemalloc.start()
    try:
        decode_everywhere(record)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Decoding may build a few objects per input byte, never anything sized by a length field.
    assert peak < 64 * len(record) + 512 * 1024


# --- the consumers of decoded records ---------------------------------------------------------


class _Message:
    """The parts of a consumed librdkafka message the DLQ reader looks at."""

    def __init__(self, value: bytes) -> None:
        self._value = value

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return "dlq"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)

    def key(self) -> bytes:
        return b"s-1"

    def headers(self) -> list[tuple[str, bytes]]:
        return []


def test_the_replay_reader_lists_a_hostile_dead_letter_as_unknown() -> None:
    reader = DlqReader.__new__(DlqReader)
    reader.topic, reader._codec = "dlq", FAST
    record = InputRecord.from_message(_Message(huge_length_command()))  # type: ignore[arg-type]
    listed = reader._record(record, keep_value=True)
    assert (listed.command_type, listed.event_id) == ("unknown", None)


class _ExplodingCodec(Codec):
    """Fails one record the way no decode error is expected to."""

    def decode_command(self, data: bytes | None, *, fetch: bool = True) -> Command:
        if data == b"explode":
            raise OverflowError("Python int too large to convert to C ssize_t")
        return super().decode_command(data, fetch=fetch)


async def test_an_unexpected_decode_failure_dead_letters_the_record_not_the_batch() -> None:
    settings_ = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        input_topics=["in"],
        talon_base_url="https://127.0.0.1:1",
        talon_api_key="k",
    )
    worker = Worker(settings_, codec=_ExplodingCodec())
    worker.assigned.add(("in", 0))
    values = [
        FAST.encode_command(Command("e-1", "s-1", 1, TrackEvent("t", "p")), "in"),
        b"explode",
        FAST.encode_command(Command("e-3", "s-1", 1, TrackEvent("t", "p")), "in"),
    ]
    worker.on_batch(
        [InputRecord("in", 0, offset, b"s-1", v, None, 0) for offset, v in enumerate(values)]
    )
    assert worker.pipeline.buffered == 3, "every record of the batch is taken in"
    queued = [entry.item for entry in worker.sequencer.remove_where(lambda _: True)[0]]
    assert [w.rec.offset for w in queued] == [0, 1, 2], "in order, behind one another"
    hostile = queued[1]
    assert hostile.command is None and hostile.error is not None
    assert hostile.error.reason == "internal"
    assert queued[2].command is not None and queued[2].command.event_id == "e-3"
    await worker.client.aclose()
    await asyncio.sleep(0)


# --- writer schemas from the registry -----------------------------------------------------


def test_a_registry_schema_with_an_array_of_nothing_is_refused() -> None:
    # A few bytes would claim 2**62 nulls, which fastavro skips one by one, for good.
    definition = json.loads(get_schema("Command").to_json())
    junk = {"name": "junk", "type": {"type": "array", "items": "null"}, "default": []}
    definition["fields"].append(junk)
    registry = SchemaRegistryClient.new_client({"url": "mock://hostile"})
    schema_id = registry.register_schema("commands-value", Schema(json.dumps(definition), "AVRO"))
    body = FAST.encode_command(Command("e", "s", 1, TrackEvent("t", "p")), "commands")[HEADER:]
    data = b"\x00" + schema_id.to_bytes(4, "big") + body + zigzag(2**62) + b"\x00"
    with pytest.raises(DecodeError) as err:
        Codec(registry=registry).decode_command(data)
    assert err.value.reason == "incompatible-schema"


def _record(*fields: Any, name: str = "R") -> dict[str, Any]:
    return {
        "type": "record",
        "name": name,
        "fields": [{"name": f"f{n}", "type": t} for n, t in enumerate(fields)],
    }


@pytest.mark.parametrize(
    ("schema", "refused"),
    [
        (_record({"type": "array", "items": "string"}), False),
        (_record({"type": "array", "items": "null"}), True),
        (_record({"type": "array", "items": _record(name="Empty")}), True),
        (_record({"type": "array", "items": _record("null", name="Nulls")}), True),
        (_record({"type": "array", "items": {"type": "fixed", "name": "F", "size": 0}}), True),
        (_record(["null", {"type": "array", "items": "null"}]), True),
        (_record({"type": "map", "values": {"type": "array", "items": "null"}}), True),
        (_record({"type": "map", "values": "null"}), False),  # each entry has a key
        (_record({"type": "array", "items": ["null", "string"]}), False),
        (_record(["null", "R"], {"type": "array", "items": "R"}), False),  # recursive
    ],
)
def test_arrays_of_items_that_take_no_bytes_are_found(schema: Any, refused: bool) -> None:
    assert has_empty_items(fastavro.parse_schema(schema)) is refused
