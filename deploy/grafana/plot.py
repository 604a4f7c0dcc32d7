"""Draw the overview dashboard's key panels from a Prometheus into a PNG (matplotlib).

    # plot what a running Prometheus holds for the last 10 minutes
    python deploy/grafana/plot.py --prometheus http://127.0.0.1:9090 --minutes 10

    # or stage the whole picture: broker, simulator, worker and Prometheus, then plot
    python deploy/grafana/plot.py --scenario --out docs/observability-overview.png

The queries are the dashboard's own (read from talon-bridge-overview.json), with Grafana's
variables replaced as "All" would. `--scenario` needs `prometheus` on PATH
(scripts/install-prometheus.sh) and a Kafka broker: `KAFKA_BOOTSTRAP_SERVERS`, else a local one
started from the cached Maven jars. It runs about four minutes of load through healthy
periods, a burst of 429/500 answers, poison commands, a Talon.One outage and a rejected API key.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OVERVIEW = ROOT / "deploy" / "grafana" / "talon-bridge-overview.json"

# Overview panels to draw, in reading order (three per row).
PANELS = [
    "Consumed by topic",
    "Finished by outcome",
    "API errors by class",
    "Retries by error class",
    "Dead letters by reason",
    "Talon.One API latency",
    "End-to-end latency",
    "Consumer lag (records)",
    "Oldest unprocessed record age",
    "In-flight API calls",
    "Buffered commands",
    "Readiness",
]
UNITS = {"ops": "/s", "reqps": "req/s", "s": "s", "short": "", "none": ""}
PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff"]
NAMED = {
    "green": "#73bf69",
    "red": "#f2495c",
    "orange": "#ff9830",
    "yellow": "#fade2a",
    "purple": "#b877d9",
    "dark-red": "#c4162a",
    "blue": "#5794f2",
    "dark-purple": "#8f3bb8",
}


def _get(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - operator-given URL
        return json.loads(resp.read())


def _promql(expr: str, rate_interval: str) -> str:
    values = {"__rate_interval": rate_interval, "namespace": ".*", "pod": ".*", "topic": ".*"}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def _legend(fmt: str, labels: dict[str, str]) -> str:
    if fmt == "__auto":
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def _panels() -> dict[str, dict[str, Any]]:
    board = json.loads(OVERVIEW.read_text())
    return {p["title"]: p for p in board["panels"] if p["type"] != "row"}


Phase = tuple[float, float, str]


def plot(
    prometheus: str,
    start: float,
    end: float,
    out: Path,
    *,
    step: float = 2.0,
    phases: list[Phase] | None = None,
) -> None:
    """Query every panel of PANELS over [start, end] and draw them in a grid.

    `phases` are (start, end, label) spans in Unix time, shaded like Grafana annotations.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    panels = _panels()
    cols, rows = 3, (len(PANELS) + 2) // 3
    plt.style.use("dark_background")
    fig, axes = plt.subplots(rows, cols, figsize=(18, 3.6 * rows), dpi=100)
    fig.patch.set_facecolor("#111217")
    for ax, title in zip(axes.flat, PANELS, strict=False):
        panel = panels[title]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        overrides = {
            o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
            for o in panel.get("fieldConfig", {}).get("overrides", [])
        }
        ax.set_facecolor("#181b1f")
        n = 0
        for target in panel["targets"]:
            query = {
                "query": _promql(target["expr"], "10s"),
                "start": str(start),
                "end": str(end),
                "step": str(step),
            }
            data = _get(f"{prometheus}/api/v1/query_range?{urllib.parse.urlencode(query)}")
            for series in data["data"]["result"]:
                label = _legend(target.get("legendFormat", "__auto"), series["metric"])
                xs = [mdates.date2num(_utc(float(t))) for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                color = NAMED.get(overrides.get(label, ""), PALETTE[n % len(PALETTE)])
                ax.plot(xs, ys, label=label, color=color, linewidth=1.4)
                n += 1
        top_row = ax in axes[0]
        for p_start, p_end, p_label in phases or []:
            x0, x1 = mdates.date2num(_utc(p_start)), mdates.date2num(_utc(p_end))
            ax.axvspan(x0, x1, color="#8ab8ff", alpha=0.08, linewidth=0)
            if top_row:
                ax.text(
                    (x0 + x1) / 2,
                    1.01,
                    p_label,
                    transform=ax.get_xaxis_transform(),
                    fontsize=7,
                    color="#8ab8ff",
                    ha="center",
                    va="bottom",
                )
        ax.set_title(title, loc="left", fontsize=11, color="#d8d9da", pad=14 if top_row else 6)
        ax.set_xlim(mdates.date2num(_utc(start)), mdates.date2num(_utc(end)))
        ax.set_ylabel(UNITS.get(unit, unit), color="#9fa7b3", fontsize=9)
        ax.set_ylim(bottom=0)
        ax.grid(color="#2c3235", linewidth=0.6)
        ax.tick_params(colors="#9fa7b3", labelsize=8)
        ax.xaxis.set_major_locator(mdates.MinuteLocator())
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        if n:
            ax.legend(fontsize=7, loc="upper right", framealpha=0.4, ncol=2)
    for ax in list(axes.flat)[len(PANELS) :]:
        ax.axis("off")
    fig.suptitle(
        "talon-bridge / Overview — from Prometheus (1 worker, Talon.One simulator with faults)",
        x=0.01,
        ha="left",
        fontsize=13,
        color="#d8d9da",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=fig.get_facecolor())
    plt.close(fig)


def _utc(ts: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)


# --- the staged scenario ------------------------------------------------------------------------


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _start_prometheus(stack: ExitStack, target: str) -> str:
    from bridge.tools.localkafka import free_port

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tb-prometheus-")))
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "deploy" / "prometheus" / "alerts.yaml")],
        "scrape_configs": [
            {
                "job_name": "talon-bridge",
                "static_configs": [
                    {"targets": [target], "labels": {"namespace": "demo", "pod": "talon-bridge-0"}}
                ],
            }
        ],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("prometheus is not on PATH; run scripts/install-prometheus.sh")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
    )
    stack.callback(proc.wait, 30)
    stack.callback(proc.terminate)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1):  # noqa: S310 - local
                return True
        except OSError:
            return False

    _wait(ready, 30, "Prometheus")
    return url


def scenario(out: Path) -> None:
    """Run the staged load and faults, then plot them."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from bridge.avro.codec import Codec
    from bridge.commands import Command, UpdateCustomerSession
    from bridge.simulator.process import SimulatorProcess
    from bridge.tools.harness import WorkerProcess
    from bridge.tools.localkafka import LocalKafka
    from bridge.tools.produce import LoadSpec, generate, produce_commands

    run = f"plot{int(time.time())}"
    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            bootstrap = stack.enter_context(LocalKafka()).bootstrap
        conf: dict[str, str | int | float | bool] = {"bootstrap.servers": bootstrap}
        topics = {r: f"talon.{r}.{run}" for r in ("commands", "effects", "dlq", "parked")}
        admin = AdminClient(conf)
        for future in admin.create_topics(
            [
                NewTopic(name, 1 if role == "parked" else 6, replication_factor=1)
                for role, name in topics.items()
            ]
        ).values():
            future.result(30)
        sim = stack.enter_context(
            SimulatorProcess(args=["--latency-ms", "20", "--latency-jitter-ms", "10"])
        )
        sim.set_faults(rate_429=0.01, reject_attributes=["x-poison"])
        worker = WorkerProcess(
            {
                "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "BRIDGE_INPUT_TOPICS": topics["commands"],
                "BRIDGE_OUTPUT_TOPIC": topics["effects"],
                "BRIDGE_DLQ_TOPIC": topics["dlq"],
                "BRIDGE_PARKING_TOPIC": topics["parked"],
                "BRIDGE_GROUP_ID": run,
                "BRIDGE_TALON_BASE_URL": sim.base_url,
                "BRIDGE_TALON_ALLOW_INSECURE_HTTP": "true",
                "BRIDGE_TALON_API_KEY": sim.api_key,
                "BRIDGE_KAFKA_CONFIG": json.dumps({"statistics.interval.ms": 1000}),
            }
        )
        prometheus = _start_prometheus(stack, f"127.0.0.1:{worker.metrics_port}")
        stack.enter_context(worker)
        started = time.time()

        stop = threading.Event()

        def commands() -> Iterator[Command]:
            for cmd in generate(LoadSpec(sessions=1_000_000, run_id=run)):
                if stop.is_set():
                    return
                yield cmd

        encode = Codec().encode_command
        producer = threading.Thread(
            target=produce_commands,
            args=(conf, topics["commands"], commands()),
            kwargs={"encode": encode, "rate": 400.0},
            daemon=True,
        )
        producer.start()

        def at(second: float) -> None:
            time.sleep(max(0.0, started + second - time.time()))

        poison = [
            Command(
                f"{run}:poison:{i}",
                f"{run}-poison-{i}",
                0,
                UpdateCustomerSession(profile_id=f"{run}-pp-{i}", attributes={"x-poison": 1}),
            )
            for i in range(21)
        ]
        at(20)
        produce_commands(conf, topics["commands"], iter(poison[:1]), encode=encode)
        at(40)
        sim.set_faults(rate_429=0.15, rate_500=0.05)
        at(70)
        sim.set_faults(rate_429=0.01, rate_500=0.0)
        at(80)
        produce_commands(conf, topics["commands"], iter(poison[1:]), encode=encode, rate=4.0)
        at(95)
        sim.set_faults(outage=True)
        at(125)
        sim.set_faults(outage=False)
        at(165)
        sim.set_faults(auth_failure=True)
        at(180)
        sim.set_faults(auth_failure=False)
        at(230)
        stop.set()
        producer.join(60)
        _wait(
            lambda: worker.metric_sum("bridge_buffered_commands") == 0, 120, "the backlog to drain"
        )
        time.sleep(10)  # a flat tail after the load, so the drain is visible
        phases = [
            (started + a, started + b, label)
            for a, b, label in (
                (40, 70, "429/500 burst"),
                (80, 85, "poison"),
                (95, 125, "outage"),
                (165, 180, "key rejected"),
            )
        ]
        plot(prometheus, started - 5, time.time(), out, phases=phases)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", help="Prometheus base URL to read from")
    parser.add_argument("--minutes", type=float, default=10, help="how far back to plot")
    parser.add_argument("--scenario", action="store_true", help="stage the data first")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "observability-overview.png")
    args = parser.parse_args()
    if args.scenario:
        scenario(args.out)
    elif args.prometheus:
        end = time.time()
        plot(args.prometheus.rstrip("/"), end - args.minutes * 60, end, args.out)
    else:
        parser.error("give --prometheus URL or --scenario")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
