"""Several worker processes in one pod (`BRIDGE_WORKERS` > 1): started, watched and stopped
together.

Each process is `talon-bridge run` with `BRIDGE_WORKERS=1`: a full member of the consumer
group with its own consumer, producer and event loop, serving its endpoint on a local port
that `fanin.py` joins into the pod's one endpoint. SIGTERM and SIGINT are forwarded, each
process drains as it would alone, and the pod exits failing if any of them failed.

A process that exits unasked is not restarted here: the others drain and leave the group, the
supervisor exits failing and Kubernetes restarts the pod, with its own backoff. That is one
policy for every failure (a fatal Kafka error, a crash, a process killed for memory), and what
the pod reports (its restarts) is what happened.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector

from bridge.errors import ConfigError
from bridge.settings import ENV_PREFIX, Settings
from bridge.worker.fanin import FanIn

__all__ = ["child_environment", "exit_status", "run_supervisor", "transactional_id"]

log = logging.getLogger(__name__)

# What each process gets beyond its drain before it is killed: the final commit, producer
# flush and consumer close (the chart's grace period leaves 15 s after the drain).
STOP_MARGIN_S = 10.0
_PR_SET_PDEATHSIG = 1


def transactional_id(base: str | None, index: int) -> str | None:
    """Each process's own transactional id: `<id>-<index>`; unset stays unset (unique per
    process)."""
    return None if base is None else f"{base}-{index}"


def child_environment(
    environ: Mapping[str, str], settings: Settings, index: int, port: int
) -> dict[str, str]:
    """The environment of worker process `index`: the pod's, run alone on a local `port`."""
    env = {
        **environ,
        f"{ENV_PREFIX}WORKERS": "1",
        f"{ENV_PREFIX}METRICS_PORT": str(port),
    }
    txn_id = transactional_id(settings.transactional_id, index)
    if txn_id is not None:
        env[f"{ENV_PREFIX}TRANSACTIONAL_ID"] = txn_id
    return env


def exit_status(codes: Sequence[int], asked: bool) -> int:
    """0 when the processes were asked to stop and all did cleanly; else the first failing
    exit code (1 for a process killed by a signal or one that stopped unasked)."""
    failing = [code for code in codes if code != 0]
    if asked and not failing:
        return 0
    return next((code for code in failing if code > 0), 1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 - a worker process listens on every address
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # In the child before exec: if the supervisor dies without forwarding a signal, the
    # process still drains instead of consuming on alone.
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("0.0.0.0", port))  # noqa: S104 - probes and scrapes come from outside
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"{ENV_PREFIX}METRICS_PORT", f"cannot listen on {port}: {exc.strerror}"
        ) from exc
    sock.setblocking(False)
    return sock


class Supervisor:
    """Runs the started processes until they have all exited; see the module docstring."""

    def __init__(self, settings: Settings, procs: list[subprocess.Popen[bytes]]) -> None:
        self.settings = settings
        self.procs = procs
        self.asked = False
        self.failed = False
        self._signals = 0

    def _forward(self, sig: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    def request_stop(self, sig: int = signal.SIGTERM) -> None:
        # A second signal reaches the processes too, which then exit at once.
        self._signals += 1
        self.asked = True
        log.info("stopping: the worker processes drain", extra={"signals": self._signals})
        self._forward(sig)

    def _exited(self, index: int, code: int) -> None:
        if self.asked or self.failed:
            log.info("worker process stopped", extra={"worker": index, "exit_code": code})
            return
        log.error(
            "worker process exited unasked; stopping the others so the pod restarts",
            extra={"worker": index, "exit_code": code},
        )
        self.failed = True
        self._forward(signal.SIGTERM)

    async def run(self, endpoint: FanIn, sock: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        exits: list[asyncio.Future[int]] = []
        for index, proc in enumerate(self.procs):
            future: asyncio.Future[int] = loop.create_future()
            exits.append(future)
            threading.Thread(
                target=self._wait, args=(loop, proc, future), name=f"worker-{index}", daemon=True
            ).start()
        await endpoint.start(sock)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        index_of = {future: index for index, future in enumerate(exits)}
        pending: set[asyncio.Future[int]] = set(exits)
        deadline: float | None = None
        try:
            while pending:
                if deadline is None and (self.asked or self.failed):
                    deadline = loop.time() + self.settings.drain_timeout + STOP_MARGIN_S
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                done, pending = await asyncio.wait(
                    pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for future in done:
                    self._exited(index_of[future], future.result())
                if not done and pending:
                    log.error("worker processes did not stop in time; killing them")
                    self._forward(signal.SIGKILL)
                    self.failed = True
                    deadline = loop.time() + STOP_MARGIN_S
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await endpoint.stop()
        codes = [proc.returncode for proc in self.procs]
        status = exit_status(codes, self.asked and not self.failed)
        log.info("worker processes stopped", extra={"exit_code": status})
        return status

    @staticmethod
    def _wait(
        loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes], future: asyncio.Future[int]
    ) -> None:
        code = proc.wait()
        loop.call_soon_threadsafe(future.set_result, code)


def run_supervisor(settings: Settings) -> int:
    """Run `settings.workers` worker processes until SIGTERM/SIGINT or one fails."""
    # The pod's port is bound before anything starts, so a taken port is a setting's error.
    sock = _listen(settings.metrics_port)
    ports = [_free_port() for _ in range(settings.workers)]
    log.info("worker processes starting", extra={"workers": settings.workers})
    # Started before any thread exists (the pre-exec hook is not safe beside threads); in a
    # session of their own, so a terminal's Ctrl-C reaches them once, through the supervisor.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bridge", "run"],
            env=child_environment(os.environ, settings, index, port),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        for index, port in enumerate(ports)
    ]
    own = CollectorRegistry()
    ProcessCollector(registry=own)
    supervisor = Supervisor(settings, procs)
    endpoint = FanIn(
        ports, own=own, failed=lambda: supervisor.failed, stopping=lambda: supervisor.asked
    )
    try:
        return asyncio.run(supervisor.run(endpoint, sock))
    finally:
        sock.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
