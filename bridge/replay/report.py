"""What `talon-bridge replay` prints: the plan as a table or JSON lines, and the summary."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from bridge.replay.plan import Plan, Planned

__all__ = ["print_json", "print_table", "record_json", "summary"]

# The command's logs keep the logger name they have always had.
log = logging.getLogger("bridge.replay.cli")


def record_json(p: Planned, action: str) -> dict[str, Any]:
    r = p.record
    return {
        "dlq": r.dlq,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp_ms,
        "session": r.session,
        "eventId": r.event_id,
        "commandType": r.command_type,
        "reason": r.reason,
        "errorClass": r.error_class or r.exception_class,
        "status": r.status,
        "original": r.original,
        "parkedBehind": r.parked_behind,
        "replayCount": r.replay_count,
        "pulledIn": p.pulled_in,
        "target": p.target,
        "action": action,
        "skipReason": p.skip_reason,
    }


def print_json(the_plan: Plan, action: Callable[[Planned], str]) -> None:
    out = sys.stdout
    for p in the_plan.items:
        out.write(orjson.dumps(record_json(p, action(p))).decode() + "\n")
    out.flush()


def _tally(values: Iterable[str | None]) -> str:
    counts = Counter(v or "-" for v in values)
    return ", ".join(f"{k} {n}" for k, n in counts.most_common())


def print_table(the_plan: Plan, dlq: str, group: str) -> None:
    from rich.console import Console
    from rich.table import Table

    sessions: dict[str | None, list[Planned]] = {}
    for p in the_plan.items:
        sessions.setdefault(p.record.session, []).append(p)
    table = Table(
        title=f"{len(the_plan.items)} dead letters of {len(sessions)} sessions in {dlq}",
        caption=f"progress group: {group}",
    )
    for name in ("session", "count", "first", "last", "reasons", "command types", "target"):
        table.add_column(name, justify="right" if name == "count" else "left")
    table.add_column("action")
    for session, items in sessions.items():
        first, last = items[0].record, items[-1].record
        actions = _tally(
            f"{p.action} ({p.skip_reason})" if p.skip_reason else p.action for p in items
        )
        table.add_row(
            session if session is not None else "(no key)",
            str(len(items)),
            f"{first.partition}:{first.offset}",
            f"{last.partition}:{last.offset}",
            _tally(p.record.reason for p in items),
            _tally(p.record.command_type for p in items),
            ", ".join(sorted({p.target for p in items if p.target})) or "-",
            actions,
        )
    terminal = sys.stdout.isatty()
    Console(width=None if terminal else 200, soft_wrap=not terminal).print(table)


def summary(
    the_plan: Plan,
    header: dict[str, Any],
    *,
    outcome: Callable[[Planned], str],
    interrupted: bool = False,
    error: str | None = None,
) -> Counter[str]:
    """Print the run's summary to stderr and log it; returns the count per outcome."""
    items = the_plan.items
    counts = Counter(outcome(p) for p in items)
    skipped = Counter(p.skip_reason for p in items if p.action == "skip" and p.skip_reason)
    earlier = Counter(p.skip_reason for p in items if p.action == "done" and p.skip_reason)
    dry = header["dry_run"]
    sessions = len({p.record.key for p in items})
    pulled = sum(p.pulled_in for p in items)
    lines = [
        f"talon-bridge replay{' (dry run: nothing written)' if dry else ''}: "
        f"{header['dlq']}, group {header['group']}",
        f"  scanned    {the_plan.scanned}",
        f"  selected   {len(items)} in {sessions} session{'' if sessions == 1 else 's'}"
        + (f", {pulled} of them parked records pulled in behind their poison" if pulled else ""),
    ]
    if dry:
        verbs = [("discard", "to discard")] if header["discard"] else [("replay", "to replay")]
    elif header["discard"]:
        verbs = [("discarded", "discarded"), ("not-discarded", "not discarded")]
    else:
        verbs = [("replayed", "replayed"), ("failed", "failed"), ("not-sent", "not sent")]
    for i, (key, label) in enumerate(verbs):
        if i == 0 or counts.get(key):
            lines.append(f"  {label:<10} {counts.get(key, 0)}")
    lines.append(
        f"  skipped    {counts.get('skip' if dry else 'skipped', 0)}"
        + (f"  ({_tally(skipped.elements())})" if skipped else "")
    )
    if counts.get("done"):
        lines.append(
            f"  done       {counts['done']} by an earlier run of this selection"
            + (f"  (skipped then: {_tally(earlier.elements())})" if earlier else "")
        )
    if header["discard"] and not dry:
        lines.append(f"  released   {header.get('released', 0)} parked sessions (tombstones)")
    if items:
        lines.append(f"  by reason       {_tally(p.record.reason for p in items)}")
        lines.append(
            "  by error class  "
            + _tally(p.record.error_class or p.record.exception_class for p in items)
        )
    if interrupted:
        lines.append("  interrupted: run the same command again to continue")
    if error:
        lines.append(f"  error: {error}")
    print("\n".join(lines), file=sys.stderr, flush=True)
    log.info(
        "replay finished" if not dry else "replay dry run",
        extra={
            **header,
            "selected": len(items),
            "outcomes": dict(counts),
            "skipped": dict(skipped),
            "interrupted": interrupted,
            "error": error,
        },
    )
    return counts
