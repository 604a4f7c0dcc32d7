"""Run the simulator as a real subprocess and talk to its admin endpoints synchronously.

`SimulatorProcess` starts ``python -m bridge simulator --host 127.0.0.1 --port <free port>``,
waits for its ready line and a healthy ``/_sim/health``, exposes `base_url`, wraps the
``/_sim/*`` endpoints in plain blocking calls (stdlib ``urllib``, no proxies), and stops
the process with SIGTERM (SIGKILL if it does not exit in time). It is a context manager::

    with SimulatorProcess(args=["--latency-ms", "20"]) as sim:
        sim.set_faults(rate_429=0.1)
        ...                      # point the bridge at sim.base_url with sim.api_key
        assert sim.stats()["applied_event_ids_repeated"] == 0
"""

from __future__ import annotations

import collections
import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import IO, Any

from bridge.simulator.cli import READY_PREFIX
from bridge.tools.ports import free_port

__all__ = ["HttpResult", "SimulatorProcess", "SimulatorStartError"]

_PORT_ATTEMPTS = 3


class SimulatorStartError(RuntimeError):
    """The simulator process did not become ready; the message ends with its stderr tail."""


class HttpResult:
    """Status, headers and body of one HTTP exchange."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class SimulatorProcess:
    """A simulator subprocess bound to 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        *,
        api_key: str = "sim-key",
        host: str = "127.0.0.1",
        port: int | None = None,
        args: Sequence[str] = (),
        python: str = sys.executable,
        startup_timeout_s: float = 20.0,
        request_timeout_s: float = 10.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.args = list(args)
        self._python = python
        self._startup_timeout = startup_timeout_s
        self._timeout = request_timeout_s
        self._env = dict(env) if env is not None else None
        self._proc: subprocess.Popen[str] | None = None
        self._pumps: list[threading.Thread] = []
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the simulator is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> SimulatorProcess:
        """Start the process and wait until it answers; returns self."""
        if self.running:
            return self
        fixed = self.port is not None
        for attempt in range(1 if fixed else _PORT_ATTEMPTS):
            if not fixed:
                self.port = free_port(self.host)
            try:
                self._launch()
                return self
            except SimulatorStartError:
                # Another process may have taken the port between probing and binding.
                if fixed or attempt == _PORT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self) -> None:
        cmd = [
            self._python,
            "-m",
            "bridge",
            "simulator",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--api-key",
            self.api_key,
            *self.args,
        ]
        env = {**os.environ, **(self._env or {})}
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._stderr_tail.clear()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - PIPE above
        lines: queue.Queue[str | None] = queue.Queue()
        self._pumps = [
            _drain(proc.stdout, lines.put, lambda: lines.put(None)),
            _drain(proc.stderr, self._stderr_tail.append),
        ]
        deadline = time.monotonic() + self._startup_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(proc, "did not print its ready line in time")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._fail(proc, f"exited with code {proc.wait()} before it was ready")
            elif line.startswith(READY_PREFIX):
                break
        if self.admin("GET", "/_sim/health").status != 200:
            self._fail(proc, "answered /_sim/health with an error")

    def _fail(self, proc: subprocess.Popen[str], why: str) -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._close_pipes(proc)
        tail = "".join(self._stderr_tail)
        raise SimulatorStartError(f"simulator on port {self.port} {why}\n{tail}")

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_pipes(proc)
        return proc.returncode

    def _close_pipes(self, proc: subprocess.Popen[str]) -> None:
        # The pumps end at EOF once the process is gone; then the pipes can be closed.
        for pump in self._pumps:
            pump.join(timeout=5.0)
        self._pumps = []
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    @property
    def stderr_tail(self) -> str:
        """The last lines the simulator wrote to stderr (its log)."""
        return "".join(self._stderr_tail)

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- HTTP -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> HttpResult:
        """One Integration API call, authenticated with `api_key` (JSON body if given)."""
        all_headers = {"Authorization": f"ApiKey-v1 {self.api_key}", **(headers or {})}
        return self._call(method, path, body, all_headers, timeout_s)

    def admin(self, method: str, path: str, body: Any = None) -> HttpResult:
        """One ``/_sim/*`` call."""
        return self._call(method, path, body, {}, None)

    def _call(
        self,
        method: str,
        path: str,
        body: Any,
        headers: Mapping[str, str],
        timeout_s: float | None,
    ) -> HttpResult:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
            self.base_url + path, data=data, method=method, headers=dict(headers)
        )
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=timeout_s or self._timeout) as resp:
                return HttpResult(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return HttpResult(err.code, dict(err.headers.items()), err.read())

    def _admin_json(self, method: str, path: str, body: Any = None) -> Any:
        result = self.admin(method, path, body)
        if result.status != 200:
            raise RuntimeError(f"{method} {path} -> {result.status}: {result.body[:500]!r}")
        return result.json()

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``."""
        out: dict[str, Any] = self._admin_json("GET", "/_sim/stats")
        return out

    def journal(self, *, session: str | None = None, profile: str | None = None) -> Any:
        """``GET /_sim/journal``: entries of one session or profile, or the full dump."""
        query = ""
        if session is not None:
            query = "?" + urllib.parse.urlencode({"session": session})
        elif profile is not None:
            query = "?" + urllib.parse.urlencode({"profile": profile})
        doc = self._admin_json("GET", "/_sim/journal" + query)
        return doc["entries"] if query else doc

    def reset(self) -> None:
        """``POST /_sim/reset``: state, counters and faults back to the start-up values."""
        self._admin_json("POST", "/_sim/reset")

    def faults(self) -> dict[str, Any]:
        """``GET /_sim/faults``."""
        out: dict[str, Any] = self._admin_json("GET", "/_sim/faults")
        return out

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """``PATCH /_sim/faults``: change only the named settings."""
        out: dict[str, Any] = self._admin_json("PATCH", "/_sim/faults", changes)
        return out

    def replace_faults(self, **config: Any) -> dict[str, Any]:
        """``PUT /_sim/faults``: defaults plus the named settings."""
        out: dict[str, Any] = self._admin_json("PUT", "/_sim/faults", config)
        return out

    def session(self, session_id: str) -> HttpResult:
        """``GET /v2/customer_sessions/{id}`` (the id is percent-encoded like the SDK does)."""
        return self.request(
            "GET", "/v2/customer_sessions/" + urllib.parse.quote(session_id, safe="")
        )


def _drain(
    stream: IO[str], sink: Callable[[str], object], on_end: Callable[[], object] | None = None
) -> threading.Thread:
    """Copy `stream` line by line into `sink` on a daemon thread, so the pipe never fills."""

    def pump() -> None:
        for line in stream:
            sink(line)
        if on_end is not None:
            on_end()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread
