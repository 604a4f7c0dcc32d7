"""A real Confluent-compatible Schema Registry run locally: Apicurio Registry.

Used by the test suite, `make registry-up` and `talon-bridge demo --encoding confluent` when no
registry is given. Apicurio Registry (Apache-2.0) serves the Confluent REST API under
``/apis/ccompat/v7``: subjects, versions, ids, compatibility levels and checks, with Avro
compatibility computed by the registry itself.

How it is provisioned, like the local Kafka broker, from Maven Central with the local JDK:
Maven Central carries the registry's application jar but no runnable build of it, so a
small Maven project in the cache depends on ``io.apicurio:apicurio-registry-app`` and the
Quarkus Maven plugin builds the runnable jar from it, once (a few minutes; then reused).
2.4.2.Final is the newest release whose modules all resolve from Maven Central (later ones
miss ``apicurio-registry-schema-util-provider``). Schemas are kept in memory (H2), since its
Kafka storage module is not on Maven Central: every start is an empty registry, and no broker
is needed.

`python -m bridge.tools.localregistry up|down|status|build` (and `make registry-up` /
`make registry-down`) manage a detached registry on `REGISTRY_PORT` (default 8081); `up` and
`down` are idempotent. Its output goes to a log file in the cache.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import httpx

from bridge.tools.daemons import read_pid, stop_child, stop_pid
from bridge.tools.ports import free_port

__all__ = ["APICURIO_VERSION", "LocalRegistry", "build_registry"]

APICURIO_VERSION = "2.4.2.Final"
# The Quarkus release the registry was built with: its extensions' build steps must match it.
QUARKUS_VERSION = "2.16.4.Final"
CACHE_ROOT = Path(
    os.environ.get("TALON_BRIDGE_CACHE", Path.home() / ".cache" / "talon-bridge")
).expanduser()
API_PATH = "/apis/ccompat/v7"
READY_TIMEOUT_S = 120.0

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.talon-bridge</groupId><artifactId>registry-runtime</artifactId><version>1</version>
  <properties>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencyManagement>
    <dependencies>
      <dependency><groupId>io.quarkus</groupId><artifactId>quarkus-bom</artifactId>
        <version>{quarkus}</version><type>pom</type><scope>import</scope></dependency>
      <!-- The build step of the version the registry names is not on Maven Central. -->
      <dependency><groupId>io.apicurio</groupId>
        <artifactId>apicurio-common-app-components-config-index</artifactId>
        <version>0.1.10.Final</version></dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency><groupId>io.apicurio</groupId><artifactId>apicurio-registry-app</artifactId>
      <version>{apicurio}</version>
      <exclusions>
        <!-- JSON Schema validation only (not on Maven Central); Avro does not use it. -->
        <exclusion><groupId>com.github.everit-org.json-schema</groupId>
          <artifactId>org.everit.json.schema</artifactId></exclusion>
      </exclusions>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin><groupId>io.quarkus</groupId><artifactId>quarkus-maven-plugin</artifactId>
        <version>{quarkus}</version>
        <executions><execution><goals><goal>build</goal></goals></execution></executions>
      </plugin>
    </plugins>
  </build>
</project>
"""

# The registry's classes come from a dependency, not from this project: index them.
_APPLICATION_PROPERTIES = """quarkus.index-dependency.registry-app.group-id=io.apicurio
quarkus.index-dependency.registry-app.artifact-id=apicurio-registry-app
"""

# The registry's POMs name other Maven repositories; only Maven Central is needed (and
# reachable everywhere this runs). Global settings, so a developer's own still apply.
_SETTINGS = """<settings><mirrors><mirror><id>central-only</id><mirrorOf>*,!central</mirrorOf>
  <url>https://repo.maven.apache.org/maven2</url></mirror></mirrors></settings>
"""


def _log(msg: str) -> None:
    print(f"[localregistry] {msg}", file=sys.stderr, flush=True)


def _build_dir() -> Path:
    recipe = (_POM + _APPLICATION_PROPERTIES + _SETTINGS).encode()
    return (
        CACHE_ROOT
        / "registry"
        / f"apicurio-{APICURIO_VERSION}-{hashlib.sha256(recipe).hexdigest()[:8]}"
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Test workers start at the same moment: one builds, the others wait for its result.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_registry() -> Path:
    """Build the runnable registry in the cache, once; returns its jar.

    Raises:
        RuntimeError: No JDK or Maven, or the build failed (its log is named).
    """
    home = _build_dir()
    jar = home / "target" / "registry-runtime-1-runner.jar"
    marker = home / ".complete"
    if marker.exists():
        return jar
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise RuntimeError("a JDK (java) and Maven (mvn) are needed to run a local Schema Registry")
    with _locked(home.with_suffix(".lock")):
        if marker.exists():
            return jar
        resources = home / "src" / "main" / "resources"
        resources.mkdir(parents=True, exist_ok=True)
        (home / "pom.xml").write_text(
            _POM.format(apicurio=APICURIO_VERSION, quarkus=QUARKUS_VERSION)
        )
        (resources / "application.properties").write_text(_APPLICATION_PROPERTIES)
        (home / "settings.xml").write_text(_SETTINGS)
        log = home / "build.log"
        _log(f"building Apicurio Registry {APICURIO_VERSION} with Maven in {home} (once)")
        started = time.monotonic()
        with log.open("wb") as out:
            done = subprocess.run(
                ["mvn", "-B", "-Dstyle.color=never", "-gs", "settings.xml", "package"],
                cwd=home,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode != 0 or not jar.exists():
            raise RuntimeError(f"building the Schema Registry failed; see {log}")
        marker.write_text(f"{time.monotonic() - started:.1f}s\n")
    return jar


def _wait_ready(url: str, proc: subprocess.Popen[bytes] | None, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"the Schema Registry exited with status {proc.returncode} while starting; "
                f"see {log}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/subjects", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the Schema Registry at {url} not ready after {timeout:.0f}s; see {log}"
            )
        time.sleep(0.2)


class LocalRegistry:
    """One registry process. Use as a context manager, or `start()` / `stop()`."""

    def __init__(
        self, port: int | None = None, *, run_dir: Path | None = None, heap: str = "256m"
    ) -> None:
        self.port = port or free_port()
        self.heap = heap
        self._own_dir = run_dir is None
        self.run_dir = run_dir or CACHE_ROOT / "run" / f"registry-{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_in: float | None = None

    @property
    def url(self) -> str:
        """The Confluent-compatible API's base URL, for `BRIDGE_SCHEMA_REGISTRY_URL`."""
        return f"http://127.0.0.1:{self.port}{API_PATH}"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "registry.log"

    def _java(self, jar: Path) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            # A small, short-lived test service: C1 alone and the serial collector start it
            # in seconds on two cores, where the defaults take several times longer.
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self.port}",
            "-jar",
            str(jar),
        ]

    def start(self, timeout: float = READY_TIMEOUT_S) -> str:
        """Build (once) and start the registry; returns its URL when it answers.

        Raises:
            RuntimeError: It could not be built, or it exited while starting.
            TimeoutError: It did not answer within `timeout` seconds.
        """
        jar = build_registry()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen(
                self._java(jar),
                cwd=self.run_dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_ready(self.url, self.proc, self.log_file, timeout)
        except Exception:
            self.stop()
            raise
        self.started_in = time.monotonic() - started
        return self.url

    def stop(self, timeout: float = 30.0) -> None:
        stop_child(self.proc, timeout)
        self.proc = None

    def close(self) -> None:
        """Stop it and remove its folder (log included) unless the caller named the folder."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> LocalRegistry:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- detached registry for `make registry-up` / `make registry-down` -------------------------


def _pid_file(port: int) -> Path:
    return CACHE_ROOT / "run" / f"registry-{port}" / "registry.pid"


def _running_pid(port: int) -> int | None:
    return read_pid(_pid_file(port))


def up(port: int) -> int:
    registry = LocalRegistry(port, run_dir=_pid_file(port).parent)
    if _running_pid(port) is None:
        registry.start()
        if registry.proc is not None:
            _pid_file(port).write_text(str(registry.proc.pid))
        _log(
            f"Apicurio Registry {APICURIO_VERSION} up in {registry.started_in:.1f}s; "
            f"logs in {registry.log_file}"
        )
    else:
        _wait_ready(registry.url, None, registry.log_file, READY_TIMEOUT_S)
    print(registry.url)
    return 0


def down(port: int) -> int:
    pid = _running_pid(port)
    if pid is not None:
        stop_pid(pid)
        _log(f"Schema Registry on 127.0.0.1:{port} stopped")
    _pid_file(port).unlink(missing_ok=True)  # the log stays, for a look afterwards
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.tools.localregistry")
    parser.add_argument("action", choices=["up", "down", "status", "build"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("REGISTRY_PORT", "8081")))
    args = parser.parse_args(argv)
    try:
        if args.action == "build":
            print(build_registry())
            return 0
        if args.action == "up":
            return up(args.port)
        if args.action == "down":
            return down(args.port)
    except (RuntimeError, TimeoutError) as exc:
        _log(str(exc))
        return 1
    running = _running_pid(args.port) is not None
    print(f"{LocalRegistry(args.port).url} {'running' if running else 'stopped'}")
    return 0 if running else 1


if __name__ == "__main__":
    raise SystemExit(main())
