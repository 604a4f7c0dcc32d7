"""Profile routing on the real broker: librdkafka agrees on the partition, `send` uses it, and
two workers no longer meet on one customer profile."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from bridge.avro.codec import Codec
from bridge.cli import main
from bridge.commands import Command, TrackEvent
from bridge.routing import ProfileRouter, partition
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, read_topic, wait_for
from bridge.tools.produce import produce_commands
from tests.support.bridge import Bridge
from tests.support.environment import clean_environment
from tests.support.oracle import assert_applied_in_order

pytestmark = pytest.mark.kafka


def test_librdkafkas_murmur2_partitioner_picks_the_same_partitions(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("murmur2", 12)
    profiles = [f"customer-{n}" for n in range(40)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    landed: dict[str, int] = {}

    def report(err: object, msg: object) -> None:
        assert err is None
        landed[msg.key().decode()] = msg.partition()  # type: ignore[attr-defined]

    for profile in profiles:
        producer.produce(topic, key=profile.encode(), value=b"", on_delivery=report)
    assert producer.flush(30) == 0
    assert landed == {p: partition(p, "cart-1", 12) for p in profiles}


def test_send_puts_a_customers_sessions_on_its_profiles_partition(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = topic_factory("send-profile", 12)
    clean_environment(
        monkeypatch,
        {
            "BRIDGE_SECRETS_DIR": str(tmp_path / "no-secrets"),
            "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "BRIDGE_INPUT_TOPICS": topic,
        },
    )
    lines = []
    for n in range(20):
        session = f"cart-{n}"
        lines += [
            {
                "commandType": "update_customer_session",
                "eventId": f"{session}:0",
                "sessionId": session,
                "payload": {"profileId": "customer-42", "state": "closed"},
            },
            {
                "commandType": "return_cart_items",
                "eventId": f"{session}:1",
                "sessionId": session,
                "payload": {"returnedCartItems": [{"position": 0, "quantity": 1}]},
            },
        ]
    # A session whose profile the input never names goes by its session ID.
    lines.append(
        {
            "commandType": "return_cart_items",
            "eventId": "cart-x:0",
            "sessionId": "cart-x",
            "payload": {"returnedCartItems": [{"position": 0}]},
        }
    )
    path = tmp_path / "commands.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines))

    assert main(["send", "--route-by", "profile", str(path)]) == 0
    err = capsys.readouterr().err
    assert "1 session(s) named no profile in their first command" in err

    records = read_topic({"bootstrap.servers": kafka_bootstrap}, topic, expected=len(lines))
    where = {r.key().decode(): r.partition() for r in records}
    assert {where[f"cart-{n}"] for n in range(20)} == {partition("customer-42", "", 12)}
    assert where["cart-x"] == partition(None, "cart-x", 12)


# Under profile routing these land on partitions 2, 4, 5 and 3 of six, so both workers of a
# group splitting them 3 and 3 have customers of their own.
PROFILES = ["route-p0", "route-p1", "route-p2", "route-p4"]


def _events(sessions: int, each: int) -> list[Command]:
    """`each` events for every one of `sessions` sessions, spread over the customers of
    PROFILES, interleaved so that every customer has events of several sessions waiting."""
    return [
        Command(
            f"route:s{s}:{k}",
            f"route-s{s}",
            0,
            TrackEvent("product_viewed", PROFILES[s % len(PROFILES)], {"k": k}),
        )
        for k in range(each)
        for s in range(sessions)
    ]


@pytest.mark.parametrize("route_by", ["session", "profile"])
def test_two_workers_meet_on_a_profile_only_without_profile_routing(
    route_by: str, bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=6)
    commands = _events(sessions=48, each=8)
    simulator.set_faults(latency_ms=10, latency_jitter_ms=2)
    first, second = WorkerProcess(bridge.env).start(), WorkerProcess(bridge.env).start()
    try:
        # Both own partitions before any command exists, so both work at once.
        wait_for(
            lambda: (
                all(w.metric_sum("bridge_assigned_partitions") > 0 for w in (first, second))
                and first.metric_sum("bridge_assigned_partitions")
                + second.metric_sum("bridge_assigned_partitions")
                == 6
            ),
            60,
            "both workers to own partitions",
        )
        router = ProfileRouter().partition if route_by == "profile" else None
        produce_commands(
            bridge.conf,
            bridge.input,
            iter(commands),
            encode=Codec().encode_command,
            partitioner=router,
        )
        wait_for(lambda: simulator.stats()["applied"] >= len(commands), 120, "all applied")
        assert first.stop() == 0
        assert second.stop() == 0
    finally:
        first.kill()
        second.kill()
    kinds = simulator.stats()["conflicts_by_kind"]
    print(f"partition by {route_by}: 409s {kinds}")
    assert kinds["session"] == 0, kinds
    if route_by == "profile":
        assert kinds["profile"] == 0, kinds
    else:
        # Each worker runs one event per profile at a time; across two they collide.
        assert kinds["profile"] > 0, kinds
    assert_applied_in_order(commands, simulator.journal())
