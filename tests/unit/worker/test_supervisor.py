"""Several worker processes in one pod: settings, each process's environment, the exit status,
and the one endpoint (metrics merged, probes joined) over real local HTTP endpoints."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bridge.cli import main
from bridge.environment import load
from bridge.errors import ConfigError
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.worker import supervisor
from bridge.worker.fanin import FanIn, merge_expositions, render
from bridge.worker.health import HealthServer
from bridge.worker.supervisor import (
    Supervisor,
    child_environment,
    exit_status,
    transactional_id,
)
from tests.support.environment import MINIMAL, clean_environment


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return clean_environment(monkeypatch)


# --- settings and the command line ---------------------------------------------------------


def test_one_process_by_default(env: pytest.MonkeyPatch) -> None:
    assert load(Settings).workers == 1


@pytest.mark.parametrize("value", ["0", "-1", "65", "two"])
def test_a_bad_process_count_names_the_setting(env: pytest.MonkeyPatch, value: str) -> None:
    env.setenv("BRIDGE_WORKERS", value)
    with pytest.raises(ConfigError) as caught:
        load(Settings)
    assert caught.value.setting == "BRIDGE_WORKERS"


def _dispatch(env: pytest.MonkeyPatch) -> dict[str, int]:
    """Which runner `talon-bridge run` calls, with the process count it saw."""
    calls: dict[str, int] = {}

    def runner(name: str) -> Callable[..., int]:
        def run(settings: Settings, **_: Any) -> int:
            calls[name] = settings.workers
            return 0

        return run

    env.setattr("bridge.worker.root.run_worker", runner("worker"))
    env.setattr(supervisor, "run_supervisor", runner("supervisor"))
    return calls


def test_one_process_runs_the_worker_here_without_a_supervisor(env: pytest.MonkeyPatch) -> None:
    calls = _dispatch(env)
    assert main(["run"]) == 0
    assert calls == {"worker": 1}


def test_workers_setting_starts_the_supervisor(env: pytest.MonkeyPatch) -> None:
    calls = _dispatch(env)
    env.setenv("BRIDGE_WORKERS", "3")
    assert main(["run"]) == 0
    assert calls == {"supervisor": 3}


def test_the_command_line_overrides_the_setting(env: pytest.MonkeyPatch) -> None:
    calls = _dispatch(env)
    env.setenv("BRIDGE_WORKERS", "3")
    assert main(["run", "--workers", "1"]) == 0
    assert calls == {"worker": 1}


def test_a_bad_command_line_count_names_the_setting(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _dispatch(env)
    assert main(["run", "--workers", "0"]) == 2
    assert "BRIDGE_WORKERS" in capsys.readouterr().err


# --- each process's environment and the pod's exit status ----------------------------------


def test_transactional_ids_are_derived_per_process() -> None:
    assert [transactional_id("bridge-pod-0", i) for i in range(3)] == [
        "bridge-pod-0-0",
        "bridge-pod-0-1",
        "bridge-pod-0-2",
    ]
    assert transactional_id(None, 1) is None


def test_each_process_runs_alone_on_its_own_port(env: pytest.MonkeyPatch) -> None:
    env.setenv("BRIDGE_WORKERS", "2")
    env.setenv("BRIDGE_EXACTLY_ONCE", "true")
    env.setenv("BRIDGE_TRANSACTIONAL_ID", "bridge-7")
    settings = load(Settings)
    child = child_environment(dict(os.environ), settings, 1, 41234)
    assert child["BRIDGE_WORKERS"] == "1"
    assert child["BRIDGE_METRICS_PORT"] == "41234"
    assert child["BRIDGE_TRANSACTIONAL_ID"] == "bridge-7-1"
    assert child["BRIDGE_TALON_API_KEY"] == MINIMAL["BRIDGE_TALON_API_KEY"]


def test_without_a_transactional_id_each_process_makes_its_own(env: pytest.MonkeyPatch) -> None:
    env.setenv("BRIDGE_EXACTLY_ONCE", "true")
    child = child_environment(dict(os.environ), load(Settings), 0, 41234)
    assert "BRIDGE_TRANSACTIONAL_ID" not in child


@pytest.mark.parametrize(
    ("codes", "asked", "status"),
    [
        ([0, 0], True, 0),
        ([0, 1], True, 1),
        ([0, -9], True, 1),
        ([-9, 0], False, 1),  # killed unasked: the others drained cleanly, the pod still fails
        ([0, 0], False, 1),  # a process that stops unasked is a failure, even with 0
        ([3, 0], False, 3),
    ],
)
def test_exit_status(codes: list[int], asked: bool, status: int) -> None:
    assert exit_status(codes, asked) == status


def test_a_taken_pod_port_names_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - where the pod's port listens
        taken.listen()
        with pytest.raises(ConfigError) as caught:
            supervisor._listen(taken.getsockname()[1])
    assert caught.value.setting == "BRIDGE_METRICS_PORT"


# --- merged metrics ------------------------------------------------------------------------


def _worker_metrics(consumed: float, ready: bool) -> Metrics:
    metrics = Metrics(CollectorRegistry())
    metrics.consumed.labels("talon.commands").inc(consumed)
    metrics.ready.set_function(lambda: 1.0 if ready else 0.0)
    metrics.api_duration_for("default", "update_session", "2xx").observe(0.02)
    metrics.running_on("uvloop")
    return metrics


def _samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_every_series_of_every_process_keeps_its_value_under_a_worker_label() -> None:
    workers = [_worker_metrics(5, True), _worker_metrics(7, False)]
    texts = {str(i): generate_latest(m.registry).decode() for i, m in enumerate(workers)}
    merged = _samples(render(merge_expositions(texts)))
    for index, metrics in enumerate(workers):
        own = _samples(generate_latest(metrics.registry))
        for (name, labels), value in own.items():
            if name.startswith("process_"):
                continue  # read again, so they moved on
            assert merged[(name, labels | {("worker", str(index))})] == value
    consumed = frozenset({("topic", "talon.commands"), ("worker", "1")})
    assert merged[("bridge_commands_consumed_total", consumed)] == 7
    # The info gauge keeps its labels and gains the worker's.
    builds = [k for k in merged if k[0] == "bridge_build_info"]
    assert sorted(dict(labels)["worker"] for _, labels in builds) == ["0", "1"]
    assert all(dict(labels)["event_loop"] == "uvloop" for _, labels in builds)


def test_families_shared_by_every_process_are_declared_once() -> None:
    texts = {str(i): generate_latest(_worker_metrics(1, True).registry).decode() for i in (0, 1)}
    body = render(merge_expositions(texts)).decode()
    types = [line for line in body.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))
    assert "# TYPE process_cpu_seconds_total counter" in types
    assert "# TYPE bridge_commands_consumed_total counter" in types
    assert "# TYPE bridge_api_request_duration_seconds histogram" in types


# --- the pod's endpoint over real local endpoints ------------------------------------------


class _Pod:
    """Two worker endpoints (the real HealthServer) behind a FanIn."""

    def __init__(self) -> None:
        self.ready = [True, True]
        self.alive = [True, True]
        self.failed = False
        self.stopping = False
        self.children = [
            HealthServer(
                _worker_metrics(i + 1, True).registry,
                ready=lambda i=i: self.ready[i],
                alive=lambda i=i: self.alive[i],
            )
            for i in range(2)
        ]
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.setblocking(False)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.fanin: FanIn | None = None

    async def start(self, second: int | None = None) -> None:
        """`second`: the second process's port instead of its endpoint's (one that is gone)."""
        ports = [await child.start("127.0.0.1", 0) for child in self.children]
        if second is not None:
            ports[1] = second
        own = CollectorRegistry()
        ProcessCollector(registry=own)
        self.fanin = FanIn(
            ports, own=own, failed=lambda: self.failed, stopping=lambda: self.stopping
        )
        await self.fanin.start(self.sock)

    async def stop(self) -> None:
        if self.fanin is not None:
            await self.fanin.stop()
        for child in self.children:
            await child.stop()
        self.sock.close()


@pytest.fixture
async def pod() -> AsyncIterator[_Pod]:
    p = _Pod()
    await p.start()
    yield p
    await p.stop()


async def _get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


async def test_ready_only_when_every_process_is(pod: _Pod) -> None:
    assert await _get(pod.url + "/readyz") == (200, {"ready": True, "workers": [True, True]})
    pod.ready[1] = False
    assert await _get(pod.url + "/readyz") == (503, {"ready": False, "workers": [True, False]})


async def test_not_ready_once_stopping(pod: _Pod) -> None:
    pod.stopping = True
    assert (await _get(pod.url + "/readyz"))[0] == 503


async def test_alive_fails_with_a_process_or_once_one_has_died(pod: _Pod) -> None:
    assert (await _get(pod.url + "/healthz"))[0] == 200
    pod.alive[0] = False
    assert await _get(pod.url + "/healthz") == (503, {"alive": False, "workers": [False, True]})
    pod.alive[0] = True
    pod.failed = True
    assert (await _get(pod.url + "/healthz"))[0] == 503


async def test_a_process_that_does_not_answer_is_neither_ready_nor_alive() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        gone = closed.getsockname()[1]
    p = _Pod()
    await p.start(second=gone)
    try:
        assert (await _get(p.url + "/readyz"))[1] == {"ready": False, "workers": [True, False]}
        assert (await _get(p.url + "/healthz"))[0] == 503
        # The scrape still answers, with what the answering process said.
        status, body = await _get(p.url + "/metrics")
        assert status == 200
        assert 'bridge_commands_consumed_total{topic="talon.commands",worker="0"} 1.0' in body
        assert 'worker="1"' not in body
    finally:
        await p.stop()


async def test_metrics_show_every_process_and_the_supervisor(pod: _Pod) -> None:
    status, body = await _get(pod.url + "/metrics")
    assert status == 200
    for index, consumed in (("0", 1.0), ("1", 2.0)):
        line = f'bridge_commands_consumed_total{{topic="talon.commands",worker="{index}"}}'
        assert f"{line} {consumed}" in body
        assert f'bridge_ready{{worker="{index}"}} 1.0' in body
    assert body.count("# TYPE bridge_build_info gauge") == 1
    assert 'process_cpu_seconds_total{worker="supervisor"}' in body


# --- watching and stopping processes (plain Python children stand in for workers) ---------

# Exits 0 on SIGTERM, as a worker does after its drain; `exit` ends it at once with a code.
_CHILD = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("up", flush=True)
code = int(sys.argv[1])
if code >= 0:
    sys.exit(code)
while True:
    time.sleep(1)
"""


def _spawn(code: int = -1) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(code)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"up\n"  # its handler is in place
    return proc


async def _supervise(
    procs: list[subprocess.Popen[bytes]], after_start: Callable[[Supervisor], None]
) -> tuple[Supervisor, int]:
    settings = Settings(**{k.removeprefix("BRIDGE_").lower(): v for k, v in MINIMAL.items()})
    sup = Supervisor(settings, procs)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    endpoint = FanIn([], own=CollectorRegistry(), failed=lambda: False, stopping=lambda: False)
    asyncio.get_running_loop().call_soon(after_start, sup)
    try:
        return sup, await sup.run(endpoint, sock)
    finally:
        sock.close()
        for proc in procs:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


async def test_a_stop_request_reaches_every_process_and_a_clean_stop_exits_0() -> None:
    procs = [_spawn(), _spawn()]
    sup, status = await _supervise(procs, lambda s: s.request_stop(signal.SIGTERM))
    assert status == 0
    assert [p.returncode for p in procs] == [0, 0]
    assert sup.asked and not sup.failed


async def test_a_process_that_exits_unasked_stops_the_others_and_fails_the_pod() -> None:
    procs = [_spawn(), _spawn(3)]
    sup, status = await _supervise(procs, lambda s: None)
    assert status == 3
    assert procs[0].returncode == 0, "the other process was asked to stop and drained"
    assert sup.failed
