"""Parking chains: tokens bind a record to its place, and the worker's own echoes are ignored."""

from __future__ import annotations

import dataclasses

from bridge.kafka.records import InputRecord
from bridge.worker.parking import ParkedSession, ParkingLot, encode_parked, precedes

SRC = "talon.commands/1/41"


def test_a_token_proves_one_position_source_and_value_under_one_secret() -> None:
    chain = dataclasses.replace(ParkedSession.new("talon.commands/1/40", "permanent", "e1"), size=3)
    token = chain.token(1, SRC, b"value")
    assert chain.position_of(SRC, "1", token, b"value") == 1
    assert chain.position_of(SRC, "1", token, b"other value") is None
    assert chain.position_of(SRC, "2", token, b"value") is None
    assert chain.position_of("talon.commands/1/42", "1", token, b"value") is None
    assert chain.position_of(SRC, "1", "0" * 32, b"value") is None
    assert chain.position_of(SRC, "x", token, b"value") is None
    assert chain.position_of(SRC, None, token, b"value") is None
    assert chain.position_of(SRC, "5", chain.token(5, SRC, b"value"), b"value") is None
    other = dataclasses.replace(ParkedSession.new("talon.commands/1/40", "permanent", "e1"), size=3)
    assert other.position_of(SRC, "1", token, b"value") is None, "each park has its own secret"
    legacy = ParkedSession("talon.commands/1/40", 1, "permanent")
    assert legacy.position_of(SRC, "1", token, b"value") is None


def test_the_chain_survives_the_parking_topic() -> None:
    chain = ParkedSession.new("in/0/7", "permanent", "e7").appended().appended().advanced()
    lot = ParkingLot()
    lot.apply(b"s", encode_parked(chain))
    assert lot.get(b"s") == chain
    lot.apply(b"old", b'{"poison": "in/0/1", "since": 5, "reason": "permanent"}')
    old = lot.get(b"old")
    assert old is not None and (old.secret, old.size, old.next) == (None, 1, 0)


def test_own_writes_read_back_never_roll_a_chain_back() -> None:
    lot = ParkingLot()
    first = ParkedSession.new("in/0/7", "permanent", None)
    lot.put(b"s", first)
    grown = first.appended()
    lot.put(b"s", grown)
    lot.apply(b"s", encode_parked(first))  # the echo of the first write, behind memory
    assert lot.get(b"s") == grown
    lot.apply(b"s", encode_parked(grown))
    assert lot.get(b"s") == grown
    lot.apply(b"s", None)  # someone else's tombstone (replay --discard) still applies
    assert lot.get(b"s") is None
    lot.put(b"s", first)
    lot.release(b"s")
    lot.put(b"s", grown)
    for value in (encode_parked(first), None):  # echoes of the park and of the release
        lot.apply(b"s", value)
    assert lot.get(b"s") == grown


def test_only_a_record_before_the_poison_in_its_partition_precedes_it() -> None:
    def rec(topic: str, partition: int, offset: int) -> InputRecord:
        return InputRecord(topic, partition, offset, b"k", b"v", None, 0)

    poison = "orders.v1/3/100"
    assert precedes(rec("orders.v1", 3, 99), poison)
    assert not precedes(rec("orders.v1", 3, 100), poison)
    assert not precedes(rec("orders.v1", 3, 101), poison)
    assert not precedes(rec("orders.v1", 2, 5), poison)
    assert not precedes(rec("other", 3, 5), poison)
    assert not precedes(rec("orders.v1", 3, 5), "not-coordinates")
