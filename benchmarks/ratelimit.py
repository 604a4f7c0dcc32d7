"""The bridge at Talon.One's rate limit: how much of the limit it applies, and at what cost.

Runs the bridge on a backlog against the simulator limited to a token bucket (`--burst`
requests saved, refilled at a fraction of `--max-rate`, the bridge's own max rate), once per
fraction. With `--max-rate 0` (the default) that max rate is measured first, in the same
run, on the same kind of backlog without a limit: on a shared machine it moves with the
load. Prints, per limit: commands applied per
second (from the first applied to the last), their share of the limit, 429s per applied
command, requests back before their Retry-After, dead letters, and whether every session's
commands were applied in order.

    .venv/bin/python -m benchmarks.ratelimit --bootstrap 127.0.0.1:9092
    .venv/bin/python -m benchmarks.ratelimit --bootstrap 127.0.0.1:9092 --bridge-src DIR

`--bridge-src` runs the worker from another checkout (e.g. an older commit), against the
same simulator and load.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator

from bridge.avro.codec import Codec
from bridge.commands import Command
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, create_bridge_topics, wait_for, worker_env
from bridge.tools.produce import LoadSpec, generate, produce_commands

API_KEY = "bench-key"


@contextlib.contextmanager
def _broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    from bridge.tools.localkafka import LocalKafka

    with LocalKafka(heap="1g") as broker:
        yield broker.bootstrap


def _in_order(commands: list[Command], sim: SimulatorProcess) -> bool:
    expected: dict[str, list[str]] = defaultdict(list)
    for c in commands:
        if c.command_type != "track_event":
            expected[c.session_id].append(c.event_id)
    applied = {
        sid: [e["eventId"] for e in entries] for sid, entries in sim.journal()["sessions"].items()
    }
    return all(applied.get(sid) == ids for sid, ids in expected.items())


def _run(
    bootstrap: str, sim: SimulatorProcess, limit: float, args: argparse.Namespace, total: int
) -> dict[str, float | bool]:
    conf = {"bootstrap.servers": bootstrap}
    run = uuid.uuid4().hex[:6]
    topics = create_bridge_topics(conf, f"rl-{run}", 12)
    cmds = list(generate(LoadSpec(sessions=max(1, total // 6), total=total, run_id=run)))
    produce_commands(conf, topics["in"], iter(cmds), encode=Codec().encode_command)
    sim.reset()
    sim.set_faults(latency_ms=args.latency_ms, rate_limit_rps=limit, rate_limit_burst=args.burst)
    extra = {"BRIDGE_LOG_LEVEL": "WARNING"}
    if args.bridge_src:
        # The worker's modules come from that checkout, not from the current directory.
        extra_env = {"PYTHONPATH": args.bridge_src, "PYTHONSAFEPATH": "1"}
    else:
        extra_env = {}
    env = worker_env(
        bootstrap, topics, group=f"rl-{run}", talon_url=sim.base_url, api_key=API_KEY, **extra
    )
    with WorkerProcess({**env, **extra_env}) as worker:
        wait_for(lambda: sim.stats()["applied"] > 0, 120, "the first applied command", 0.01)
        t0 = time.monotonic()
        wait_for(lambda: sim.stats()["applied"] >= len(cmds), 3600, "all applied", step=0.05)
        seconds = time.monotonic() - t0
        dead = worker.metric_sum("bridge_dead_letters_total")
    stats = sim.stats()
    applied = stats["applied"]
    return {
        "applied_per_s": applied / seconds,
        "share": applied / seconds / limit if limit else 1.0,
        "rejected_per_applied": stats["faults_injected"]["rate_limit"] / applied,
        "early_retries": stats["early_retries"],
        "dead_letters": dead,
        "in_order": _in_order(cmds, sim),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--max-rate", type=float, default=0.0, help="the bridge's max rate (0: measure it)"
    )
    parser.add_argument("--fractions", default="0.1,0.5", help="limits, as shares of max rate")
    parser.add_argument("--burst", type=int, default=20, help="requests the bucket saves")
    parser.add_argument("--seconds", type=float, default=30.0, help="backlog, in seconds of limit")
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument(
        "--max-rate-commands", type=int, default=20_000, help="backlog of the max-rate run"
    )
    parser.add_argument("--bridge-src", default=None, help="run the worker from this checkout")
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()
    rows = []
    with _broker(args.bootstrap) as bootstrap, SimulatorProcess(api_key=API_KEY) as sim:
        max_rate = args.max_rate
        if not max_rate:
            unlimited = _run(bootstrap, sim, 0.0, args, args.max_rate_commands)
            max_rate = float(unlimited["applied_per_s"])
            print(f"max rate without a limit: {max_rate:,.0f} commands/s")
        for fraction in (float(f) for f in args.fractions.split(",")):
            limit = fraction * max_rate
            total = int(limit * args.seconds)
            rows.append((fraction, limit, _run(bootstrap, sim, limit, args, total)))
    print(
        "| limit | applied/s | share of the limit | rejected per applied | early retries "
        "| dead letters | order kept |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for fraction, limit, r in rows:
        print(
            f"| {limit:,.0f}/s ({fraction:.0%} of max) | {r['applied_per_s']:,.0f} "
            f"| {r['share']:.1%} | {r['rejected_per_applied']:.3f} | {r['early_retries']:.0f} "
            f"| {r['dead_letters']:.0f} | {'yes' if r['in_order'] else 'NO'} |"
        )


if __name__ == "__main__":
    main()
