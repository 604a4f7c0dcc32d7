"""Side-by-side peer benchmark: talon-bridge, Confluent Parallel Consumer, the naive consumer.

Run: ``.venv/bin/python -m benchmarks.compare --bootstrap 127.0.0.1:29092 --repeat 3
--plot docs/peer-benchmark.png`` (the matrix: ``--latencies 20,50 --sessions 1000,10000
--commands 30000 --partitions 12 --in-flight 256 --scale 1,2,4``; ``--from-json`` redraws
the tables and the chart from a saved ``--json`` file).

For every cell of the matrix (simulated API latency x sessions, on N partitions), the three
systems run one after the other against the same simulator, on identical data:

- **talon-bridge**: one ``talon-bridge run`` process (`bridge.tools.harness.WorkerProcess`), with
  ``BRIDGE_MAX_IN_FLIGHT`` = ``--in-flight``;
- **parallel-consumer**: the Java harness in ``benchmarks/peers/parallel-consumer``
  (``ProcessingOrder.KEY``, ``maxConcurrency`` = ``--in-flight``, otherwise Parallel
  Consumer's defaults). Its requests are checked first to be the bridge's (same method, path,
  query, headers and JSON body, captured from `TalonClient` itself);
- **naive**: `benchmarks.naive` (poll, call, publish, commit), time-boxed to
  ``--naive-seconds``;
- **scale-out**: 2, 4, ... bridge processes in one consumer group (``--scale``), measured
  from the moment every worker owns partitions; 1 process is the talon-bridge row. With
  ``--one-pod`` the working tree's processes run as one ``BRIDGE_WORKERS=N`` pod (a supervisor
  and N worker processes, their CPU and memory summed), as the chart runs them.
- **talon-bridge@REV** (with ``--baseline REV``): the bridge at that git revision, installed
  into its own environment from a worktree (`benchmarks.baseline`), run wherever the working
  tree's bridge runs (throughput repeats, scale-out, latency) right after it. A last table
  gives every bridge figure as a ratio against it: commands/s, CPU s per 1k commands, p99
  at equal load and peak RSS.

Each system gets fresh topics (input, output, DLQ, parking), a ``sim.reset()`` first, and the
same generated commands (`bridge.tools.produce.generate`, produced as a backlog before it starts).
Every latency setting gets a fresh simulator process (``--latency-jitter-ms 2``).

How each figure is measured, identically for every system:

- **throughput**: the backlog is ``--warmup-commands`` (other sessions) followed by
  ``--commands``. The output topic's high watermarks are polled every 100 ms. The window is
  the steady state, from the first poll that sees the warm-up and 10% of the measured
  commands done to the first that sees 90% of them (for naive, which gets no warm-up: from
  its first output record to the last poll before its time box ends). commands/s = records
  published in the window / its length. Start-up (JVM, group join), the first JIT
  compilations and the tail are outside it; the JVM's compiler threads still used 0.4-0.5
  of a core inside it. With ``--repeat N`` bridge and Parallel Consumer runs alternate N
  times and the median run (by commands/s) is reported, its CPU figure included; against a
  ``--baseline`` the CPU ratio is also given round by round. Each run also prints every
  thread's share of the cores over the window (thread names with digits dropped, so pools
  add up) and how busy the whole machine was.
- **CPU s per 1k commands**: user + system CPU of the consumer's process(es) over that same
  window, from /proc (`benchmarks.procstat`), the JVM's included; **peak RSS** is VmHWM.
  The simulator and the broker are not counted.
- **latency**: a separate run per system on fresh topics. Once its consumer group has a
  stable assignment, the system first works through a warm-up backlog of
  ``--warmup-seconds`` worth of its own throughput (the JVM's JIT needs it: without it,
  Parallel Consumer's first ~15 s at 400/s showed seconds of latency). When that is done,
  commands are produced at a fixed rate (no linger) for ``--latency-seconds``. Latency = the
  output record's timestamp (set by the system's producer) minus the CreateTime of the
  input record it answers, joined on the input partition and offset that every system
  writes into its output. talon-bridge and Parallel Consumer run at the same rate, half the
  slower one's throughput in that cell; naive, which cannot go that fast, at half its own.
- **409s**: the simulator's ``conflicts_409`` (by kind: session, profile); **non-2xx**: all
  answers outside 2xx, from the simulator's ``responses_by_status``. The bridge retries a
  409; the Parallel Consumer harness records it as the command's result and moves on.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from benchmarks.baseline import ENV as BASELINE_ENV
from benchmarks.baseline import encoder, install
from benchmarks.e2e import (
    API_KEY,
    add_worker_env,
    bridge_env,
    broker,
    fresh_topics,
    make_commands,
    start_naive,
)
from benchmarks.peer_report import (
    BRIDGE,
    NAIVE,
    PC,
    Result,
    baseline_markdown,
    baseline_name,
    conflicts,
    fmt,
    markdown,
    median_run,
    plot,
    where,
)
from benchmarks.procstat import cpu_seconds, peak_rss_mb
from bridge.avro.codec import Codec
from bridge.commands import (
    AdditionalCost,
    CartItem,
    Command,
    ReturnCartItems,
    ReturnedCartItem,
    TrackEvent,
    UpdateCustomerSession,
)
from bridge.simulator.process import SimulatorProcess
from bridge.talon.client import TalonClient
from bridge.talon.transports import Answer, MockTransport, Request, answer
from bridge.tools.harness import WorkerProcess, read_topic, wait_for
from bridge.tools.produce import LoadSpec, generate, produce_commands
from bridge.worker.handlers import Handlers

PC_DIR = Path(__file__).resolve().parent / "peers" / "parallel-consumer"
PC_RUN = PC_DIR / "run.sh"


@dataclass
class Cell:
    """What every run in one cell shares."""

    conf: dict[str, Any]
    sim: SimulatorProcess
    latency_ms: float
    sessions: int
    partitions: int
    in_flight: int
    logs: Path
    baseline: tuple[str, Path] | None = None  # the baseline's system name and interpreter
    one_pod: bool = False  # scale-out as one `BRIDGE_WORKERS=N` pod
    tree_env: dict[str, str] = field(default_factory=dict)  # the working tree's settings


# ------------------------------------------------------------------ measuring


@dataclass
class _Sample:
    t: float
    count: int
    cpu: float
    rss: float
    threads: dict[str, float] = field(default_factory=dict)
    machine: tuple[float, float] = (0.0, 0.0)


class _OutputCounter:
    """How many records a topic holds, from its high watermarks (no consumer group)."""

    def __init__(self, conf: dict[str, Any], topic: str, partitions: int) -> None:
        self._consumer = Consumer({**conf, "group.id": f"peer-watch-{uuid.uuid4().hex[:6]}"})
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    def count(self) -> int:
        return sum(self._consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in self._tps)

    def close(self) -> None:
        self._consumer.close()


_TICK = os.sysconf("SC_CLK_TCK")


def _threads(pids: Sequence[int]) -> dict[str, float]:
    """CPU seconds by thread name (digits dropped, so pools add up) across `pids`."""
    out: dict[str, float] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                name = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            key = re.sub(r"[-_#]?\d+", "", name) or name
            out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / _TICK
    return out


def _machine() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine, all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / _TICK, sum(ticks) / _TICK


def _children(pid: int) -> list[int]:
    """A supervisor's worker processes (started before it reports ready)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _usage(pids: Sequence[int], previous: _Sample | None) -> tuple[float, float]:
    """Total CPU seconds and summed peak RSS of `pids`; the previous values once one exits."""
    try:
        return sum(cpu_seconds(p) for p in pids), sum(peak_rss_mb(p) for p in pids)
    except (OSError, IndexError, ValueError):
        return (previous.cpu, previous.rss) if previous else (0.0, 0.0)


def _watch(
    counter: _OutputCounter,
    pids: Sequence[int],
    expected: int,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
) -> list[_Sample]:
    """Samples every 100 ms until `expected` output records, or until not `alive`."""
    samples: list[_Sample] = []
    deadline = time.monotonic() + timeout
    while True:
        count = counter.count()
        now = time.monotonic()
        cpu, rss = _usage(pids, samples[-1] if samples else None)
        if not alive():
            break
        samples.append(_Sample(now, count, cpu, rss, _threads(pids), _machine()))
        if count >= expected:
            break
        if now > deadline:
            raise TimeoutError(f"{count} of {expected} output records after {timeout:.0f}s")
        time.sleep(0.1)
    if not samples or samples[-1].count == 0:
        raise RuntimeError("no output record was published")
    return samples


def _window(samples: list[_Sample], lo: float, hi: float) -> tuple[_Sample, _Sample]:
    """The first samples with at least `lo` and at least `hi` output records."""
    first = next(s for s in samples if s.count >= max(lo, 1))
    last = next((s for s in samples if s.count >= hi), samples[-1])
    return first, last


def _load() -> float:
    """The machine's 1-minute load average, to show what else was running."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def _fill(res: Result, first: _Sample, last: _Sample, sim: SimulatorProcess) -> Result:
    res.commands = last.count - first.count
    res.seconds = last.t - first.t
    res.cpu_s = last.cpu - first.cpu
    res.rss_mb = last.rss
    busy = last.machine[0] - first.machine[0]
    total = last.machine[1] - first.machine[1]
    res.machine_busy = busy / total if total else None
    res.thread_cpu = {
        k: round(v - first.threads.get(k, 0.0), 2)
        for k, v in sorted(last.threads.items(), key=lambda kv: -kv[1])
        if v - first.threads.get(k, 0.0) >= 0.05
    }
    stats = sim.stats()
    res.conflicts = int(stats["conflicts_409"])
    res.conflicts_by_kind = {k: int(v) for k, v in stats["conflicts_by_kind"].items() if v}
    res.non_2xx = sum(
        int(n) for code, n in stats["responses_by_status"].items() if not code.startswith("2")
    )
    return res


def _produce(cell: Cell, topic: str, commands: Sequence[Command]) -> None:
    produce_commands(cell.conf, topic, iter(commands), encode=Codec().encode_command)


def _encoder(cell: Cell, system: str) -> Callable[[Command, str], bytes]:
    """How `system`'s input is encoded: the baseline reads only its own revision's schema."""
    if cell.baseline and system == cell.baseline[0]:
        return encoder(cell.baseline[1])
    return Codec().encode_command


# ------------------------------------------------------------------ the systems


@dataclass
class _Running:
    pids: list[int]
    group: str
    alive: Callable[[], bool]


def _pc_command(cell: Cell, topics: dict[str, str], group: str) -> list[str]:
    return [
        str(PC_RUN),
        "run",
        "--bootstrap",
        cell.conf["bootstrap.servers"],
        "--input-topic",
        topics["in"],
        "--output-topic",
        topics["out"],
        "--group",
        group,
        "--talon-url",
        cell.sim.base_url,
        "--api-key",
        API_KEY,
        "--max-concurrency",
        str(cell.in_flight),
    ]


def _stop(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    lines = (out or b"").decode(errors="replace").strip().splitlines()
    if lines:
        print(f"    {name}: {lines[-1]}", flush=True)


@contextlib.contextmanager
def _system(
    cell: Cell,
    system: str,
    topics: dict[str, str],
    *,
    processes: int = 1,
    naive_seconds: float = 20,
) -> Iterator[_Running]:
    """Start `system` on `topics` (bridge: `processes` workers in one group); stop it after."""
    group = f"{system}-{uuid.uuid4().hex[:6]}"
    bootstrap = cell.conf["bootstrap.servers"]
    if system == BRIDGE or (cell.baseline and system == cell.baseline[0]):
        env = bridge_env(bootstrap, cell.sim, topics, group, cell.in_flight)
        python = None
        if cell.baseline and system == cell.baseline[0]:
            python = cell.baseline[1]
            env |= BASELINE_ENV
        else:
            env |= cell.tree_env
        pod = cell.one_pod and python is None and processes > 1
        if pod:
            env |= {"BRIDGE_WORKERS": str(processes)}
        count = 1 if pod else processes
        workers = [WorkerProcess(env, log_dir=cell.logs, python=python) for _ in range(count)]
        with contextlib.ExitStack() as stack:
            for w in workers:
                w.start(wait_ready=False)
                stack.push(w.__exit__)
            wait_for(lambda: all(w.ready() for w in workers), 120, "the workers to be ready")
            pids = [w.proc.pid for w in workers if w.proc is not None]
            if pod:
                pids += _children(pids[0])
            yield _Running(pids, group, lambda: True)
        return
    if system == PC:
        log = cell.logs / f"parallel-consumer-{topics['in']}.log"
        with log.open("ab") as err:
            # run.sh execs the JVM, so this pid is the JVM's.
            proc = subprocess.Popen(
                _pc_command(cell, topics, group), stdout=subprocess.PIPE, stderr=err
            )
    else:
        env = bridge_env(bootstrap, cell.sim, topics, group, 1)
        proc = start_naive(env, naive_seconds)
    try:
        yield _Running([proc.pid], group, lambda: proc.poll() is None)
    finally:
        _stop(proc, system)


def _throughput(
    cell: Cell,
    system: str,
    commands: Sequence[Command],
    warmup: Sequence[Command] = (),
    *,
    processes: int = 1,
    naive_s: float = 20,
) -> Result:
    """`system` on a backlog of `warmup` then `commands`; measured on `commands` only."""
    topics = fresh_topics(cell.conf, cell.partitions)
    if system == NAIVE:
        # Far more than it can finish in its time box.
        warmup, commands = (), commands[: min(len(commands), 5000)]
    backlog = [*warmup, *commands]
    produce_commands(cell.conf, topics["in"], iter(backlog), encode=_encoder(cell, system))
    cell.sim.reset()
    counter = _OutputCounter(cell.conf, topics["out"], cell.partitions)
    res = Result(system, cell.latency_ms, cell.sessions, processes, load=_load())
    # The steady state: from 10% to 90% of the measured commands done.
    lo = len(warmup) + 0.1 * len(commands)
    hi = len(warmup) + 0.9 * len(commands)
    try:
        with _system(cell, system, topics, processes=processes, naive_seconds=naive_s) as run:
            if processes > 1:
                # Scale-out is measured once every worker owns partitions, after the
                # rebalances of the workers joining one by one.
                admin = AdminClient(cell.conf)
                wait_for(
                    lambda: _assigned(admin, run.group, cell.partitions, processes),
                    120,
                    f"{processes} workers to share the partitions",
                    step=0.2,
                )
                lo = max(lo, counter.count())
                hi = max(hi, min(len(backlog), lo + 0.5 * len(commands)))
            samples = _watch(counter, run.pids, len(backlog), 1800, run.alive)
    finally:
        counter.close()
    if system == NAIVE:
        first, last = _window(samples, 1, samples[-1].count)
    else:
        first, last = _window(samples, lo, hi)
    return _fill(res, first, last, cell.sim)


# ------------------------------------------------------------------ latency


def _assigned(admin: AdminClient, group: str, partitions: int, members: int = 1) -> bool:
    """Whether `group` is stable, with all `partitions` assigned and `members` that own some."""
    try:
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except Exception:
        return False
    owned = [len(m.assignment.topic_partitions) for m in desc.members if m.assignment]
    busy = sum(1 for n in owned if n)
    return str(desc.state).endswith("STABLE") and sum(owned) >= partitions and busy >= members


def _latencies(
    cell: Cell, system: str, topics: dict[str, str], n: int, from_ms: float
) -> list[float]:
    """Output timestamp minus input CreateTime, for inputs created at or after `from_ms`."""
    inputs = {
        (m.partition(), m.offset()): m.timestamp()[1]
        for m in read_topic(cell.conf, topics["in"], expected=n)
    }
    codec = Codec()
    out: list[float] = []
    for m in read_topic(cell.conf, topics["out"], expected=n):
        if system == PC:
            v = orjson.loads(m.value())
            src = (v["partition"], v["offset"])
        else:
            e = codec.decode_effects(m.value())
            src = (e.source_partition, e.source_offset)
        t_in = inputs.get(src)
        if t_in is not None and t_in >= from_ms:
            out.append(float(m.timestamp()[1] - t_in))
    return out


def _latency(
    cell: Cell,
    system: str,
    rate: float,
    seconds: float,
    warmup: int,
    processes: int = 1,
    *,
    backlog: int = 0,
) -> Result:
    """p50/p99 end-to-end latency of `system` with commands produced at `rate` per second;
    with `backlog`, that many produced at once instead (its commands/s is the drain rate).

    The system first works through a backlog of `warmup` commands (JIT, caches,
    connection pools), and is idle again before the measured commands are produced. CPU is
    counted from the first measured command produced to the last one's output.
    """
    topics = fresh_topics(cell.conf, cell.partitions)
    cell.sim.reset()
    n = backlog or max(1, int(rate * seconds))
    spec = LoadSpec(
        sessions=cell.sessions,
        total=n,
        max_cart_updates=max(4, 2 * n // max(cell.sessions, 1)),
        run_id=uuid.uuid4().hex[:6],
    )
    counter = _OutputCounter(cell.conf, topics["out"], cell.partitions)
    res = Result(system, cell.latency_ms, cell.sessions, processes, latency_rate=rate, load=_load())
    encode = _encoder(cell, system)
    admin = AdminClient(cell.conf)
    # The naive consumer's time box must outlast the warm-up and the measured commands.
    naive_s = seconds + warmup / max(rate, 1.0) + 120
    try:
        with _system(cell, system, topics, processes=processes, naive_seconds=naive_s) as run:
            wait_for(
                lambda: _assigned(admin, run.group, cell.partitions, processes),
                120,
                f"{system} to be assigned its partitions",
                step=0.5,
            )
            if warmup:
                warm = make_commands(warmup, cell.sessions)
                produce_commands(cell.conf, topics["in"], iter(warm), encode=encode)
                _watch(counter, run.pids, warmup, 600, run.alive)
            from_ms = time.time() * 1000
            cpu0, _ = _usage(run.pids, None)
            t0 = time.monotonic()
            # No linger: latency starts when a command is handed to the producer.
            sent = produce_commands(
                cell.conf,
                topics["in"],
                generate(spec),
                encode=encode,
                rate=None if backlog else rate,
                linger_ms=0,
            )
            last = _watch(counter, run.pids, warmup + sent, 300, run.alive)[-1]
            res.commands, res.seconds = sent, last.t - t0
            res.cpu_s, res.rss_mb = last.cpu - cpu0, last.rss
            res.conflicts = int(cell.sim.stats()["conflicts_409"])
    finally:
        counter.close()
    lat = _latencies(cell, system, topics, warmup + sent, from_ms)
    q = statistics.quantiles(lat, n=100)
    res.p50_ms, res.p99_ms, res.latency_samples = q[49], q[98], len(lat)
    return res


# ------------------------------------------------------------------ request parity


def _bridge_requests(commands: Sequence[Command]) -> list[dict[str, Any]]:
    """What the bridge's own TalonClient sends for each command, captured by a mock transport."""
    seen: list[dict[str, Any]] = []

    def handler(request: Request) -> Answer:
        seen.append(
            {
                "method": request.method,
                "path": request.url.removeprefix("http://sim.invalid"),
                "headers": {name.lower(): value for name, value in request.headers},
                "body": orjson.loads(request.body),
            }
        )
        return answer(200, json={"effects": [], "createdCoupons": [], "createdReferrals": []})

    async def apply_all() -> None:
        client = TalonClient("http://sim.invalid", API_KEY, transport=MockTransport(handler))
        async with client:
            handlers = Handlers(client)
            for cmd in commands:
                await handlers.apply(cmd)

    asyncio.run(apply_all())
    return seen


def _edge_commands() -> list[Command]:
    """Fields and encodings the generated load never uses."""
    sid = "edge/ä session"
    return [
        Command(
            "edge:0",
            sid,
            0,
            UpdateCustomerSession(
                profile_id="",
                state="open",
                cart_items=[
                    CartItem("SKU-1", 1, None, None, None, {"n": 1, "o": {"a": [1, None]}})
                ],
                coupon_codes=[],
                referral_code="REF-1",
                loyalty_cards=["card-1"],
                identifiers=["id-1", "id-2"],
                additional_costs={"shipping": AdditionalCost(4.95)},
                attributes={},
                store_integration_id="store-1",
            ),
            dry=True,
        ),
        Command(
            "edge:1:é",
            sid,
            0,
            TrackEvent("viewed", "p-1", {"x": "y", "n": 2.5}, ["card-1"], "store-1"),
        ),
        Command("edge:2", sid, 0, ReturnCartItems([ReturnedCartItem(sku="SKU-1")]), dry=True),
    ]


def check_parity(count: int = 400) -> str:
    """Checks that the Java harness sends exactly the bridge's requests; returns a summary."""
    commands = [
        *generate(LoadSpec(sessions=count // 3, total=count, run_id="parity")),
        *_edge_commands(),
    ]
    codec = Codec()
    lines = "\n".join(base64.b64encode(codec.encode_command(c, "in")).decode() for c in commands)
    proc = subprocess.run(
        [str(PC_RUN), "bodies", "--api-key", API_KEY],
        input=lines.encode(),
        capture_output=True,
        check=True,
    )
    java = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    ours = _bridge_requests(commands)
    if len(java) != len(ours):
        raise SystemExit(f"parity: {len(java)} Java requests for {len(ours)} bridge requests")
    kinds: dict[str, int] = {}
    # Set by each HTTP client itself, not by the code under comparison.
    own = {"host", "content-length", "user-agent"}
    for cmd, j, b in zip(commands, java, ours, strict=True):
        jh = {k.lower(): v for k, v in j["headers"].items()}
        bh = {k: v for k, v in b["headers"].items() if k not in own}
        problems = [
            what
            for what, same in (
                ("method", j["method"] == b["method"]),
                ("path", j["path"] == b["path"]),
                ("headers", jh == bh),
                ("body", j["body"] == b["body"]),
            )
            if not same
        ]
        if problems:
            raise SystemExit(
                f"parity: {cmd.event_id}: {', '.join(problems)} differ\n"
                f"  java:   {json.dumps(j)}\n  bridge: {json.dumps(b)}"
            )
        kinds[cmd.command_type] = kinds.get(cmd.command_type, 0) + 1
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    return f"request parity: {len(ours)} requests identical ({detail})"


# ------------------------------------------------------------------ main


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def run_cell(
    cell: Cell, args: argparse.Namespace, scale: list[int]
) -> tuple[list[Result], list[Result]]:
    """Every run of one (latency, sessions) cell."""
    tag = f"[{cell.latency_ms:.0f} ms, {cell.sessions:,} sessions]"
    commands = make_commands(args.commands, cell.sessions)
    warmup = make_commands(args.warmup_commands, cell.sessions) if args.warmup_commands else []
    rows: dict[str, Result] = {}
    scaled: list[Result] = []
    # Repeats alternate the systems, so a change in the machine's other load hits both.
    bridges = [BRIDGE, cell.baseline[0]] if cell.baseline else [BRIDGE]
    runs: dict[str, list[Result]] = {system: [] for system in (*bridges, PC, NAIVE)}
    order = [s for _ in range(args.repeat) for s in (*bridges, PC)] + [NAIVE]
    for system in order:
        r = _throughput(cell, system, commands, warmup, naive_s=args.naive_seconds)
        runs[system].append(r)
        print(
            f"{tag} {system}: {r.rate:,.0f}/s, {fmt(r.cpu_per_1k, '.2f')} CPU s/1k,"
            f" {fmt(r.rss_mb, '.0f')} MB, 409s {conflicts(r)}, non-2xx {r.non_2xx}",
            flush=True,
        )
        print(f"    {where(r)}", flush=True)
    for system, done in runs.items():
        median = median_run(done, lambda r: r.rate)
        median.rates = [r.rate for r in done]
        median.cpu_runs = [r.cpu_per_1k for r in done]
        rows[system] = median
    for k in scale:
        if k == 1:
            scaled.append(rows[BRIDGE])
            continue
        for system in bridges:
            r = _throughput(cell, system, commands, warmup, processes=k)
            scaled.append(r)
            print(
                f"{tag} {k} {system} processes: {r.rate:,.0f}/s, {fmt(r.cpu_per_1k, '.2f')}"
                f" CPU s/1k, {fmt(r.rss_mb, '.0f')} MB, 409s {conflicts(r)}",
                flush=True,
            )
            print(f"    {where(r)}", flush=True)
    if args.latency_seconds > 0:
        # Equal load for every bridge and Parallel Consumer: half the slowest one's throughput.
        same = 0.5 * min(rows[s].rate for s in (*bridges, PC))
        plan = [*((s, same) for s in (*bridges, PC)), (NAIVE, 0.5 * rows[NAIVE].rate)]
        for system, rate in plan:
            warm_n = int(rows[system].rate * args.warmup_seconds)
            lat = _latency(cell, system, rate, args.latency_seconds, warm_n)
            r = rows[system]
            r.p50_ms, r.p99_ms = lat.p50_ms, lat.p99_ms
            r.latency_rate, r.latency_samples = lat.latency_rate, lat.latency_samples
            print(
                f"{tag} {system} at {rate:,.0f}/s: p50 {lat.p50_ms:.0f} ms,"
                f" p99 {lat.p99_ms:.0f} ms ({lat.latency_samples:,} records)",
                flush=True,
            )
    return list(rows.values()), scaled


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latencies", default="20,50", help="simulated API latencies, ms")
    parser.add_argument("--sessions", default="1000,10000", help="session counts")
    parser.add_argument("--commands", type=int, default=30_000, help="commands per run")
    parser.add_argument(
        "--warmup-commands",
        type=int,
        default=15_000,
        help="a throughput run's backlog starts with this many more, not measured",
    )
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--in-flight", type=int, default=256, help="bridge and PC concurrency")
    parser.add_argument("--scale", default="1,2,4", help="bridge processes for scale-out")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="throughput runs of bridge and PC per cell, alternated; the median is reported",
    )
    parser.add_argument(
        "--one-pod",
        action="store_true",
        help="scale-out runs the working tree's processes as one BRIDGE_WORKERS=N pod",
    )
    parser.add_argument("--naive-seconds", type=float, default=20)
    parser.add_argument("--latency-seconds", type=float, default=20, help="0 skips latency")
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=10,
        help="before a latency run, a backlog of this many seconds at the system's throughput",
    )
    parser.add_argument("--bootstrap", default=None, help="an existing broker")
    parser.add_argument("--plot", type=Path, default=None, help="write the chart here (PNG)")
    parser.add_argument("--markdown", type=Path, default=None, help="write the tables here")
    parser.add_argument("--json", type=Path, default=None, help="write raw results here")
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="only report results saved by --json"
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="also run this git revision's bridge wherever the working tree's runs, installed"
        " into its own environment from a worktree, and give every bridge figure as a ratio"
        " against it",
    )
    add_worker_env(
        parser,
        "a setting for the working tree's workers only (not the baseline's), repeatable;"
        " e.g. BRIDGE_TALON_HTTP_ENGINE=reqwest",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        _report(
            args,
            [Result(**r) for r in data["results"]],
            [Result(**r) for r in data["scale"]],
        )
        return

    baseline = (baseline_name(args.baseline), install(args.baseline)) if args.baseline else None
    subprocess.run([str(PC_RUN), "build"], check=True)
    if not args.skip_parity:
        print(check_parity(), flush=True)
    logs = Path("benchmarks/results/logs")
    logs.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    scaled: list[Result] = []
    started = time.monotonic()
    with broker(args.bootstrap) as bootstrap:
        conf = {"bootstrap.servers": bootstrap}
        for latency in [float(x) for x in args.latencies.split(",") if x]:
            sim_args = ["--latency-ms", str(latency), "--latency-jitter-ms", "2"]
            with SimulatorProcess(api_key=API_KEY, args=sim_args) as sim:
                for sessions in _ints(args.sessions):
                    cell = Cell(
                        conf,
                        sim,
                        latency,
                        sessions,
                        args.partitions,
                        args.in_flight,
                        logs,
                        baseline,
                        args.one_pod,
                        dict(item.split("=", 1) for item in args.worker_env),
                    )
                    rows, scale = run_cell(cell, args, _ints(args.scale))
                    results += rows
                    scaled += scale
    print(
        f"\n{args.commands:,} commands per run, {args.partitions} partitions, max in flight"
        f" {args.in_flight}; {(time.monotonic() - started) / 60:.1f} min\n"
    )
    _report(args, results, scaled)


def _report(args: argparse.Namespace, results: list[Result], scaled: list[Result]) -> None:
    table = markdown(results, scaled)
    named = sorted({r.system for r in results if r.system.startswith(f"{BRIDGE}@")})
    for baseline in named:
        table += "\n\n" + baseline_markdown(results, scaled, baseline)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    if args.json and not args.from_json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        data = {"results": [asdict(r) for r in results], "scale": [asdict(r) for r in scaled]}
        args.json.write_text(json.dumps(data, indent=1))
    if args.plot:
        plot(results, scaled, args.plot)
        print(f"\nchart: {args.plot}")


if __name__ == "__main__":
    main(sys.argv[1:])
