"""Profile routing: Kafka's murmur2, the partition it picks, and sessions that name no profile."""

from __future__ import annotations

import pytest

from bridge.commands import Command, ReturnCartItems, ReturnedCartItem, TrackEvent
from bridge.commands import UpdateCustomerSession as Update
from bridge.routing import ProfileRouter, murmur2, partition

# Apache Kafka's UtilsTest.testMurmur2 vectors (Java's signed ints), and the empty input.
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"": 275646681,
}


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS.items())
def test_murmur2_matches_kafkas_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_is_kafkas_default_partitioner_on_the_profile() -> None:
    # Java: Utils.toPositive(Utils.murmur2("foobar".getBytes())) % 50 == 16
    assert partition("foobar", "cart-1", 50) == 16
    # A negative hash keeps its low 31 bits, as toPositive does: not abs().
    assert partition("21", "cart-1", 1000) == (-973932308 & 0x7FFFFFFF) % 1000


def test_partition_is_stable() -> None:
    # Pinned (and what librdkafka's murmur2 partitioner picks for these keys, see
    # tests/integration/test_profile_routing.py): producers in other languages and records
    # already written depend on them never moving.
    got = [partition(f"customer-{n}", "cart-1", 12) for n in range(8)]
    assert got == [7, 9, 2, 10, 1, 6, 7, 7]


def test_every_session_of_a_profile_shares_a_partition() -> None:
    assert len({partition("customer-42", f"cart-{n}", 12) for n in range(100)}) == 1
    assert len({partition(f"customer-{n}", "cart-1", 12) for n in range(100)}) > 1


def test_an_anonymous_session_goes_where_its_key_would() -> None:
    for anonymous in (None, ""):
        assert partition(anonymous, "cart-1", 12) == partition("cart-1", "other", 12)


def test_partitions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="partitions"):
        partition("customer-42", "cart-1", 0)


def _cmd(session: str, payload: Update | TrackEvent | ReturnCartItems) -> Command:
    return Command(f"{session}:{id(payload)}", session, 0, payload)


def test_commands_without_a_profile_follow_their_session() -> None:
    router = ProfileRouter()
    want = partition("customer-42", "cart-1", 12)
    ret = ReturnCartItems([ReturnedCartItem(position=0)])
    assert router.partition(_cmd("cart-1", Update(profile_id="customer-42")), 12) == want
    assert router.partition(_cmd("cart-1", Update(state="closed")), 12) == want
    assert router.partition(_cmd("cart-1", ret), 12) == want
    assert router.partition(_cmd("cart-1", TrackEvent("viewed", "customer-42")), 12) == want
    assert router.unknown == 0


def test_a_session_keeps_its_partition_when_its_profile_changes() -> None:
    router = ProfileRouter()
    first = router.partition(_cmd("cart-1", Update(profile_id="")), 12)
    assert first == partition(None, "cart-1", 12)
    # Logging in names a profile; moving now could apply the session out of order.
    assert partition("customer-1", "cart-1", 12) != first
    assert router.partition(_cmd("cart-1", Update(profile_id="customer-1")), 12) == first
    assert router.unknown == 0


def test_a_session_whose_first_command_names_no_profile_is_routed_by_its_id() -> None:
    router = ProfileRouter()
    ret = ReturnCartItems([ReturnedCartItem(position=0)])
    assert router.partition(_cmd("cart-9", ret), 12) == partition(None, "cart-9", 12)
    assert router.partition(_cmd("cart-9", ret), 12) == partition(None, "cart-9", 12)
    assert router.unknown == 1
