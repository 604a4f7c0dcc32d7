"""`talon-bridge demo` (behind `make demo`): the whole product on one machine, end to end.

A local Kafka broker (unless one is given), the Talon.One simulator at a realistic latency,
one bridge worker, and a few thousand commands of realistic session lifecycles. It shows live
progress, prints a summary, and shuts everything down cleanly.

``--encoding confluent`` runs it in the Schema Registry wire format, against the registry
``SCHEMA_REGISTRY_URL`` names, else a local one (`bridge.tools.localregistry`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

__all__ = ["HELP", "configure", "run"]

HELP = "run a local broker, the simulator and the bridge on a few thousand commands"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=1000, help="session lifecycles")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulated API latency")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds to wait for work")
    parser.add_argument(
        "--encoding",
        choices=["single-object", "confluent"],
        default="single-object",
        help="wire format; confluent uses $SCHEMA_REGISTRY_URL, else starts a local registry",
    )


@contextlib.contextmanager
def _broker() -> Iterator[str]:
    given = os.environ.get("BRIDGE_KAFKA_BOOTSTRAP_SERVERS") or os.environ.get(
        "KAFKA_BOOTSTRAP_SERVERS"
    )
    if given:
        yield given
        return
    from bridge.tools.localkafka import LocalKafka

    _say("starting a local Apache Kafka broker (KRaft)")
    with LocalKafka() as broker:
        yield broker.bootstrap


@contextlib.contextmanager
def _registry(encoding: str) -> Iterator[str | None]:
    if encoding != "confluent":
        yield None
        return
    if given := os.environ.get("SCHEMA_REGISTRY_URL"):
        yield given
        return
    from bridge.tools.localregistry import LocalRegistry

    _say("starting a local Schema Registry (Apicurio Registry)")
    with LocalRegistry() as registry:
        yield registry.url


@contextlib.contextmanager
def _codec(registry_url: str | None) -> Iterator[Any]:
    from bridge.avro.codec import Codec

    if registry_url is None:
        yield Codec()
        return
    from bridge.kafka.registry_client import new_registry_client

    client = new_registry_client({"url": registry_url, "timeout": 10})
    try:
        yield Codec("confluent", registry=client)
    finally:
        client.close()


def _say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run(args: argparse.Namespace) -> int:
    from bridge.simulator.process import SimulatorProcess
    from bridge.tools.harness import WorkerProcess, create_bridge_topics, read_topic, worker_env
    from bridge.tools.produce import LoadSpec, generate, produce_commands

    run_id = f"demo-{uuid.uuid4().hex[:6]}"
    with _broker() as bootstrap, _registry(args.encoding) as registry_url:
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap}
        topics = create_bridge_topics(conf, run_id, args.partitions)
        encoding: dict[str, str] = {}
        if registry_url is not None:
            encoding = {
                "BRIDGE_ENCODING": "confluent",
                "BRIDGE_SCHEMA_REGISTRY_URL": registry_url,
            }
        _say(f"starting the Talon.One simulator ({args.latency_ms:.0f} ms latency)")
        sim_args = ["--latency-ms", str(args.latency_ms), "--latency-jitter-ms", "5"]
        with SimulatorProcess(api_key="demo-key", args=sim_args) as sim:
            env = worker_env(
                bootstrap,
                topics,
                group=f"{run_id}-bridge",
                talon_url=sim.base_url,
                api_key="demo-key",
                BRIDGE_MAX_IN_FLIGHT=str(args.max_in_flight),
                **encoding,
            )
            _say("starting the bridge worker")
            with _codec(registry_url) as codec:
                with WorkerProcess(env) as worker:
                    commands = list(generate(LoadSpec(sessions=args.sessions, run_id=run_id)))
                    occurred = {c.event_id: c.occurred_at_ms for c in commands}
                    by_type = Counter(str(c.command_type) for c in commands)
                    _say(f"producing {len(commands)} commands for {args.sessions} sessions")
                    started = time.time()
                    produce_commands(
                        conf, topics["in"], iter(commands), encode=codec.encode_command
                    )
                    total = len(commands)
                    _follow(worker, total, args.timeout)
                    elapsed = time.time() - started
                    _say("stopping the bridge (SIGTERM: drain, commit, leave the group)")
                    code = worker.stop()
                out = read_topic(conf, topics["out"])
                effects = [codec.decode_effects(m.value()) for m in out]
            dead = read_topic(conf, topics["dlq"], idle=1.0)
            stats = sim.stats()
    latencies = [
        (e.processed_at_ms - occurred[e.event_id]) / 1000 for e in effects if e.event_id in occurred
    ]
    effect_types = Counter(x.effect_type for e in effects for x in e.effects)
    _summary(by_type, effect_types, len(effects), len(dead), latencies, total, elapsed, stats)
    _say(f"bridge exited with status {code}")
    ok = code == 0 and len(effects) + len(dead) >= total
    return 0 if ok else 1


def _follow(worker: Any, total: int, timeout: float) -> None:
    from bridge.tools.harness import wait_for

    def done() -> float:
        return float(worker.metric_sum("bridge_commands_processed_total"))

    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task("bridging", total=total)

            def check() -> bool:
                n = done()
                bar.update(task, completed=n)
                return n >= total

            wait_for(check, timeout, "the bridge to finish", step=0.2)
    else:
        last = [time.monotonic()]

        def check_plain() -> bool:
            n = done()
            if time.monotonic() - last[0] >= 2:
                _say(f"processed {n:,.0f}/{total:,}")
                last[0] = time.monotonic()
            return n >= total

        wait_for(check_plain, timeout, "the bridge to finish", step=0.2)


def _summary(
    by_type: Counter[str],
    effect_types: Counter[str],
    outputs: int,
    dead: int,
    latencies: list[float],
    total: int,
    elapsed: float,
    stats: dict[str, Any],
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    t = Table(title="talon-bridge demo summary")
    t.add_column("what")
    t.add_column("value", justify="right")
    for name, n in sorted(by_type.items()):
        t.add_row(f"commands: {name}", f"{n:,}")
    for name, n in sorted(effect_types.items()):
        t.add_row(f"effects: {name}", f"{n:,}")
    t.add_row("effects records", f"{outputs:,}")
    t.add_row("dead letters", f"{dead:,}")
    t.add_row(
        "latency p50 (occurredAt to processed, one burst)",
        f"{_percentile(latencies, 50) * 1000:.0f} ms",
    )
    t.add_row("latency p99", f"{_percentile(latencies, 99) * 1000:.0f} ms")
    t.add_row("throughput", f"{total / elapsed:,.0f} commands/s")
    t.add_row("Talon.One 409 conflicts", str(stats.get("conflicts_409", "?")))
    console.print(t)
