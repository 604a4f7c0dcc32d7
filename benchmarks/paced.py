"""CPU per command and end-to-end latency at fixed input rates.

Run: ``.venv/bin/python -m benchmarks.paced --bootstrap 127.0.0.1:9092 --rates 250,500,1000,1500
--workers 1,2 --variant 'wait20={"fetch.wait.max.ms":20,"fetch.min.bytes":1048576}'
--repeat 2`` (``--baseline REV`` adds that git revision's bridge, one process).

A backlog measures a command's cost when the worker is never idle. Production input mostly
comes slower than that, and then each command is read, sent and published on its own: its
thread hand-offs and wake-ups are not shared with other commands. This benchmark measures a
command's cost at the rates the worker actually runs at.

For every input rate, every system runs in turn on fresh topics (`compare._latency`): once
it owns every partition it works through a warm-up backlog of ``--warmup`` commands, then
commands are produced at the rate (no linger) for ``--seconds``. With ``--backlog N``, each
system also gets N commands produced at once, shown as the rate "backlog": a drain, to show
what a setting costs a worker that is never idle. The systems:

- **shipped**: the working tree's bridge as it ships, 1 process; every ratio is against it;
- each ``--variant NAME=JSON``: the working tree with that JSON object of librdkafka
  properties for its input consumer, merged into ``BRIDGE_KAFKA_CONSUMER_CONFIG`` (the wait
  above lets the broker hold a fetch for up to 20 ms to fill it, so a slow stream comes in
  batches);
- each ``--workers`` count above 1: the same as one ``BRIDGE_WORKERS=N`` pod, at the same
  total rate, so each process gets 1/N of it;
- the baseline revision, with ``--baseline REV``.

Figures, medians of ``--repeat`` runs (the systems alternate within a repeat; of two runs, the
higher):

- **commands/s**: the measured commands over the time from the first produced to the last
  one's output (the rate itself, if the system keeps up; a backlog's drain rate);
- **CPU ms per command**: user + system CPU of the bridge's processes (a pod: the
  supervisor and its workers) from the first measured command produced to the last one's
  output, over the measured commands; **efficiency** = shipped's CPU per command / this
  system's, so 2 processes at 0.9 do 90% of one process's commands per CPU-second;
- **p50/p99**: output timestamp minus input CreateTime, in ms, as in `benchmarks.compare`,
  each the median over the runs (every run's p99 is listed: the tail varies the most);
- **409s**: the simulator's count over a run (warm-up included), the most in any run; the
  goal is 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.baseline import install
from benchmarks.compare import Cell, _latency
from benchmarks.e2e import API_KEY, add_worker_env, broker
from benchmarks.peer_report import BRIDGE, Result, baseline_name, fmt, median_run, middle
from bridge.simulator.process import SimulatorProcess

SHIPPED = "shipped"
CONSUMER_CONFIG = "BRIDGE_KAFKA_CONSUMER_CONFIG"


@dataclasses.dataclass(frozen=True)
class System:
    name: str
    env: dict[str, str]  # the working tree's extra settings; ignored for the baseline
    processes: int = 1
    baseline: bool = False


def _variant(text: str) -> tuple[str, dict[str, Any]]:
    name, _, props = text.partition("=")
    try:
        conf = json.loads(props)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=JSON ({exc})") from exc
    if not name or not isinstance(conf, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME={{librdkafka properties}}")
    return name, conf


def systems(
    tree_env: dict[str, str],
    variants: Sequence[tuple[str, dict[str, Any]]],
    workers: Sequence[int],
    baseline: str | None,
) -> list[System]:
    """Every system to run at each rate, shipped first."""
    shared = json.loads(tree_env.get(CONSUMER_CONFIG, "{}"))
    out: list[System] = []
    for name, props in [(SHIPPED, {}), *variants]:
        env = dict(tree_env)
        if props:
            env[CONSUMER_CONFIG] = json.dumps({**shared, **props})
        for n in workers:
            label = name if n == 1 else f"{name} x{n}"
            out.append(System(label, env, n))
    if baseline:
        out.append(System(baseline_name(baseline), {}, 1, baseline=True))
    return out


def _cpu(r: Result) -> float:
    return r.cpu_per_1k or 0.0  # CPU s per 1,000 commands = ms per command


def _rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate else "backlog"


def table(rows: dict[tuple[float, str], list[Result]], names: Sequence[str]) -> str:
    """One row per rate (0: the backlog) and system: the median commands/s, the median CPU per
    command (and every run's), efficiency, the median p50 and p99 (and every run's p99), and
    the most 409s in any run."""
    lines = [
        "| rate /s | system | commands/s | CPU ms/command (runs) | efficiency | p50 ms"
        " | p99 ms (runs) | 409s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in sorted({r for r, _ in rows}, key=lambda r: r or float("inf")):  # backlog last
        ref = _cpu(median_run(rows[(rate, SHIPPED)], _cpu))
        for name in names:
            runs = rows[(rate, name)]
            cpu = _cpu(median_run(runs, _cpu))
            each = ", ".join(f"{_cpu(run):.3f}" for run in runs)
            eff = f"{ref / cpu:.2f}" if ref and cpu else ""
            done = middle([run.rate for run in runs])
            p50 = p99 = ""  # a backlog's latencies are its queue: its drain rate says more
            if rate:
                p50 = fmt(middle([run.p50_ms for run in runs]), ".0f")
                tails = ", ".join(fmt(run.p99_ms, ".0f") for run in runs)
                p99 = f"{fmt(middle([run.p99_ms for run in runs]), '.0f')} ({tails})"
            lines.append(
                f"| {_rate(rate)} | {name} | {fmt(done, ',.0f')} | {cpu:.3f} ({each}) | {eff}"
                f" | {p50} | {p99} | {max(run.conflicts for run in runs)} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="250,500,1000,1500", help="commands per second")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=3000, help="warm-up backlog, commands")
    parser.add_argument(
        "--backlog", type=int, default=0, help="also time a drain of this many commands"
    )
    parser.add_argument("--latency-ms", type=float, default=20, help="simulated API latency")
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--workers", default="1", help="process counts, e.g. 1,2")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        type=_variant,
        metavar="NAME=JSON",
        help="also run the working tree with these properties for its input consumer, repeatable",
    )
    parser.add_argument("--baseline", default=None, metavar="REV")
    parser.add_argument("--bootstrap", default=None, help="an existing broker")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    add_worker_env(parser, "a setting for the working tree's workers, repeatable")
    args = parser.parse_args(argv)

    tree_env = dict(item.split("=", 1) for item in args.worker_env)
    workers = [int(x) for x in args.workers.split(",") if x]
    plan = systems(tree_env, args.variant, workers, args.baseline)
    python = install(args.baseline) if args.baseline else None
    logs = Path("benchmarks/results/logs")
    logs.mkdir(parents=True, exist_ok=True)
    rows: dict[tuple[float, str], list[Result]] = {}
    started = time.monotonic()
    with broker(args.bootstrap) as bootstrap:
        sim_args = ["--latency-ms", str(args.latency_ms), "--latency-jitter-ms", "2"]
        with SimulatorProcess(api_key=API_KEY, args=sim_args) as sim:
            rates = [float(x) for x in args.rates.split(",") if x]
            for rate in rates + [0.0] * bool(args.backlog):
                for s in plan:
                    rows[(rate, s.name)] = []
                for _ in range(args.repeat):
                    for s in plan:
                        cell = Cell(
                            {"bootstrap.servers": bootstrap},
                            sim,
                            args.latency_ms,
                            args.sessions,
                            args.partitions,
                            args.in_flight,
                            logs,
                            (s.name, python) if s.baseline and python else None,
                            one_pod=True,
                            tree_env=s.env,
                        )
                        kind = s.name if s.baseline else BRIDGE
                        r = _latency(
                            cell,
                            kind,
                            rate,
                            args.seconds,
                            args.warmup,
                            s.processes,
                            backlog=0 if rate else args.backlog,
                        )
                        rows[(rate, s.name)].append(r)
                        print(
                            f"{_rate(rate)} {s.name}: {r.rate:,.0f} commands/s,"
                            f" {fmt(r.cpu_per_1k, '.3f')} CPU ms/command,"
                            f" p50 {fmt(r.p50_ms, '.0f')} ms, p99 {fmt(r.p99_ms, '.0f')} ms,"
                            f" 409s {r.conflicts}",
                            flush=True,
                        )
    print(
        f"\n{args.sessions:,} sessions, {args.partitions} partitions, {args.latency_ms:.0f} ms"
        f" API, {args.seconds:.0f} s per paced run, a backlog of {args.backlog:,},"
        f" {args.repeat} run(s);"
        f" {(time.monotonic() - started) / 60:.1f} min\n"
    )
    out = table(rows, [s.name for s in plan])
    print(out)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(out + "\n")


if __name__ == "__main__":
    main()
