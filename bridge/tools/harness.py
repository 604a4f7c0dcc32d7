"""Running and observing a whole bridge from outside: for the demo, benchmarks and tests.

`WorkerProcess` runs `talon-bridge run` as a real subprocess (so SIGTERM and kill -9 are real);
`read_topic` and `committed_offsets` look at what it did through Kafka alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from bridge.kafka.inspection import (
    committed_offsets,
    committed_offsets_if_answered,
    end_offsets,
    read_topic,
)
from bridge.tools.ports import free_port

__all__ = [
    "WorkerProcess",
    "committed_offsets",
    "create_bridge_topics",
    "end_offsets",
    "read_topic",
    "wait_committed",
    "wait_for",
    "worker_env",
]


def create_bridge_topics(
    conf: Mapping[str, Any],
    prefix: str,
    partitions: int,
    input_config: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Input, output and dead-letter topics with `partitions`, plus a compacted parking topic.

    `input_config` holds topic settings for the input topic. Returns the names by role:
    ``in``, ``out``, ``dlq``, ``park``.
    """
    from bridge.kafka.topics import TopicSpec, ensure_topics

    names = {role: f"{prefix}.{role}" for role in ("in", "out", "dlq", "park")}
    ensure_topics(
        dict(conf),
        [TopicSpec(names["in"], partitions, 1, dict(input_config or {}))]
        + [TopicSpec(names[role], partitions, 1) for role in ("out", "dlq")]
        + [TopicSpec(names["park"], 1, 1, {"cleanup.policy": "compact"})],
    )
    return names


def worker_env(
    bootstrap: str,
    topics: Mapping[str, str],
    *,
    group: str,
    talon_url: str,
    api_key: str,
    **extra: str,
) -> dict[str, str]:
    """The BRIDGE_* environment of a worker on `topics` (roles as in create_bridge_topics)."""
    return {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "BRIDGE_INPUT_TOPICS": topics["in"],
        "BRIDGE_OUTPUT_TOPIC": topics["out"],
        "BRIDGE_DLQ_TOPIC": topics["dlq"],
        "BRIDGE_PARKING_TOPIC": topics["park"],
        "BRIDGE_GROUP_ID": group,
        "BRIDGE_TALON_BASE_URL": talon_url,
        "BRIDGE_TALON_API_KEY": api_key,
        # The local simulator speaks plain HTTP; a real deployment URL never does.
        "BRIDGE_TALON_ALLOW_INSECURE_HTTP": str(talon_url.startswith("http://")).lower(),
        **extra,
    }


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    """Poll `predicate` until true; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


class WorkerProcess:
    """`python -m bridge run` with the given BRIDGE_* environment; `python` is this
    interpreter unless another is given (a benchmark's baseline revision)."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        log_dir: Path | None = None,
        python: Path | str | None = None,
    ) -> None:
        self.python = str(python or sys.executable)
        self.metrics_port = int(env.get("BRIDGE_METRICS_PORT") or free_port())
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
            "BRIDGE_LOG_FORMAT": "json",
            **env,
            "BRIDGE_METRICS_PORT": str(self.metrics_port),
        }
        self.log_path = (
            log_dir or Path(tempfile.gettempdir())
        ) / f"talon-bridge-worker-{uuid.uuid4().hex[:8]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_ready: bool = True, timeout: float = 60) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.python, "-m", "bridge", "run"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_ready:
            wait_for(self.ready, timeout, "the worker to become ready")
        return self

    def _get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}; see {self.log_path}")
        return self._get("/readyz")[0] == 200

    def alive(self) -> bool:
        """Whether `/healthz` answers 200."""
        return self._get("/healthz")[0] == 200

    def metrics(self) -> dict[str, float]:
        """The /metrics page as {series: value} (label sets kept in the series name)."""
        status, body = self._get("/metrics")
        out: dict[str, float] = {}
        if status != 200:
            return out
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    continue
        return out

    def metric_sum(self, prefix: str) -> float:
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix))

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        """kill -9: no drain, no commit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                pass


def wait_committed(
    conf: Mapping[str, Any],
    group: str,
    topic: str,
    offsets: dict[int, int],
    timeout: float,
    what: str,
) -> None:
    """Wait until `group` has committed `offsets` on `topic`.

    A broker still loading its group or transaction coordinators can let one offset query
    time out; that counts as not yet, not as a failure.
    """
    wait_for(lambda: committed_offsets_if_answered(conf, group, topic) == offsets, timeout, what)
