"""Per-command timestamps for `benchmarks.hops`, loaded at interpreter start via PYTHONPATH.

Inert unless HOPS_WORKER_FILE (in the worker) or HOPS_SIMULATOR_FILE (in the simulator) is
set. Each process keeps monotonic timestamps per record or request and writes them as JSON
when it exits, with the offset from the monotonic clock to wall-clock time.
"""

# The simulator has no hook: that probe wraps a private method.
# ruff: noqa: SLF001

from __future__ import annotations

import atexit
import json
import os
import time
from typing import Any

_clock = time.monotonic


def _dump(path: str, rows: Any) -> None:
    with open(path, "w") as f:
        json.dump({"wall_minus_monotonic": time.time() - _clock(), "rows": rows}, f)


def _probe_worker(path: str) -> None:
    from functools import partial

    import bridge.worker.root as worker
    from bridge.worker.work import Observer

    received: dict[tuple[int, int], tuple[int, float]] = {}
    rows: dict[tuple[int, int], list[Any]] = {}

    class Probe(Observer):
        def consumed(self, records: list[Any]) -> None:
            now = _clock()
            for r in records:
                received[(r.partition, r.offset)] = (r.timestamp_ms, now)

        def batch(self, records: list[Any]) -> None:
            now = _clock()
            for r in records:
                got = received.pop((r.partition, r.offset), None)
                if got is not None:
                    # append ms (wall clock), received, taken by the loop, call, publish, eventId
                    rows[(r.partition, r.offset)] = [got[0], got[1], now, 0.0, 0.0, None]

        def calling(self, rec: Any, cmd: Any) -> None:
            row = rows.get((rec.partition, rec.offset))
            if row is not None and row[5] is None:
                row[3], row[5] = _clock(), cmd.event_id

        def publishing(self, rec: Any, cmd: Any) -> None:
            row = rows.get((rec.partition, rec.offset))
            if row is not None:
                row[4] = _clock()

    # `talon-bridge run` looks `run_worker` up when it starts.
    worker.run_worker = partial(worker.run_worker, observer=Probe())
    atexit.register(lambda: _dump(path, list(rows.values())))


def _probe_simulator(path: str) -> None:
    import bridge.simulator.app as app

    rows: dict[str, tuple[float, float]] = {}
    mutate = app.Simulator._mutate

    async def probed_mutate(self: Any, request: Any, route: Any, arrival: int, **kw: Any) -> Any:
        entered = _clock()
        response = await mutate(self, request, route, arrival, **kw)
        event_id = request.headers.get(app.EVENT_ID_HEADER)
        if event_id:
            rows[event_id] = (entered, _clock())
        return response

    app.Simulator._mutate = probed_mutate  # type: ignore[method-assign]
    atexit.register(lambda: _dump(path, rows))


if os.environ.get("HOPS_WORKER_FILE"):
    _probe_worker(os.environ["HOPS_WORKER_FILE"])
if os.environ.get("HOPS_SIMULATOR_FILE"):
    _probe_simulator(os.environ["HOPS_SIMULATOR_FILE"])
