"""The worker's log over a whole run: no secrets or customer data, coordinates on record lines.

One worker runs a few hundred commands whose attributes, cart items and coupons carry
recognisable values, through retries, a poison command (dead-lettered and parked), a short API
key rejection and a graceful stop. Then its log must not contain the API key or any of those
values, and every line about a record must say where the record is.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.avro.codec import Codec
from bridge.commands import CartItem, Command, TrackEvent, UpdateCustomerSession
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess
from bridge.tools.produce import produce_commands
from tests.support.observability import wait_until

pytestmark = pytest.mark.kafka

API_KEY = "tb-secret-key-3f9d1c77e2a04b6b"
SAMPLES = {
    "session": "secret-attr-value-8f3a",
    "cart": "secret-cart-value-41be",
    "event": "secret-event-value-c90d",
    "coupon": "SECRETCOUPON77AB",
    "poison": "secret-poison-value-e5a2",
}
POISON = "x-poison"


def _commands(run: str, sessions: int) -> list[Command]:
    out: list[Command] = []
    for n in range(sessions):
        session, profile = f"{run}-s{n}", f"{run}-p{n}"
        cart = [
            CartItem(
                sku="SKU-SHIRT-1",
                quantity=1,
                price=19.5,
                attributes={"engraving": SAMPLES["cart"]},
            )
        ]
        payloads = [
            UpdateCustomerSession(
                profile_id=profile, cart_items=cart, attributes={"note": SAMPLES["session"]}
            ),
            TrackEvent(
                type="product_viewed", profile_id=profile, attributes={"ref": SAMPLES["event"]}
            ),
            UpdateCustomerSession(
                profile_id=profile, cart_items=cart, coupon_codes=[SAMPLES["coupon"]]
            ),
            UpdateCustomerSession(profile_id=profile, state="closed", cart_items=cart),
        ]
        if n % 25 == 0:  # a poison command mid-lifecycle; the session parks behind it
            payloads.insert(
                1,
                UpdateCustomerSession(profile_id=profile, attributes={POISON: SAMPLES["poison"]}),
            )
        out += [Command(f"{run}:{session}:{i}", session, 0, p) for i, p in enumerate(payloads)]
    return out


def _topics(admin: AdminClient, run: str) -> dict[str, str]:
    names = {r: f"logs-{r}-{run}" for r in ("in", "out", "dlq", "park")}
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                1 if role == "park" else 3,
                replication_factor=1,
                config={"cleanup.policy": "compact"} if role == "park" else {},
            )
            for role, name in names.items()
        ]
    )
    for future in futures.values():
        future.result(timeout=30)
    return names


def test_log_holds_no_secrets_and_locates_every_record(
    kafka_bootstrap: str, kafka_admin: AdminClient
) -> None:
    run = uuid.uuid4().hex[:8]
    topics = _topics(kafka_admin, run)
    commands = _commands(run, 100)
    poisoned = {
        c.event_id
        for c in commands
        if isinstance(c.payload, UpdateCustomerSession) and POISON in (c.payload.attributes or {})
    }
    conf = {"bootstrap.servers": kafka_bootstrap}

    def produce(batch: list[Command]) -> None:
        produce_commands(conf, topics["in"], iter(batch), encode=Codec().encode_command)

    with SimulatorProcess(api_key=API_KEY, args=["--latency-ms", "2"]) as sim:
        sim.set_faults(rate_429=0.05, rate_500=0.05, reject_attributes=[POISON])
        worker = WorkerProcess(
            {
                "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "BRIDGE_INPUT_TOPICS": topics["in"],
                "BRIDGE_OUTPUT_TOPIC": topics["out"],
                "BRIDGE_DLQ_TOPIC": topics["dlq"],
                "BRIDGE_PARKING_TOPIC": topics["park"],
                "BRIDGE_GROUP_ID": f"logs-{run}",
                "BRIDGE_TALON_BASE_URL": sim.base_url,
                "BRIDGE_TALON_ALLOW_INSECURE_HTTP": "true",
                "BRIDGE_TALON_API_KEY": API_KEY,
                "BRIDGE_LOG_LEVEL": "DEBUG",
                "BRIDGE_COMMIT_INTERVAL": "0.5",
            }
        )

        def processed() -> float:
            return worker.metric_sum("bridge_commands_processed_total")

        with worker:
            half = len(commands) // 2
            produce(commands[:half])
            wait_until(lambda: processed() >= half, 120, "the first half processed")
            sim.set_faults(auth_failure=True)
            produce(commands[half : half + 20])
            wait_until(
                lambda: worker.metrics().get('bridge_api_auth_ok{application="default"}') == 0,
                30,
                "the key rejected",
            )
            sim.set_faults(auth_failure=False)
            produce(commands[half + 20 :])
            wait_until(lambda: processed() >= len(commands), 120, "every command processed")
            assert worker.stop() == 0
    log = worker.log_text()

    assert "worker stopped" in log
    assert API_KEY not in log
    leaked = [name for name, value in SAMPLES.items() if value in log]
    assert not leaked, f"customer data in the log: {leaked}"

    records = []
    for line in log.splitlines():
        entry = json.loads(line)  # every line is one JSON object, librdkafka's too
        if "event_id" in entry:
            records.append(entry)
    where = re.compile(rf"^{re.escape(topics['in'])}\[\d+\]@\d+$")
    unlocated = [r for r in records if not where.fullmatch(str(r.get("where")))]
    assert not unlocated, f"record lines without topic[partition]@offset: {unlocated[:3]}"
    dead = {r["event_id"] for r in records if r["msg"] == "dead-lettering a command"}
    assert dead == poisoned
    assert any(r["msg"] == "session parked behind its dead letter" for r in records)
