"""Profile 409s across workers: how many, by worker count, with and without profile routing.

Talon.One answers 409 to parallel requests on one customer profile. One worker keeps the
events of a profile apart; several workers cannot, when the sessions of one customer live on
partitions that different workers own. Routing by profile (`bridge.routing`, ``--route-by
profile`` of `talon-bridge produce`) puts them on one partition.

For every routing (session: Kafka's default for the key; profile) and every worker count
(``--workers 1,2,4``), on fresh topics: the workers start in one consumer group and the run
waits until every one of them owns partitions, so that they all work from the first record.
Then ``--commands`` generated commands (`bridge.tools.produce.generate`, ``--sessions``
session lifecycles over ``--profiles`` customers) are produced, routed that way, and the run
ends when the workers have processed them all. The simulator's 409 counters (by kind:
session, profile) are read then; the simulator is reset before each run.

Run: ``.venv/bin/python -m benchmarks.profiles --bootstrap 127.0.0.1:9092``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.e2e import API_KEY, bridge_env, broker, fresh_topics
from bridge.avro.codec import Codec
from bridge.routing import ProfileRouter
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, wait_for
from bridge.tools.produce import ROUTES, LoadSpec, generate, produce_commands

PROCESSED = "bridge_commands_processed_total"
ASSIGNED = "bridge_assigned_partitions"


@dataclass
class Run:
    route_by: str
    workers: int
    commands: int
    seconds: float
    profile_409: int
    session_409: int

    @property
    def per_10k(self) -> float:
        return self.profile_409 / self.commands * 10_000


def _owned(workers: Sequence[WorkerProcess], partitions: int) -> bool:
    owned = [w.metric_sum(ASSIGNED) for w in workers]
    return all(n > 0 for n in owned) and sum(owned) == partitions


def run(
    bootstrap: str,
    sim: SimulatorProcess,
    spec: LoadSpec,
    route_by: str,
    workers: int,
    partitions: int,
    in_flight: int,
) -> Run:
    conf = {"bootstrap.servers": bootstrap}
    topics = fresh_topics(conf, partitions)
    env = bridge_env(bootstrap, sim, topics, f"profiles-{uuid.uuid4().hex[:6]}", in_flight)
    procs = [WorkerProcess(env) for _ in range(workers)]
    with contextlib.ExitStack() as stack:
        for w in procs:
            w.start(wait_ready=False)
            stack.push(w.__exit__)
        wait_for(lambda: _owned(procs, partitions), 180, f"{workers} workers to own partitions")
        sim.reset()
        router = ProfileRouter() if route_by == "profile" else None
        started = time.monotonic()
        sent = produce_commands(
            conf,
            topics["in"],
            generate(spec),
            encode=Codec().encode_command,
            partitioner=router.partition if router is not None else None,
        )
        wait_for(
            lambda: sum(w.metric_sum(PROCESSED) for w in procs) >= sent,
            1800,
            "the workers to process every command",
            step=0.5,
        )
        seconds = time.monotonic() - started
    kinds = sim.stats()["conflicts_by_kind"]
    return Run(route_by, workers, sent, seconds, int(kinds["profile"]), int(kinds["session"]))


def markdown(runs: list[Run]) -> str:
    lines = [
        "| workers | partition by | commands | profile 409s | per 10k commands"
        " | session 409s | commands/s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(runs, key=lambda r: (r.workers, r.route_by)):
        lines.append(
            f"| {r.workers} | {r.route_by} | {r.commands:,} | {r.profile_409:,}"
            f" | {r.per_10k:.1f} | {r.session_409} | {r.commands / r.seconds:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument(
        "--profiles", type=int, default=None, help="distinct customers (default: 3/4 of sessions)"
    )
    parser.add_argument("--workers", default="1,2,4", help="worker processes in one group")
    parser.add_argument("--routes", default=",".join(ROUTES), help="partition by: session,profile")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--bootstrap", default=None, help="an existing broker")
    args = parser.parse_args(argv)
    routes = [r for r in args.routes.split(",") if r]
    if not set(routes) <= set(ROUTES):
        parser.error(f"--routes: choose from {', '.join(ROUTES)}")
    counts = [int(n) for n in args.workers.split(",") if n]
    runs: list[Run] = []
    sim_args = ["--latency-ms", str(args.latency_ms), "--latency-jitter-ms", "2"]
    with (
        broker(args.bootstrap) as bootstrap,
        SimulatorProcess(api_key=API_KEY, args=sim_args) as sim,
    ):
        for workers in counts:
            for route_by in routes:
                spec = LoadSpec(
                    sessions=args.sessions,
                    total=args.commands,
                    profiles=args.profiles,
                    max_cart_updates=max(4, 2 * args.commands // max(args.sessions, 1)),
                    run_id=uuid.uuid4().hex[:6],
                )
                r = run(bootstrap, sim, spec, route_by, workers, args.partitions, args.in_flight)
                runs.append(r)
                print(
                    f"{workers} worker(s), by {route_by}: {r.profile_409} profile 409s"
                    f" ({r.per_10k:.1f} per 10k), {r.session_409} session 409s,"
                    f" {r.commands / r.seconds:,.0f}/s",
                    flush=True,
                )
    print(
        f"\n{args.commands:,} commands, {args.sessions:,} sessions,"
        f" {args.profiles or args.sessions * 3 // 4:,} profiles, {args.partitions} partitions,"
        f" {args.latency_ms:.0f} ms simulated API latency\n"
    )
    print(markdown(runs))


if __name__ == "__main__":
    main()
