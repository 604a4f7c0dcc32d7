"""Where a command's own latency goes, hop by hop, in latency runs like `benchmarks.e2e`'s.

The worker and the simulator run with the probes in `benchmarks/probes/` (loaded through
PYTHONPATH), which time each command at six points: the broker's append, the consumer thread
receiving it, the event loop taking it, the call starting, the simulator's handler entering
and returning, and the effects record being built. The journal adds when the simulator took
the session and applied the request. Prints p50/p90/p99 per hop and the own p99 of each run.

Run: ``.venv/bin/python -m benchmarks.hops --rate 1225 --runs 3 [--bootstrap host:port]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import e2e
from bridge.simulator.process import SimulatorProcess

PROBES = Path(__file__).parent / "probes"
HOPS = (
    ("append → consumer thread", "fetch"),
    ("consumer thread → event loop", "hand"),
    ("call started → simulator's handler", "to_sim"),
    ("handler entered → session taken", "pre"),
    ("request applied → handler returned", "post"),
    ("handler returned → effects built", "back"),
)


def _load(path: Path) -> tuple[float, Any]:
    data = json.loads(path.read_text())
    return data["wall_minus_monotonic"], data["rows"]


def hop_times(
    worker: Path, simulator: Path, journal: dict[str, tuple[int, int]]
) -> dict[str, list[float]]:
    """Milliseconds per hop, for every command the worker, the simulator and the journal saw."""
    offset, rows = _load(worker)
    _, handled = _load(simulator)
    hops: dict[str, list[float]] = {key: [] for _, key in HOPS}
    for append_ms, received, taken, called, published, event_id in rows:
        if event_id not in journal or event_id not in handled or not published:
            continue
        acquired, applied = (ns / 1e9 for ns in journal[event_id])
        entered, returned = handled[event_id]
        for key, ms in (
            ("fetch", (received + offset) * 1000 - append_ms),
            ("hand", (taken - received) * 1000),
            ("to_sim", (entered - called) * 1000),
            ("pre", (acquired - entered) * 1000),
            ("post", (returned - applied) * 1000),
            ("back", (published - returned) * 1000),
        ):
            hops[key].append(ms)
    return hops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1225.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup-seconds", type=float, default=20.0)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--bootstrap", default=None, help="default: start a local broker")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="hops-"))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(PROBES), os.environ.get("PYTHONPATH")])
    )
    sim_file = out / "simulator.json"
    worker_file = out / "worker.json"
    bridge_env = e2e.bridge_env

    def probed_env(*a: Any, **k: Any) -> dict[str, str]:
        return {**bridge_env(*a, **k), "HOPS_WORKER_FILE": str(worker_file)}

    e2e.bridge_env = probed_env
    sim_args = ["--latency-ms", "20", "--latency-jitter-ms", "2"]
    journals: list[dict[str, tuple[int, int]]] = []
    owns: list[float] = []
    with e2e.broker(args.bootstrap) as bootstrap:
        sim = SimulatorProcess(
            api_key=e2e.API_KEY, args=sim_args, env={"HOPS_SIMULATOR_FILE": str(sim_file)}
        )
        with sim:
            for run in range(args.runs):
                row = e2e.run_latency(
                    bootstrap,
                    sim,
                    args.rate,
                    args.seconds,
                    args.sessions,
                    args.partitions,
                    args.in_flight,
                    args.warmup_seconds,
                )
                worker_file.rename(out / f"worker-{run}.json")
                journals.append(e2e.journal_times(sim))
                own50, own99 = row.own_p50_ms or 0.0, row.own_p99_ms or 0.0
                owns.append(own99)
                print(
                    f"run {run + 1}: own p50 {own50:.1f} ms, p99 {own99:.1f} ms",
                    flush=True,
                )
    print(
        f"\n| hop | p50 ms | p90 ms | p99 ms |  (runs at {args.rate:,.0f}/s; own p99 "
        + ", ".join(f"{o:.1f}" for o in owns)
        + " ms)"
    )
    print("|---|---:|---:|---:|")
    per_run = [hop_times(out / f"worker-{r}.json", sim_file, journals[r]) for r in range(args.runs)]
    for name, key in HOPS:
        cells = []
        for q in (49, 89, 98):
            values = [statistics.quantiles(h[key], n=100)[q] for h in per_run if len(h[key]) > 1]
            cells.append("-".join(f"{v:.1f}" for v in (min(values), max(values))) if values else "")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
