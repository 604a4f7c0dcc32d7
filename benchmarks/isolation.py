"""Do other sessions keep flowing while one session fails? Throughput with and without it.

Runs the bridge twice on the same kind of backlog against the simulator: once healthy, once
with every request of one session failing (500) until its retries run out. Prints the healthy
sessions' throughput in both runs and their ratio.

    .venv/bin/python -m benchmarks.isolation --commands 30000 --sessions 3000
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections.abc import Iterator

from bridge.avro.codec import Codec
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


def _run(
    bootstrap: str, sim: SimulatorProcess, commands: int, sessions: int, failing: bool
) -> tuple[float, int]:
    conf = {"bootstrap.servers": bootstrap}
    run = uuid.uuid4().hex[:6]
    topics = create_bridge_topics(conf, f"iso-{run}", 12)
    cmds = list(
        generate(
            LoadSpec(
                sessions=sessions,
                total=commands,
                max_cart_updates=2 * commands // sessions,
                run_id=run,
            )
        )
    )
    victim = cmds[0].session_id
    produce_commands(conf, topics["in"], iter(cmds), encode=Codec().encode_command)
    sim.reset()
    sim.set_faults(latency_ms=20, latency_jitter_ms=2, fail_sessions=[victim] if failing else [])
    env = worker_env(
        bootstrap,
        topics,
        group=f"iso-{run}",
        talon_url=sim.base_url,
        api_key=API_KEY,
        BRIDGE_LOG_LEVEL="WARNING",
    )
    healthy = sum(1 for c in cmds if c.session_id != victim)
    with WorkerProcess(env):
        t0 = time.monotonic()
        wait_for(
            lambda: sim.stats()["applied"] >= healthy, 600, "healthy sessions applied", step=0.05
        )
        seconds = time.monotonic() - t0
    return healthy / seconds, sum(1 for c in cmds if c.session_id == victim)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=30_000)
    parser.add_argument("--sessions", type=int, default=3_000)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()
    with _broker(args.bootstrap) as bootstrap, SimulatorProcess(api_key=API_KEY) as sim:
        normal, _ = _run(bootstrap, sim, args.commands, args.sessions, failing=False)
        degraded, victim_cmds = _run(bootstrap, sim, args.commands, args.sessions, failing=True)
    print(f"healthy sessions, no failure:          {normal:,.0f} commands/s")
    print(
        f"healthy sessions, one session failing: {degraded:,.0f} commands/s "
        f"({victim_cmds} commands of the failing session retried, then dead-lettered)"
    )
    print(f"ratio: {degraded / normal:.2f}")


if __name__ == "__main__":
    main()
