"""Helpers of the observability tests: a real Prometheus process, PromQL plumbing, docs parsing."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess
from bridge.tools.ports import free_port
from tests.support.ci import IN_CI

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
CHART_ALERTS = ROOT / "deploy" / "helm" / "talon-bridge" / "files" / "alerts.yaml"
GRAFANA = ROOT / "deploy" / "grafana"
CHART_DASHBOARDS = ROOT / "deploy" / "helm" / "talon-bridge" / "dashboards"
OPERATIONS = ROOT / "docs" / "operations.md"
INSTALL_SCRIPT = ROOT / "scripts" / "install-prometheus.sh"


# The observed run: its API key, the attribute Talon.One rejects, and the scrape labels a
# ServiceMonitor would add.
API_KEY = "obs-api-key-c0ffee-5e1f"
POISON_ATTRIBUTE = "x-poison"
LABELS = {"namespace": "observability", "pod": "talon-bridge-0"}

# What Grafana would put in place of each dashboard variable: "All" is the regex `.*`.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "namespace": ".*",
    "pod": ".*",
    "application": ".*",
    "topic": ".*",
    "operation": ".*",
}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
# A comparison against a number literal, e.g. `> 300` or `== 0` (not a label matcher: those
# are followed by a quote).
_THRESHOLD = re.compile(r"(==|!=|>=|<=|>|<)(\s*)(?=-?[0-9.])")


def deadline_loop(timeout: float, what: str, step: float = 0.25) -> Iterator[None]:
    """Yield until the caller breaks out; raise TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        yield
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    for _ in deadline_loop(timeout, what):
        if predicate():
            return


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana variables the way a dashboard with "All" selected would."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GRAFANA_VARIABLES:
            raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")
        return GRAFANA_VARIABLES[name]

    return _VARIABLE.sub(sub, expr)


def without_thresholds(expr: str) -> str:
    """Turn `x > 300` into `x > bool 300`: every series is kept, compared to 0/1 instead."""
    return _THRESHOLD.sub(r"\1 bool\2", expr)


def dashboard_targets(board: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every query of a dashboard, rows included."""
    for panel in board.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner.get("title", "?"), target["expr"]


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(GRAFANA.glob("*.json"))}


def metric_table(markdown: str) -> dict[str, tuple[str, str]]:
    """{family: (type, labels)} from the metrics table of docs/operations.md."""
    out: dict[str, tuple[str, str]] = {}
    section = markdown.split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and (m := re.fullmatch(r"`(bridge_\w+)`", cells[0])):
            out[m.group(1)] = (cells[1], cells[2])
    return out


def heading_anchors(markdown: str) -> set[str]:
    """GitHub-style anchors of every heading."""
    anchors = set()
    for line in markdown.splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            text = re.sub(r"[`*_]", "", m.group(1)).strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text)))
    return anchors


def exposed_families(text: str) -> dict[str, str]:
    """{family: type} from `# TYPE` lines of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            out[name] = kind
    return out


def fetch(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - 127.0.0.1 only
        return str(resp.read().decode())


class PrometheusError(RuntimeError):
    """Prometheus answered a query with an error."""


class PrometheusProcess:
    """A throw-away Prometheus: temp config and data folder, 1s scrapes, our alert rules."""

    def __init__(
        self,
        targets: list[str],
        *,
        labels: Mapping[str, str],
        rule_files: list[Path],
        job: str = "talon-bridge",
        binary: str = "prometheus",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.job = job
        self._dir = Path(tempfile.mkdtemp(prefix="talon-bridge-prometheus-"))
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {
                    "job_name": job,
                    "static_configs": [{"targets": targets, "labels": dict(labels)}],
                }
            ],
        }
        # JSON is YAML: no YAML writer needed.
        (self._dir / "prometheus.yml").write_text(json.dumps(config, indent=2))
        self.log_path = self._dir / "prometheus.log"
        self._binary = binary
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> PrometheusProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self._binary,
                    f"--config.file={self._dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self._dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        for _ in deadline_loop(timeout, "Prometheus to become ready"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                fetch(f"{self.url}/-/ready", timeout=1)
                return self
            except (urllib.error.URLError, OSError):
                continue
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PrometheusProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            body = json.loads(fetch(url, timeout=10))
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (a scalar becomes one sample without labels)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of an aggregating query, or None while it has no result."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def rules(self) -> list[dict[str, Any]]:
        return [r for g in self.api("rules")["groups"] for r in g["rules"]]


@dataclass
class ObservedRun:
    """What one observed run left behind, for the tests to inspect."""

    worker: WorkerProcess
    simulator: SimulatorProcess
    prometheus: PrometheusProcess | None
    input_topic: str
    commands: int
    poison_event_ids: list[str] = field(default_factory=list)

    def require_prometheus(self) -> PrometheusProcess:
        if self.prometheus is None:
            reason = "Prometheus is not installed and could not be installed"
            if IN_CI:
                pytest.fail(reason, pytrace=False)
            pytest.skip(reason)
        return self.prometheus
