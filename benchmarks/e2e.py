"""End-to-end throughput of one bridge process against a naive consumer and the HTTP ceiling.

All three run on this machine against the same simulator (default 20 ms latency), in one go:

- bridge:  `talon-bridge run` on a backlog of N commands (10k sessions, 12 partitions);
- naive:   poll / call / commit, one record at a time (`benchmarks/naive.py`), for a fixed time;
- ceiling: the same requests fired by a raw aiohttp client at the same concurrency, each
           session's requests in order, with no Kafka at all, on uvloop like the bridge.

"API CPU" is the simulator's CPU per command over the same window: both share the machine's
two cores with whatever runs against them, so it shows how much of the machine the API side
took in each row.

The throughput run follows an unmeasured warm-up run (``--warmup-commands``). With ``--rounds
N`` the bridge and the ceiling run N times each, alternating, and the ratio is given per round
and as the median: on a shared machine one pair can land in a slow spell. Then the bridge again
at half its measured throughput (the median over the rounds), for latency, and optionally with a
large backlog for peak memory. ``--latency-fractions 0.125,0.25,0.375,0.5`` measures latency at
each of those fractions of the median instead, to show how it grows with the machine's load.
Latency runs from a command being handed to the producer to its effects record's processedAt.
The latency run starts once the worker owns its partitions, and its first 30 seconds
(``--latency-warmup-seconds``) are warm-up, not measured. The load producer lingers 5 ms,
librdkafka's default. "Added" latency subtracts, per command, the time the
simulator held the request (from its journal: session taken to request applied, simulated
latency included), so it is what the bridge and Kafka add over the API. "Own" is the bridge's
share alone: it starts once the command could run, when the broker appended it (the input topic
uses LogAppendTime) and its session's previous command had finished, so it leaves out the
upstream producer and waits for the API. The raw client's latency row sends the same kind of
traffic at the same rate, paced, each session's requests in order, with no Kafka: its "own"
latency is what the HTTP path and the simulator's request handling add outside the simulator's
journal window, the floor under the bridge's.

Run: ``.venv/bin/python -m benchmarks.e2e [--commands 100000]``. ``--baseline REV`` also runs
that git revision's worker each round (installed into its own environment from a worktree,
see `benchmarks.baseline`) and prints its CPU per command against the working tree's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import uvloop

from benchmarks.baseline import ENV as BASELINE_ENV
from benchmarks.baseline import encoder, install
from benchmarks.procstat import cpu_seconds, peak_rss_mb
from bridge.avro.codec import Codec
from bridge.commands import Command, ReturnCartItems, TrackEvent, UpdateCustomerSession
from bridge.simulator.process import SimulatorProcess
from bridge.talon.client import idempotency_key_for
from bridge.tools.harness import (
    WorkerProcess,
    create_bridge_topics,
    read_topic,
    wait_for,
    worker_env,
)
from bridge.tools.produce import LoadSpec, generate, produce_commands
from bridge.worker.handlers import event_request, return_request, session_request

API_KEY = "bench-key"

T = TypeVar("T")


@dataclass
class Row:
    name: str
    commands: int
    seconds: float
    cpu_s: float | None = None
    rss_mb: float | None = None
    api_cpu_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    own_p50_ms: float | None = None
    own_p99_ms: float | None = None
    conflicts: int | None = None

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0


@contextlib.contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    from bridge.tools.localkafka import LocalKafka

    with LocalKafka(heap="1g", quick_jit=False) as broker:
        yield broker.bootstrap


def make_commands(total: int, sessions: int) -> list[Command]:
    """`total` commands of `sessions` interleaved session lifecycles, with a fresh run id."""
    # Enough cart updates per session that the sessions yield `total` commands.
    updates = max(4, 2 * total // max(sessions, 1))
    spec = LoadSpec(
        sessions=sessions, total=total, max_cart_updates=updates, run_id=uuid.uuid4().hex[:6]
    )
    return list(generate(spec))


def bridge_env(
    bootstrap: str, sim: SimulatorProcess, topics: dict[str, str], group: str, in_flight: int
) -> dict[str, str]:
    return worker_env(
        bootstrap,
        topics,
        group=group,
        talon_url=sim.base_url,
        api_key=API_KEY,
        BRIDGE_MAX_IN_FLIGHT=str(in_flight),
        BRIDGE_LOG_LEVEL="WARNING",
    )


def fresh_topics(
    conf: dict[str, Any], partitions: int, input_config: dict[str, str] | None = None
) -> dict[str, str]:
    return create_bridge_topics(conf, f"bench-{uuid.uuid4().hex[:6]}", partitions, input_config)


def run_bridge(
    bootstrap: str,
    sim: SimulatorProcess,
    commands: list[Command],
    partitions: int,
    in_flight: int,
    python: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Row:
    conf = {"bootstrap.servers": bootstrap}
    topics = fresh_topics(conf, partitions)
    produce_commands(conf, topics["in"], iter(commands), encode=encoder(python))
    sim.reset()
    env = bridge_env(bootstrap, sim, topics, f"bench-{uuid.uuid4().hex[:6]}", in_flight)
    if python is not None:
        env |= BASELINE_ENV
    env |= extra_env or {}
    with WorkerProcess(env, python=python) as worker:
        assert worker.proc is not None
        pid = worker.proc.pid
        cpu0, api0 = cpu_seconds(pid), cpu_seconds(sim.pid)
        t0 = time.monotonic()
        wait_for(
            lambda: worker.metric_sum("bridge_commands_processed_total") >= len(commands),
            1800,
            "the bridge to finish the backlog",
            # Each poll is a metrics scrape, which costs the bridge ~1.5 ms of its loop.
            step=0.25,
        )
        seconds = time.monotonic() - t0
        cpu, api = cpu_seconds(pid) - cpu0, cpu_seconds(sim.pid) - api0
        rss = peak_rss_mb(pid)
    return Row(
        "bridge",
        len(commands),
        seconds,
        cpu,
        rss,
        api_cpu_s=api,
        conflicts=sim.stats()["conflicts_409"],
    )


def start_naive(env: dict[str, str], seconds: float) -> subprocess.Popen[bytes]:
    """`benchmarks.naive` with the BRIDGE_* environment `env`; it prints one JSON line."""
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.naive", "--seconds", str(seconds)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
    )


def run_naive(
    bootstrap: str, sim: SimulatorProcess, commands: list[Command], partitions: int, seconds: float
) -> Row:
    conf = {"bootstrap.servers": bootstrap}
    topics = fresh_topics(conf, partitions)
    produce_commands(conf, topics["in"], iter(commands[:20_000]), encode=Codec().encode_command)
    sim.reset()
    proc = start_naive(
        bridge_env(bootstrap, sim, topics, f"naive-{uuid.uuid4().hex[:6]}", 1), seconds
    )
    out, _ = proc.communicate(timeout=seconds + 120)
    res = json.loads(out.decode().strip().splitlines()[-1])
    return Row("naive", res["processed"], res["seconds"], conflicts=sim.stats()["conflicts_409"])


def _request(cmd: Command) -> tuple[str, str, bytes, dict[str, str]]:
    p = cmd.payload
    headers = {
        "Authorization": f"ApiKey-v1 {API_KEY}",
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key_for(cmd.event_id),
        "X-Talon-Bridge-Event-Id": cmd.event_id,
    }
    if isinstance(p, UpdateCustomerSession):
        return (
            "PUT",
            f"/v2/customer_sessions/{cmd.session_id}",
            session_request(p).to_json(),
            headers,
        )
    if isinstance(p, TrackEvent):
        return "POST", "/v2/events?silent=no", event_request(p).to_json(), headers
    assert isinstance(p, ReturnCartItems)
    path = f"/v2/customer_sessions/{cmd.session_id}/returns"
    return "POST", path, return_request(p).to_json(), headers


async def _ceiling(base: str, commands: list[Command], concurrency: int) -> tuple[float, float]:
    # Shard sessions over the workers so each session stays sequential, like the bridge.
    shards: list[list[tuple[str, str, bytes, dict[str, str]]]] = [[] for _ in range(concurrency)]
    for cmd in commands:
        shards[zlib.crc32(cmd.session_id.encode()) % concurrency].append(_request(cmd))
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=conn) as http:

        async def worker(reqs: list[tuple[str, str, bytes, dict[str, str]]]) -> None:
            for method, path, body, headers in reqs:
                async with http.request(method, path, data=body, headers=headers) as r:
                    orjson.loads(await r.read())

        cpu0 = cpu_seconds()
        t0 = time.monotonic()
        await asyncio.gather(*(worker(s) for s in shards))
        return time.monotonic() - t0, cpu_seconds() - cpu0


def _run(coro: Coroutine[Any, Any, T]) -> T:
    # The raw client gets the fastest loop there is here, the bridge's default: uvloop.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run_ceiling(sim: SimulatorProcess, commands: list[Command], concurrency: int) -> Row:
    sim.reset()
    api0 = cpu_seconds(sim.pid)
    seconds, cpu = _run(_ceiling(sim.base_url, commands, concurrency))
    return Row(
        "raw aiohttp ceiling",
        len(commands),
        seconds,
        cpu,
        peak_rss_mb(),
        api_cpu_s=cpu_seconds(sim.pid) - api0,
        conflicts=sim.stats()["conflicts_409"],
    )


def run_raw_latency(
    sim: SimulatorProcess,
    rate: float,
    seconds: float,
    sessions: int,
    concurrency: int,
    warmup: float,
) -> Row:
    """Latency of the raw aiohttp client at `rate`, paced like the load producer, no Kafka."""
    n = int(rate * (warmup + seconds))
    commands = make_commands(n, sessions)
    sim.reset()
    times = _run(_paced(sim.base_url, commands, rate, concurrency))
    served = _served_ms(sim)
    start = min(planned for planned, _, _ in times.values()) + warmup * 1000
    measured = {k: v for k, v in times.items() if v[0] >= start and k in served}
    lat = [done - planned for planned, _, done in measured.values()]
    added = [done - planned - served[k] for k, (planned, _, done) in measured.items()]
    own = [done - ready - served[k] for k, (_, ready, done) in measured.items()]
    return _latency_row(
        f"raw aiohttp at {rate:,.0f}/s, no Kafka", n, warmup + seconds, sim, lat, added, own
    )


def _latency_row(
    name: str,
    commands: int,
    seconds: float,
    sim: SimulatorProcess,
    lat: Sequence[float],
    added: Sequence[float],
    own: Sequence[float],
) -> Row:
    """A latency row: p50 and p99 of the whole, added and own latencies, in ms."""
    q, qa, qo = (statistics.quantiles(v, n=100) for v in (lat, added, own))
    return Row(
        name,
        commands,
        seconds,
        p50_ms=q[49],
        p99_ms=q[98],
        added_p50_ms=qa[49],
        added_p99_ms=qa[98],
        own_p50_ms=qo[49],
        own_p99_ms=qo[98],
        conflicts=sim.stats()["conflicts_409"],
    )


async def _paced(
    base: str, commands: list[Command], rate: float, concurrency: int
) -> dict[str, tuple[float, float, float]]:
    """Per eventId, wall-clock ms: (planned, ready, done). Command i is due at i / rate; it
    is ready once due and its session's previous command is done, as in `_own_ms`."""
    times: dict[str, tuple[float, float, float]] = {}
    previous: dict[str, asyncio.Future[float]] = {}
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=conn) as http:
        t0 = time.time() + 0.5

        async def send(i: int, cmd: Command, before: asyncio.Future[float] | None) -> float:
            planned = t0 + i / rate
            await asyncio.sleep(max(0.0, planned - time.time()))
            ready = max(planned, await before) if before is not None else planned
            method, path, body, headers = _request(cmd)
            async with http.request(method, path, data=body, headers=headers) as r:
                orjson.loads(await r.read())
            done = time.time()
            times[cmd.event_id] = (planned * 1000, ready * 1000, done * 1000)
            return done

        tasks = []
        for i, cmd in enumerate(commands):
            task = asyncio.ensure_future(send(i, cmd, previous.get(cmd.session_id)))
            previous[cmd.session_id] = task
            tasks.append(task)
        await asyncio.gather(*tasks)
    return times


def run_latency(
    bootstrap: str,
    sim: SimulatorProcess,
    rate: float,
    seconds: float,
    sessions: int,
    partitions: int,
    in_flight: int,
    warmup: float,
) -> Row:
    conf = {"bootstrap.servers": bootstrap}
    # The broker stamps each input record when it appends it: the bridge's share starts there.
    topics = fresh_topics(conf, partitions, {"message.timestamp.type": "LogAppendTime"})
    sim.reset()
    env = bridge_env(bootstrap, sim, topics, f"lat-{uuid.uuid4().hex[:6]}", in_flight)
    n = int(rate * (warmup + seconds))
    updates = max(4, 2 * n // max(sessions, 1))
    commands = generate(
        LoadSpec(sessions=sessions, total=n, max_cart_updates=updates, run_id=uuid.uuid4().hex[:6])
    )
    occurred: dict[str, int] = {}
    # The first seconds are warm-up, not measured: connection pools filling, and the broker's
    # JIT compiling the paths of small produce and fetch requests (a cold one tripled p99).
    measure_from_ms = time.time() * 1000 + warmup * 1000

    def tap() -> Iterator[Command]:
        for c in commands:
            if c.occurred_at_ms >= measure_from_ms:
                occurred[c.event_id] = c.occurred_at_ms
            yield c

    with WorkerProcess(env) as worker:
        assert worker.proc is not None
        pid = worker.proc.pid
        # Only once the worker owns every partition, or the first commands wait for the join.
        wait_for(
            lambda: worker.metric_sum("bridge_assigned_partitions") >= partitions,
            120,
            "the bridge to be assigned its partitions",
            step=0.2,
        )
        measure_from_ms = time.time() * 1000 + warmup * 1000
        cpu0, api0 = cpu_seconds(pid), cpu_seconds(sim.pid)
        t0 = time.monotonic()
        # librdkafka's default linger, as an upstream service would produce.
        n = produce_commands(
            conf, topics["in"], tap(), encode=Codec().encode_command, rate=rate, linger_ms=5
        )
        wait_for(
            lambda: worker.metric_sum("bridge_commands_processed_total") >= n,
            600,
            "the bridge to catch up",
            step=0.2,
        )
        elapsed = time.monotonic() - t0
        cpu, api = cpu_seconds(pid) - cpu0, cpu_seconds(sim.pid) - api0
    codec = Codec()
    finished = {
        e.event_id: e.processed_at_ms
        for e in (
            codec.decode_effects(m.value()) for m in read_topic(conf, topics["out"], expected=n)
        )
    }
    done = {k: v for k, v in finished.items() if k in occurred}
    lat = [done[k] - occurred[k] for k in done]
    # What the bridge adds: the whole latency minus the time the simulator held the request
    # (from taking the session to applying it, simulated latency included).
    served = _served_ms(sim)
    added = [done[k] - occurred[k] - served[k] for k in done if k in served]
    own = _own_ms(read_topic(conf, topics["in"], expected=n), codec, finished, served)
    mine = [own[k] for k in done if k in own]
    row = _latency_row(f"bridge at {rate:,.0f}/s", n, elapsed, sim, lat, added, mine)
    return replace(row, cpu_s=cpu, api_cpu_s=api)


def _own_ms(
    inputs: list[Any], codec: Codec, finished: dict[str, int], served: dict[str, float]
) -> dict[str, float]:
    """Per eventId, the bridge's own share: from the moment the command could run (appended
    to the log, and its session's previous command finished) to its effects, less the time
    the simulator held it. Waiting for the previous command is API time, not the bridge's."""
    out: dict[str, float] = {}
    last: dict[str, str] = {}
    for m in inputs:  # a session's records share a partition, so they come in offset order
        cmd = codec.decode_command(m.value())
        before = last.get(cmd.session_id)
        last[cmd.session_id] = cmd.event_id
        if cmd.event_id not in finished or cmd.event_id not in served:
            continue
        ready = max(m.timestamp()[1], finished.get(before, 0) if before else 0)
        out[cmd.event_id] = finished[cmd.event_id] - ready - served[cmd.event_id]
    return out


def journal_times(sim: SimulatorProcess) -> dict[str, tuple[int, int]]:
    """Per eventId, the simulator's monotonic ns when it took the request's session (or
    profile) and when it applied the request, from its journal."""
    return {
        e["eventId"]: (e["acquiredNs"], e["appliedNs"])
        for book in sim.journal().values()
        for entries in book.values()
        for e in entries
        if e.get("eventId") and e.get("acquiredNs")
    }


def _served_ms(sim: SimulatorProcess) -> dict[str, float]:
    """Per eventId, milliseconds from the simulator taking the request's session (or
    profile) to applying it."""
    return {k: (applied - acquired) / 1e6 for k, (acquired, applied) in journal_times(sim).items()}


def run_backlog(
    bootstrap: str,
    sim: SimulatorProcess,
    backlog: int,
    seconds: float,
    partitions: int,
    in_flight: int,
) -> Row:
    """Peak RSS while working through a `backlog`-record backlog for `seconds`."""
    conf = {"bootstrap.servers": bootstrap}
    topics = fresh_topics(conf, partitions)
    spec = LoadSpec(sessions=max(10_000, backlog // 10), total=backlog, run_id=uuid.uuid4().hex[:6])
    produce_commands(conf, topics["in"], generate(spec), encode=Codec().encode_command)
    sim.reset()
    env = bridge_env(bootstrap, sim, topics, f"backlog-{uuid.uuid4().hex[:6]}", in_flight)
    with WorkerProcess(env) as worker:
        assert worker.proc is not None
        pid = worker.proc.pid
        t0 = time.monotonic()
        deadline = t0 + seconds
        wait_for(lambda: time.monotonic() > deadline, seconds + 10, "the backlog window", step=1)
        done = worker.metric_sum("bridge_commands_processed_total")
        rss = peak_rss_mb(pid)
        elapsed = time.monotonic() - t0
    return Row(
        f"bridge, {backlog:,} backlog",
        int(done),
        elapsed,
        rss_mb=rss,
        conflicts=sim.stats()["conflicts_409"],
    )


def _table(rows: list[Row], latency_ms: float) -> str:
    bridge = next(r for r in rows if r.name.startswith("bridge"))
    lines = [
        "| system | commands | seconds | commands/s | vs bridge | CPU ms/command"
        " | API CPU ms/command | peak RSS MB"
        " | p50 ms | p99 ms | added p50 ms | added p99 ms | own p50 ms | own p99 ms"
        " | 409s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cpu = f"{r.cpu_s / r.commands * 1000:.2f}" if r.cpu_s is not None else ""
        api = f"{r.api_cpu_s / r.commands * 1000:.2f}" if r.api_cpu_s is not None else ""
        rss = f"{r.rss_mb:.0f}" if r.rss_mb is not None else ""
        p50 = f"{r.p50_ms:.0f}" if r.p50_ms is not None else ""
        p99 = f"{r.p99_ms:.0f}" if r.p99_ms is not None else ""
        added = " | ".join(
            f"{v:.1f}" if v is not None else ""
            for v in (r.added_p50_ms, r.added_p99_ms, r.own_p50_ms, r.own_p99_ms)
        )
        lines.append(
            f"| {r.name} | {r.commands:,} | {r.seconds:.1f} | {r.rate:,.0f} "
            f"| {r.rate / bridge.rate:.3f}x | {cpu} | {api} | {rss} | {p50} | {p99} | {added} "
            f"| {r.conflicts} |"
        )
    return "\n".join(lines)


def _cpu_ratios(bridge: list[Row], baseline: list[Row], rev: str) -> str:
    ratios = [
        (b.cpu_s or 0.0) / b.commands / ((a.cpu_s or 0.0) / a.commands)
        for b, a in zip(bridge, baseline, strict=True)
        if a.cpu_s
    ]
    each = ", ".join(f"{r:.2f}" for r in ratios)
    median = statistics.median(ratios) if ratios else float("nan")
    return f"bridge CPU per command / {rev}'s by round: {each}; median {median:.2f}"


def _ratios(bridge: list[Row], ceiling: list[Row]) -> str:
    ratios = [b.rate / c.rate for b, c in zip(bridge, ceiling, strict=True)]
    each = ", ".join(f"{r:.1%}" for r in ratios)
    return f"bridge / ceiling by round: {each}; median {statistics.median(ratios):.1%}"


def assignment(text: str) -> str:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return text


def add_worker_env(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--worker-env NAME=VALUE`, repeatable: settings for the workers `help_text` names."""
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        type=assignment,
        help=help_text,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="bridge and ceiling runs, alternating; the latency run takes the median rate",
    )
    parser.add_argument("--naive-seconds", type=float, default=20)
    parser.add_argument("--latency-seconds", type=float, default=30)
    parser.add_argument(
        "--latency-fractions",
        default="0.5",
        help="comma list of fractions of the median bridge rate to measure latency at; "
        "the raw client's latency row runs at the largest",
    )
    parser.add_argument(
        "--latency-warmup-seconds",
        type=float,
        default=30,
        help="traffic at the latency run's rate before it is measured",
    )
    parser.add_argument(
        "--warmup-commands",
        type=int,
        default=20_000,
        help="commands the bridge runs, unmeasured, before its throughput run",
    )
    parser.add_argument("--bootstrap", default=None, help="an existing broker")
    add_worker_env(
        parser,
        "a setting for every throughput run's worker (baseline included), repeatable; "
        "e.g. BRIDGE_KAFKA_CONFIG='{\"linger.ms\": 50}'",
    )
    parser.add_argument(
        "--skip", default="", help="comma list of: naive,ceiling,latency,raw-latency"
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=0,
        help="also measure peak RSS with a backlog of this many records",
    )
    parser.add_argument("--backlog-seconds", type=float, default=60)
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="also run this git revision's worker each round, installed into its own "
        "environment from a worktree",
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.worker_env)
    skip = set(filter(None, args.skip.split(",")))
    fractions = sorted(float(f) for f in args.latency_fractions.split(",") if f.strip())
    if not fractions or not all(0 < f <= 1 for f in fractions):
        parser.error("--latency-fractions: fractions must be in (0, 1]")
    baseline = install(args.baseline) if args.baseline else None
    commands = make_commands(args.commands, args.sessions)
    rows: list[Row] = []
    sim_args = ["--latency-ms", str(args.latency_ms), "--latency-jitter-ms", "2"]
    with (
        broker(args.bootstrap) as bootstrap,
        SimulatorProcess(api_key=API_KEY, args=sim_args) as sim,
    ):
        if args.warmup_commands:
            # A fresh broker compiles its fetch and produce paths during the first run: the
            # bridge should not pay for that where the ceiling, which has no Kafka, does not.
            warmup = commands[: args.warmup_commands]
            run_bridge(bootstrap, sim, warmup, args.partitions, args.in_flight, None, extra)
        # Rounds alternate the bridge and the ceiling, so that a slow spell of the shared
        # machine weighs on both sides of the ratio instead of one.
        bridge_rows: list[Row] = []
        ceiling_rows: list[Row] = []
        baseline_rows: list[Row] = []
        for n in range(1, args.rounds + 1):
            suffix = f", round {n}" if args.rounds > 1 else ""
            row = run_bridge(bootstrap, sim, commands, args.partitions, args.in_flight, None, extra)
            bridge_rows.append(replace(row, name=f"bridge{suffix}"))
            rows.append(bridge_rows[-1])
            print(f"{bridge_rows[-1].name}: {row.rate:,.0f}/s", flush=True)
            if baseline is not None:
                row = run_bridge(
                    bootstrap, sim, commands, args.partitions, args.in_flight, baseline, extra
                )
                baseline_rows.append(replace(row, name=f"bridge at {args.baseline}{suffix}"))
                rows.append(baseline_rows[-1])
                print(f"{baseline_rows[-1].name}: {row.rate:,.0f}/s", flush=True)
            if "ceiling" not in skip:
                row = run_ceiling(sim, commands, args.in_flight)
                ceiling_rows.append(replace(row, name=f"raw aiohttp ceiling{suffix}"))
                rows.append(ceiling_rows[-1])
                print(f"{ceiling_rows[-1].name}: {row.rate:,.0f}/s", flush=True)
        if "naive" not in skip:
            rows.append(run_naive(bootstrap, sim, commands, args.partitions, args.naive_seconds))
            print(f"naive: {rows[-1].rate:,.0f}/s", flush=True)
        if "latency" not in skip:
            peak = statistics.median(r.rate for r in bridge_rows)
            for fraction in fractions:
                row = run_latency(
                    bootstrap,
                    sim,
                    peak * fraction,
                    args.latency_seconds,
                    args.sessions,
                    args.partitions,
                    args.in_flight,
                    args.latency_warmup_seconds,
                )
                rows.append(replace(row, name=f"{row.name} ({fraction * 100:g}% of max)"))
                print(f"{rows[-1].name}: own p99 {row.own_p99_ms:.1f} ms", flush=True)
            if "raw-latency" not in skip:
                rows.append(
                    run_raw_latency(
                        sim,
                        peak * fractions[-1],
                        args.latency_seconds,
                        args.sessions,
                        args.in_flight,
                        args.latency_warmup_seconds,
                    )
                )
        if args.backlog:
            rows.append(
                run_backlog(
                    bootstrap,
                    sim,
                    args.backlog,
                    args.backlog_seconds,
                    args.partitions,
                    args.in_flight,
                )
            )
            print(f"backlog: peak RSS {rows[-1].rss_mb:.0f} MB", flush=True)
    _report(args, rows, bridge_rows, ceiling_rows, baseline_rows)


def _report(
    args: argparse.Namespace,
    rows: list[Row],
    bridge_rows: list[Row],
    ceiling_rows: list[Row],
    baseline_rows: list[Row],
) -> None:
    print()
    print(
        f"{args.commands:,} commands, {args.sessions:,} sessions, {args.partitions} partitions,"
        f" {args.latency_ms:.0f} ms simulated API latency, max in flight {args.in_flight}"
    )
    print(_table(rows, args.latency_ms))
    if ceiling_rows:
        print()
        print(_ratios(bridge_rows, ceiling_rows))
        if baseline_rows:
            print(_ratios(baseline_rows, ceiling_rows).replace("bridge", args.baseline, 1))
    if baseline_rows:
        print(_cpu_ratios(bridge_rows, baseline_rows, args.baseline))


if __name__ == "__main__":
    main()
