"""The run of `talon-bridge replay`: check the topics, read, decide, confirm, send, report.

`replay.cli` parses the arguments and opens the DLQ reader; everything after that is here.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from bridge.errors import SelectionError
from bridge.replay.plan import SAFE_SKIPS, Plan, Planned, Policy, plan
from bridge.replay.progress import CommitTracker
from bridge.replay.report import print_json, print_table, summary
from bridge.replay.selection import Selection

if TYPE_CHECKING:
    from bridge.replay.kafka import DlqReader, Snapshot
    from bridge.settings import KafkaSettings

__all__ = ["CONFIRM_OVER", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "replay"]

# The command's logs keep the logger name they have always had.
log = logging.getLogger("bridge.replay.cli")

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
# A real run sending more records than this asks first on a terminal (unless --yes).
CONFIRM_OVER = 100


def replay(
    args: argparse.Namespace, settings: KafkaSettings, selection: Selection, reader: DlqReader
) -> int:
    """Check the topics, read the snapshot, decide, then list or act; the exit status.

    Raises:
        SelectionError: A topic the run needs is missing or refused.
    """
    from bridge.replay.kafka import Stopper

    with Stopper().installed() as stopper:  # Ctrl-C while reading: stop, nothing sent
        snap, the_plan = _prepare(args, settings, selection, reader, stopper.stop)
    header = {
        "dlq": reader.topic,
        "group": reader.group,
        "dry_run": bool(args.dry_run),
        "discard": bool(args.discard),
    }
    if args.dry_run:
        if args.json:
            print_json(the_plan, lambda p: p.action)
        else:
            print_table(the_plan, reader.topic, reader.group)
        summary(the_plan, header, outcome=lambda p: p.action)
        return EXIT_OK
    to_send = the_plan.by_action("discard" if args.discard else "replay")
    if args.discard and to_send and not args.yes:
        sessions = len({p.record.key for p in to_send})
        if not _confirm(
            f"Discard {len(to_send)} dead letters of {sessions} sessions from {reader.topic} "
            f"and release {len(the_plan.releases)} sessions?"
        ):
            print("talon-bridge replay: nothing discarded", file=sys.stderr)
            return EXIT_PARTIAL
    if not args.discard and len(to_send) > CONFIRM_OVER and not args.yes and sys.stdin.isatty():
        sessions = len({p.record.key for p in to_send})
        targets = ", ".join(sorted({p.target for p in to_send if p.target}))
        if not _confirm(f"Replay {len(to_send)} dead letters of {sessions} sessions to {targets}?"):
            print("talon-bridge replay: nothing sent", file=sys.stderr)
            return EXIT_PARTIAL
    return _execute(args, settings, reader, snap, the_plan, to_send, header)


def _prepare(
    args: argparse.Namespace,
    settings: KafkaSettings,
    selection: Selection,
    reader: DlqReader,
    stop: threading.Event,
) -> tuple[Snapshot, Plan]:
    """Check the topics, read the snapshot, decide."""
    protected = _protected_topics(settings, reader.topic, from_arg=args.source is not None)
    if args.target in protected and not args.force:
        raise SelectionError(
            f"--to {args.target!r} is {protected[args.target]}; replaying into it would "
            "corrupt what the bridge keeps there (use --force if that is really meant)"
        )
    if reader.partitions(reader.topic) is None:
        where = "--from" if args.source else "BRIDGE_DLQ_TOPIC"
        raise SelectionError(f"dead-letter topic {reader.topic!r} ({where}) does not exist")
    if args.target is not None and reader.partitions(args.target) is None:
        raise SelectionError(f"--to: topic {args.target!r} does not exist")
    if args.discard and not args.dry_run and reader.partitions(settings.parking_topic) is None:
        raise SelectionError(
            f"parking topic {settings.parking_topic!r} (BRIDGE_PARKING_TOPIC) does not exist"
        )
    snap = reader.snapshot(selection.read_ranges(), stop=stop)
    topics: dict[str, int] | None = None
    if not args.discard:
        wanted = (
            {args.target}
            if args.target
            else {r.original_topic for r in snap.records if r.original_topic}
        )
        topics = {t: n for t in sorted(wanted) if (n := reader.partitions(t)) is not None}
    policy = Policy(
        to=args.target,
        discard=args.discard,
        force=args.force,
        max_replays=args.max_replays,
        topics=topics,
        protected=frozenset(protected),
    )
    return snap, plan(snap.records, selection, policy, snap.start)


def _protected_topics(settings: KafkaSettings, source: str, *, from_arg: bool) -> dict[str, str]:
    """Topics a replay must not write to without --force, each with what it is."""
    return {
        settings.output_topic: "the output topic (BRIDGE_OUTPUT_TOPIC)",
        settings.parking_topic: "the parking topic (BRIDGE_PARKING_TOPIC)",
        settings.dlq_topic: "the dead-letter topic (BRIDGE_DLQ_TOPIC)",
        source: f"the topic this run reads ({'--from' if from_arg else 'BRIDGE_DLQ_TOPIC'})",
    }


def _execute(
    args: argparse.Namespace,
    settings: KafkaSettings,
    reader: DlqReader,
    snap: Snapshot,
    the_plan: Plan,
    to_send: list[Planned],
    header: dict[str, Any],
) -> int:
    """Send (or discard), commit, report."""
    from bridge.replay.kafka import Sender, Stopper

    replay_id = str(uuid.uuid4())
    log.info(
        "replay started",
        extra={**header, "replay_id": replay_id, "selected": len(the_plan.items)},
    )
    terminal = sys.stderr.isatty()
    with (
        Stopper().installed() as stopper,
        _progress(len(to_send), enabled=terminal) as advance,
    ):
        sender = Sender(
            settings,
            commit=reader.commit,
            tracker=CommitTracker(start=dict(snap.start), end=dict(snap.end)),
            stopper=stopper,
            on_ack=advance,
            log_progress=not terminal,
        )
        if args.discard:
            sender.discard(to_send, the_plan.releases, settings.parking_topic)
        else:
            route = settings.application_header if args.application else None
            sender.replay(to_send, replay_id=replay_id, rate=args.rate, route_header=route)
    result = sender.result

    def outcome(p: Planned) -> str:
        pos = p.record.position
        if p.action == "replay":
            if pos in result.acked:
                return "replayed"
            return "failed" if pos in result.failed else "not-sent"
        if p.action == "discard":
            return "discarded" if result.error is None else "not-discarded"
        return "skipped" if p.action == "skip" else "done"

    if args.json:
        print_json(the_plan, outcome)
    counts = summary(
        the_plan,
        {**header, "replay_id": replay_id, "released": result.released},
        outcome=outcome,
        interrupted=result.interrupted,
        error=result.error,
    )
    unsafe = any(p.skip_reason and p.skip_reason not in SAFE_SKIPS for p in the_plan.items)
    incomplete = any(counts.get(k) for k in ("failed", "not-sent", "not-discarded"))
    if unsafe or incomplete or result.interrupted or result.error is not None:
        return EXIT_PARTIAL
    return EXIT_OK


def _confirm(question: str) -> bool:
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in {"y", "yes"}


@contextlib.contextmanager
def _progress(total: int, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; elsewhere the sender logs progress lines instead."""
    if not enabled or total == 0:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True)) as bar:
        task = bar.add_task("replaying", total=total)
        yield lambda n: bar.advance(task, n)
