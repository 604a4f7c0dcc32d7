"""A real single-node Apache Kafka broker (KRaft) run from Maven Central jars.

Used by the test suite and `make demo` when no broker is given. Maven resolves
`org.apache.kafka:kafka_2.13` into a cache outside the checkout (so clean clones reuse it),
the storage is formatted, the broker is started on 127.0.0.1 with the local JDK, and
readiness is awaited with a metadata request.

Extra listeners (`bridge.tools.kafka_listeners`) sit next to the plaintext one that tests and
readiness use.

`python -m bridge.tools.localkafka up|down|status|fetch` (and `make kafka-up` / `make kafka-down`)
manage a detached broker on `KAFKA_PORT` (default 9092); `up` and `down` are idempotent.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from bridge.tools.daemons import read_pid, stop_child, stop_pid
from bridge.tools.kafka_listeners import Listener
from bridge.tools.ports import free_port

__all__ = [
    "KAFKA_VERSION",
    "LocalKafka",
    "fetch_jars",
]

KAFKA_VERSION = os.environ.get("TALON_BRIDGE_KAFKA_VERSION", "4.1.1")
LOG4J_VERSION = "2.24.3"
CACHE_ROOT = Path(
    os.environ.get("TALON_BRIDGE_CACHE", Path.home() / ".cache" / "talon-bridge")
).expanduser()
READY_TIMEOUT_S = 90.0

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.talon-bridge</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
"""


def _log(msg: str) -> None:
    print(f"[localkafka] {msg}", file=sys.stderr, flush=True)


def fetch_jars(version: str = KAFKA_VERSION) -> Path:
    """Resolve the broker's jars with Maven into the cache; returns the folder of jars."""
    home = CACHE_ROOT / "kafka" / version
    libs = home / "libs"
    marker = home / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise RuntimeError("a JDK (java) and Maven (mvn) are needed to run a local Kafka broker")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
    _log(f"resolving org.apache.kafka:kafka_2.13:{version} with Maven into {libs}")
    started = time.monotonic()
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-Dstyle.color=never",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        cwd=home,
        check=True,
    )
    marker.write_text(f"{time.monotonic() - started:.1f}s\n")
    return libs


def _wait_ready(bootstrap: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    from bridge.kafka.inspection import quiet_admin

    admin = quiet_admin(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"Kafka broker exited with status {proc.returncode} while starting")
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except Exception:  # noqa: S110 - not up yet; the deadline bounds the wait
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka broker at {bootstrap} not ready after {timeout:.0f}s")
        time.sleep(0.2)


class LocalKafka:
    """One broker process. Use as a context manager, or `start()` / `stop()`."""

    def __init__(
        self,
        port: int | None = None,
        *,
        data_dir: Path | None = None,
        version: str = KAFKA_VERSION,
        heap: str = "512m",
        quick_jit: bool = True,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.port = port or free_port()
        self.controller_port = free_port()
        self.listeners = list(listeners)
        self.listener_ports = {listener.name: free_port() for listener in self.listeners}
        self.version = version
        self.heap = heap
        # C1 only starts and settles fast (tests); the full JIT costs less CPU per request
        # once warm, which matters when a long benchmark shares the cores with the broker.
        self.quick_jit = quick_jit
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="talon-bridge-kafka-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def bootstrap_of(self, listener: str) -> str:
        """Address of an extra listener, by name."""
        return f"127.0.0.1:{self.listener_ports[listener]}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def _write_config(self) -> Path:
        listeners = ",".join(
            [f"PLAINTEXT://127.0.0.1:{self.port}"]
            + [f"{name}://127.0.0.1:{port}" for name, port in self.listener_ports.items()]
        )
        protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        protocols += "".join(f",{x.name}:{x.protocol}" for x in self.listeners)
        extra: dict[str, str] = {}
        for listener in self.listeners:
            extra.update(listener.properties())
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"{listeners},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": listeners,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": protocols,
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "6",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "24",
            **extra,
        }
        cfg = self.data_dir / "server.properties"
        cfg.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j2.properties").write_text(
            _LOG4J2.format(log=self.log_file, level="INFO")
        )
        return cfg

    def _java(self, libs: Path, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            # Kafka's own launch options: G1's default 200 ms pause goal lets young
            # collections stop the broker (and both cores) for 20-60 ms at a time.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            *(["-XX:TieredStopAtLevel=1"] if self.quick_jit else []),
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            *(a for listener in self.listeners for a in listener.jvm_args()),
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def start(self, timeout: float = READY_TIMEOUT_S) -> str:
        libs = fetch_jars(self.version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            subprocess.run(
                self._java(
                    libs,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    str(uuid.uuid4()),
                    "-c",
                    str(cfg),
                    *(a for listener in self.listeners for a in listener.format_args()),
                ),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        out = (self.data_dir / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            self._java(libs, "kafka.Kafka", str(cfg)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        try:
            _wait_ready(self.bootstrap, self.proc, timeout)
        except Exception:
            self.stop()
            raise
        return self.bootstrap

    def stop(self, timeout: float = 30.0) -> None:
        stop_child(self.proc, timeout)
        self.proc = None

    def kill(self) -> None:
        """Stop the broker abruptly (SIGKILL), keeping its data for a restart."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- detached broker for `make kafka-up` / `make kafka-down` ---------------------------------


def _run_dir(port: int) -> Path:
    return CACHE_ROOT / "run" / f"kafka-{port}"


def _read_pid(port: int) -> int | None:
    return read_pid(_run_dir(port) / "broker.pid")


def up(port: int, *, full_jit: bool = False) -> int:
    bootstrap = f"127.0.0.1:{port}"
    if _read_pid(port) is not None:
        _wait_ready(bootstrap, None, READY_TIMEOUT_S)
        print(bootstrap)
        return 0
    broker = LocalKafka(port, data_dir=_run_dir(port), quick_jit=not full_jit)
    broker.start()
    if broker.proc is not None:
        (_run_dir(port) / "broker.pid").write_text(str(broker.proc.pid))
    _log(f"Kafka {broker.version} up; logs in {broker.log_file}")
    print(bootstrap)
    return 0


def down(port: int) -> int:
    pid = _read_pid(port)
    if pid is not None:
        stop_pid(pid)
        _log(f"Kafka on 127.0.0.1:{port} stopped")
    shutil.rmtree(_run_dir(port), ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.tools.localkafka")
    parser.add_argument("action", choices=["up", "down", "status", "fetch"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_PORT", "9092")))
    parser.add_argument(
        "--full-jit",
        action="store_true",
        help="up: compile hot code fully (slower start, less CPU once warm; for benchmarks)",
    )
    args = parser.parse_args(argv)
    if args.action == "fetch":
        print(fetch_jars())
        return 0
    if args.action == "up":
        return up(args.port, full_jit=args.full_jit)
    if args.action == "down":
        return down(args.port)
    running = _read_pid(args.port) is not None
    print(f"127.0.0.1:{args.port} {'running' if running else 'stopped'}")
    return 0 if running else 1


if __name__ == "__main__":
    raise SystemExit(main())
