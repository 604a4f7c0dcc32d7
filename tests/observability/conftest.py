"""Fixtures of the observability tests: Prometheus binaries and one observed bridge run.

`observed_run` is one whole deployment under load, shared by the tests that look at what a
running worker exposes: a real broker, the Talon.One simulator with injected faults, a worker
subprocess, and a Prometheus scraping it every second with our alert rules loaded.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.avro.codec import Codec
from bridge.commands import CartItem, Command, UpdateCustomerSession
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess
from bridge.tools.produce import LoadSpec, generate, produce_commands
from tests.support.ci import IN_CI
from tests.support.observability import (
    ALERTS,
    API_KEY,
    INSTALL_SCRIPT,
    LABELS,
    POISON_ATTRIBUTE,
    ObservedRun,
    PrometheusProcess,
    wait_until,
)


def _install_prometheus() -> str | None:
    """Install prometheus/promtool when missing; the reason when that is impossible."""
    if shutil.which("prometheus") and shutil.which("promtool"):
        return None
    try:
        proc = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{INSTALL_SCRIPT.name} failed: {exc}"
    if proc.returncode != 0 or not (shutil.which("prometheus") and shutil.which("promtool")):
        return f"{INSTALL_SCRIPT.name} exited {proc.returncode}: {proc.stderr[-2000:]}"
    return None


@pytest.fixture(scope="session")
def prometheus_install() -> str | None:
    """None once prometheus and promtool are on PATH, else why they could not be installed."""
    return _install_prometheus()


@pytest.fixture(scope="session")
def promtool(prometheus_install: str | None) -> str:
    if prometheus_install is not None:
        if IN_CI:
            pytest.fail(prometheus_install, pytrace=False)
        pytest.skip(prometheus_install)
    path = shutil.which("promtool")
    assert path is not None
    return path


def _topics(admin: AdminClient, run: str) -> dict[str, str]:
    names = {
        "input": (f"obs-in-{run}", 3, {}),
        "output": (f"obs-out-{run}", 3, {}),
        # Smaller than the input topic's limit: a large dead letter is refused (see below).
        "dlq": (f"obs-dlq-{run}", 3, {"max.message.bytes": "4096"}),
        "parking": (f"obs-park-{run}", 1, {"cleanup.policy": "compact"}),
    }
    new = [NewTopic(n, p, replication_factor=1, config=c) for n, p, c in names.values()]
    futures = admin.create_topics(new)
    for future in futures.values():
        future.result(timeout=30)
    return {role: spec[0] for role, spec in names.items()}


def _noise(size: int) -> str:
    """`size` hex digits that compression cannot shrink much."""
    return random.Random(size).randbytes(size // 2).hex()


def _poison(run: str, n: int, size: int = 0) -> list[Command]:
    """Commands whose session attribute Talon.One rejects (400): each goes to the DLQ."""
    kind = f"big{size}" if size else "poison"
    return [
        Command(
            event_id=f"{run}:{kind}:{i}",
            session_id=f"{run}-{kind}-{i}",
            occurred_at_ms=0,
            payload=UpdateCustomerSession(
                profile_id=f"{run}-poison-profile-{i}",
                cart_items=[CartItem(sku="SKU-SHOE-1", quantity=1, price=89.0, name=_noise(size))],
                attributes={POISON_ATTRIBUTE: "1"},
            ),
        )
        for i in range(n)
    ]


def _processed(worker: WorkerProcess) -> float:
    return worker.metric_sum("bridge_commands_processed_total")


@pytest.fixture(scope="session")
def observed_run(
    kafka_bootstrap: str, kafka_admin: AdminClient, prometheus_install: str | None
) -> Iterator[ObservedRun]:
    run = uuid.uuid4().hex[:8]
    topics = _topics(kafka_admin, run)
    conf = {"bootstrap.servers": kafka_bootstrap}
    simulator = SimulatorProcess(
        api_key=API_KEY, args=["--latency-ms", "5", "--latency-jitter-ms", "3", "--seed", "11"]
    ).start()
    prometheus: PrometheusProcess | None = None
    worker: WorkerProcess | None = None
    try:
        # A few percent of every retryable failure, lost responses (read timeouts, then an
        # idempotent replay on retry) and one rejected attribute for the dead-letter path.
        simulator.set_faults(
            rate_429=0.03,
            rate_500=0.02,
            rate_503=0.01,
            rate_reset=0.01,
            rate_lost_response=0.01,
            hang_s=1.0,
            reject_attributes=[POISON_ATTRIBUTE],
        )
        worker = WorkerProcess(
            {
                "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "BRIDGE_INPUT_TOPICS": topics["input"],
                "BRIDGE_OUTPUT_TOPIC": topics["output"],
                "BRIDGE_DLQ_TOPIC": topics["dlq"],
                "BRIDGE_PARKING_TOPIC": topics["parking"],
                "BRIDGE_GROUP_ID": f"obs-{run}",
                "BRIDGE_TALON_BASE_URL": simulator.base_url,
                "BRIDGE_TALON_ALLOW_INSECURE_HTTP": "true",
                "BRIDGE_TALON_API_KEY": API_KEY,
                "BRIDGE_TALON_READ_TIMEOUT": "0.5",
                "BRIDGE_COMMIT_INTERVAL": "0.5",
                "BRIDGE_DRAIN_TIMEOUT": "5",
                # Lag is reported from librdkafka's statistics; every second instead of 15.
                "BRIDGE_KAFKA_CONFIG": json.dumps({"statistics.interval.ms": 1000}),
            }
        )
        if prometheus_install is None:
            prometheus = PrometheusProcess(
                [f"127.0.0.1:{worker.metrics_port}"], labels=LABELS, rule_files=[ALERTS]
            ).start()
        worker.start()

        load = list(generate(LoadSpec(sessions=400, total=3000, run_id=f"obs{run}")))
        poison = _poison(run, 5)
        first, during = load[:1500], load[1500:1600]
        rest = [*load[1600:2200], *poison, *load[2200:]]
        encode = Codec().encode_command

        def produce(commands: list[Command]) -> None:
            produce_commands(conf, topics["input"], iter(commands), encode=encode)

        produce(first)
        wait_until(lambda: _processed(worker) >= len(first), 120, "the first part processed")

        # A short API key rejection under traffic: the worker pauses, probes, and resumes.
        simulator.set_faults(auth_failure=True)
        produce(during)
        wait_until(
            lambda: worker.metrics().get('bridge_api_auth_ok{application="default"}') == 0,
            30,
            "the key rejected",
        )
        if prometheus is not None:
            wait_until(
                lambda: bool(prometheus.query("min_over_time(bridge_api_auth_ok[1m]) == 0")),
                30,
                "Prometheus to see the rejected key",
            )
        simulator.set_faults(auth_failure=False)
        produce(rest)
        total = len(load) + len(poison)
        wait_until(lambda: _processed(worker) >= total, 180, "every command processed")
        if prometheus is not None:
            prom = prometheus
            wait_until(
                lambda: (
                    (prom.value("sum(bridge_commands_processed_total)") or 0) >= total
                    and (prom.value("count(bridge_consumer_lag_records)") or 0) > 0
                ),
                60,
                "Prometheus to scrape the finished run",
            )
        # A large poison record: its dead letter exceeds the DLQ topic's max.message.bytes,
        # so the producer reports a delivery failure (then sends it again without its value).
        big = _poison(run, 1, size=8192)
        produce(big)
        wait_until(
            lambda: worker.metric_sum("bridge_producer_delivery_failures_total") >= 1,
            60,
            "dead-letter delivery failures",
        )
        if prometheus is not None:
            prom = prometheus
            wait_until(
                lambda: (prom.value("sum(bridge_producer_delivery_failures_total)") or 0) >= 1,
                30,
                "Prometheus to see the delivery failures",
            )
        yield ObservedRun(
            worker=worker,
            simulator=simulator,
            prometheus=prometheus,
            input_topic=topics["input"],
            commands=total,
            poison_event_ids=[c.event_id for c in poison],
        )
    finally:
        if worker is not None:
            worker.kill()
        if prometheus is not None:
            prometheus.stop()
        simulator.stop()
