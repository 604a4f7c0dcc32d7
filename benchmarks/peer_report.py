"""The peer benchmark's results and how they are reported: the tables and the chart.

`benchmarks.compare` measures; this module only formats. With ``--baseline REV`` one more
system, the bridge at that git revision (named ``talon-bridge@REV``), runs wherever the
working tree's bridge runs, and `baseline_markdown` gives every bridge figure as a ratio
against it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

BRIDGE = "talon-bridge"
PC = "parallel-consumer"
NAIVE = "naive"
SYSTEMS = (BRIDGE, PC, NAIVE)


def baseline_name(rev: str) -> str:
    """The system name of the bridge at git revision `rev`."""
    return f"{BRIDGE}@{rev}"


def systems(results: list[Result]) -> list[str]:
    """The systems in `results`, a baseline right after the working tree's bridge."""
    found = {r.system for r in results}
    extra = sorted(s for s in found if s.startswith(f"{BRIDGE}@"))
    return [s for s in (BRIDGE, *extra, PC, NAIVE) if s in found]


@dataclass
class Result:
    """One system in one cell of the matrix."""

    system: str
    latency_ms: float
    sessions: int
    processes: int = 1
    commands: int = 0
    seconds: float = 0.0
    cpu_s: float | None = None
    rss_mb: float | None = None
    conflicts: int = 0
    conflicts_by_kind: dict[str, int] = field(default_factory=dict)
    non_2xx: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency_rate: float | None = None
    latency_samples: int = 0
    load: float = 0.0
    machine_busy: float | None = None  # share of all cores busy in the window, any process
    thread_cpu: dict[str, float] = field(default_factory=dict)  # CPU s in the window
    rates: list[float] = field(default_factory=list)  # every repeat's commands/s
    cpu_runs: list[float | None] = field(default_factory=list)  # every repeat's CPU s / 1k

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_1k(self) -> float | None:
        return (
            self.cpu_s / self.commands * 1000 if self.cpu_s is not None and self.commands else None
        )


def median_run(runs: list[Result], key: Callable[[Result], float]) -> Result:
    """The run in the middle by `key` (of an even number, the higher of the two middle ones)."""
    return sorted(runs, key=key)[len(runs) // 2]


def middle(values: Iterable[float | None]) -> float | None:
    """The median of `values` as `median_run` picks it (of an even number, the higher of the
    two middle ones); None when none is known."""
    known = sorted(v for v in values if v is not None)
    return known[len(known) // 2] if known else None


def fmt(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def conflicts(r: Result) -> str:
    if not r.conflicts:
        return "0"
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.conflicts_by_kind.items()))
    return f"{r.conflicts} ({kinds})"


def where(r: Result) -> str:
    """Where the CPU went in the window: by thread, and how busy the whole machine was."""
    cores = r.seconds * (os.cpu_count() or 1)
    busy = f"machine {r.machine_busy:.0%} busy" if r.machine_busy is not None else ""
    top = ", ".join(f"{name} {cpu / r.seconds:.2f}" for name, cpu in list(r.thread_cpu.items())[:6])
    return f"{busy} over {r.seconds:.1f}s ({cores:.0f} core-s); cores by thread: {top}"


def markdown(results: list[Result], scale: list[Result]) -> str:
    """The comparison table, the ratios against Parallel Consumer and the scale-out table."""
    lines = [
        "| API latency | sessions | system | commands/s | vs PC | CPU s / 1k cmds | peak RSS MB"
        " | p50 ms | p99 ms | latency at | 409s | non-2xx |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cells = sorted({(r.latency_ms, r.sessions) for r in results})
    for lat, ses in cells:
        row = {r.system: r for r in results if (r.latency_ms, r.sessions) == (lat, ses)}
        pc = row.get(PC)
        for system in systems(results):
            r = row.get(system)
            if r is None:
                continue
            vs = f"{r.rate / pc.rate:.2f}x" if pc and pc.rate else ""
            spread = f" ({min(r.rates):,.0f} to {max(r.rates):,.0f})" if len(r.rates) > 1 else ""
            lines.append(
                f"| {lat:.0f} ms | {ses:,} | {system} | {r.rate:,.0f}{spread} | {vs}"
                f" | {fmt(r.cpu_per_1k, '.2f')} | {fmt(r.rss_mb, '.0f')}"
                f" | {fmt(r.p50_ms, '.0f')} | {fmt(r.p99_ms, '.0f')}"
                f" | {fmt(r.latency_rate, ',.0f')}/s | {conflicts(r)} | {r.non_2xx} |"
            )
    lines += [
        "",
        "| API latency | sessions | bridge/PC throughput | bridge/PC CPU per command"
        " | bridge/PC p99 | naive/PC throughput |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for lat, ses in cells:
        row = {r.system: r for r in results if (r.latency_ms, r.sessions) == (lat, ses)}
        b, pc, nv = row.get(BRIDGE), row.get(PC), row.get(NAIVE)
        if not (b and pc):
            continue

        def ratio(x: float | None, y: float | None) -> str:
            return f"{x / y:.2f}x" if x is not None and y else ""

        lines.append(
            f"| {lat:.0f} ms | {ses:,} | {ratio(b.rate, pc.rate)}"
            f" | {ratio(b.cpu_per_1k, pc.cpu_per_1k)} | {ratio(b.p99_ms, pc.p99_ms)}"
            f" | {ratio(nv.rate if nv else None, pc.rate)} |"
        )
    if scale:
        lines += [
            "",
            "| API latency | sessions | bridge processes | commands/s | vs 1 process"
            " | total CPU s / 1k cmds | summed peak RSS MB | 409s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        ours = [r for r in scale if r.system == BRIDGE]
        for r in sorted(ours, key=lambda r: (r.latency_ms, r.sessions, r.processes)):
            one = next(
                (
                    s
                    for s in ours
                    if (s.latency_ms, s.sessions, s.processes) == (r.latency_ms, r.sessions, 1)
                ),
                None,
            )
            vs = f"{r.rate / one.rate:.2f}x" if one and one.rate else ""
            lines.append(
                f"| {r.latency_ms:.0f} ms | {r.sessions:,} | {r.processes} | {r.rate:,.0f}"
                f" | {vs} | {fmt(r.cpu_per_1k, '.2f')} | {fmt(r.rss_mb, '.0f')}"
                f" | {conflicts(r)} |"
            )
    return "\n".join(lines)


def plot(results: list[Result], scale: list[Result], path: Path) -> None:
    """Throughput per cell for the three systems, and bridge scale-out, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted({(r.latency_ms, r.sessions) for r in results})
    labels = [f"{lat:.0f} ms\n{ses:,} sessions" for lat, ses in cells]
    fig, (ax1, ax3, ax2) = plt.subplots(1, 3, figsize=(19, 5.5))
    shown = systems(results)
    width = 0.8 / len(shown)
    for i, system in enumerate(shown):
        rates = [
            next(
                (r.rate for r in results if (r.latency_ms, r.sessions, r.system) == (*c, system)),
                0.0,
            )
            for c in cells
        ]
        xs = [x + (i - (len(shown) - 1) / 2) * width for x in range(len(cells))]
        bars = ax1.bar(xs, rates, width, label=system)
        ax1.bar_label(bars, labels=[f"{v:,.0f}" for v in rates], fontsize=7)
    ax1.set_xticks(range(len(cells)), labels)
    ax1.set_yscale("log")
    ax1.set_ylabel("commands/s (log scale)")
    ax1.set_title("Throughput on a pre-produced backlog")
    ax1.legend()
    for i, system in enumerate((BRIDGE, PC)):
        found = [
            next(
                (r for r in results if (r.latency_ms, r.sessions, r.system) == (*c, system)),
                None,
            )
            for c in cells
        ]
        xs = [x + (i - 0.5) * 0.4 for x in range(len(cells))]
        p99 = [r.p99_ms or 0.0 if r else 0.0 for r in found]
        p50 = [r.p50_ms or 0.0 if r else 0.0 for r in found]
        bars = ax3.bar(xs, p99, 0.4, label=f"{system} p99", alpha=0.45, color=f"C{i}")
        ax3.bar_label(bars, labels=[f"{v:,.0f}" for v in p99], fontsize=7)
        ax3.bar(xs, p50, 0.4, label=f"{system} p50", color=f"C{i}")
    ax3.set_xticks(range(len(cells)), labels)
    ax3.set_ylabel("ms, output timestamp - input CreateTime")
    ax3.set_title("End-to-end latency at the same rate (half the slower max)")
    ax3.legend(fontsize=7)
    for lat, ses in cells:
        pts = sorted(
            (r.processes, r.rate)
            for r in scale
            if (r.latency_ms, r.sessions, r.system) == (lat, ses, BRIDGE)
        )
        if pts:
            ax2.plot(
                [p for p, _ in pts],
                [v for _, v in pts],
                marker="o",
                label=f"talon-bridge, {lat:.0f} ms, {ses:,} sessions",
            )
        pc = next(
            (r for r in results if (r.latency_ms, r.sessions, r.system) == (lat, ses, PC)), None
        )
        if pc and pts:
            ax2.axhline(pc.rate, linestyle=":", linewidth=1, color=ax2.lines[-1].get_color())
    procs = sorted({r.processes for r in scale})
    if procs:
        ax2.set_xticks(procs)
    ax2.set_xlabel("bridge processes in one consumer group")
    ax2.set_ylabel("commands/s")
    ax2.set_title("Scale-out (dotted: Parallel Consumer, one JVM)")
    ax2.legend(fontsize=7)
    ax2.set_ylim(bottom=0)
    fig.suptitle("talon-bridge vs Parallel Consumer (KEY order) vs naive, 2-core machine")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _ratio(x: float | None, y: float | None) -> str:
    return f"{x / y:.2f}x" if x is not None and y else ""


def baseline_markdown(results: list[Result], scale: list[Result], baseline: str) -> str:
    """Every bridge figure as a ratio against the `baseline` system's, in the same cell."""
    lines = [
        f"| API latency | sessions | bridge processes | commands/s vs {baseline}"
        " | CPU s / 1k cmds vs it | CPU vs it by round | p99 at equal load vs it"
        " | peak RSS vs it |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [*results, *(r for r in scale if r.processes > 1)]
    keys = sorted({(r.latency_ms, r.sessions, r.processes) for r in rows})
    for key in keys:
        found = {r.system: r for r in rows if (r.latency_ms, r.sessions, r.processes) == key}
        b, a = found.get(BRIDGE), found.get(baseline)
        if not (b and a):
            continue
        lines.append(
            f"| {key[0]:.0f} ms | {key[1]:,} | {key[2]} | {_ratio(b.rate, a.rate)}"
            f" | {_ratio(b.cpu_per_1k, a.cpu_per_1k)} | {by_round(b.cpu_runs, a.cpu_runs)}"
            f" | {_ratio(b.p99_ms, a.p99_ms)} | {_ratio(b.rss_mb, a.rss_mb)} |"
        )
    return "\n".join(lines)


def by_round(ours: list[float | None], theirs: list[float | None]) -> str:
    """The median of the per-round ratios, then each round's: the systems alternate within a
    round, so a ratio by round cancels the machine's drift that a ratio of two runs picked
    from different rounds keeps."""
    ratios = [x / y for x, y in zip(ours, theirs, strict=False) if x is not None and y]
    if not ratios:
        return ""
    rounds = ", ".join(f"{r:.2f}" for r in ratios)
    return f"{middle(ratios):.2f}x ({rounds})"
