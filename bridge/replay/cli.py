"""`talon-bridge replay`: send dead letters back, in each session's original order, safely.

Thin on purpose: parse the arguments into a `Selection`, load the `BRIDGE_*` settings, read
a fixed snapshot of the dead-letter topic (`replay.kafka`), decide (`replay.plan.plan`),
send or list, and report. docs/replay.md is the reference for the rules and the design.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from bridge.replay.plan import (
    COMMAND_TYPES,
    SAFE_SKIPS,
    Plan,
    Planned,
    Policy,
    Selection,
    SelectionError,
    parse_header_filter,
    parse_instant,
    parse_offsets,
    parse_status,
    selection_digest,
)

if TYPE_CHECKING:
    from bridge.replay.kafka import DlqReader, Snapshot
    from bridge.settings import KafkaSettings

__all__ = [
    "CONFIRM_OVER",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "HELP",
    "build_selection",
    "configure",
    "default_group",
    "run",
]

log = logging.getLogger(__name__)

HELP = "re-send dead letters to their original topics, in per-session order, resumably"

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
# A real run sending more records than this asks first on a terminal (unless --yes).
CONFIRM_OVER = 100

_EPILOG = f"""\
examples:
  talon-bridge replay --dry-run
  talon-bridge replay --session 7f3a-checkout
  talon-bridge replay --reason retries-exhausted --since 2h --rate 50
  talon-bridge replay --status 4xx --command-type update_customer_session --json --dry-run
  talon-bridge replay --offsets 3:1200-1450 --to talon.commands.retry
  talon-bridge replay --session 7f3a-checkout --discard --yes

Records are read up to the end the DLQ had when the run started. Progress is committed to a
consumer group named after the selection (talon-bridge-replay-<dlq>-<hash of the arguments>),
so running the same command again continues where it stopped and never sends a record twice.

The bridge's own output, parking and dead-letter topics, and the topic read, are refused as
targets unless --force. On a terminal, a run sending more than {CONFIRM_OVER} records asks first.

exit status: 0 done; 1 partial (records skipped for safety, interrupted, a send failed, or
the question answered no; see the summary); 2 usage (bad argument, unknown or refused topic,
missing --yes for --discard).
Settings come from BRIDGE_* environment variables (BRIDGE_KAFKA_BOOTSTRAP_SERVERS,
BRIDGE_DLQ_TOPIC, BRIDGE_PARKING_TOPIC, BRIDGE_KAFKA_CONFIG, ...); logs go to stderr.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    src = parser.add_argument_group("source and target")
    src.add_argument(
        "--from",
        dest="source",
        metavar="TOPIC",
        help="dead-letter topic to read (default: BRIDGE_DLQ_TOPIC)",
    )
    src.add_argument(
        "--to",
        dest="target",
        metavar="TOPIC",
        help="send every record to TOPIC instead of its original topic (__connect.errors.topic)",
    )
    f = parser.add_argument_group(
        "filters", "Combined with AND; a filter given several times matches any of its values."
    )
    f.add_argument(
        "--since",
        metavar="WHEN",
        help="dead letters written at or after WHEN: ISO-8601 (UTC if no zone) or a "
        "duration ago such as 30m, 2h, 7d",
    )
    f.add_argument("--until", metavar="WHEN", help="dead letters written at or before WHEN")
    f.add_argument(
        "--session", action="append", default=[], metavar="ID", help="customer-session ID (key)"
    )
    f.add_argument("--sessions-file", metavar="PATH", help="session IDs, one per line")
    f.add_argument(
        "--error-class",
        action="append",
        default=[],
        metavar="NAME",
        help="error class, e.g. PermanentApiError (either error-class header)",
    )
    f.add_argument(
        "--reason",
        action="append",
        default=[],
        metavar="REASON",
        help="dead-letter reason: permanent, retries-exhausted, validation, parked, ...",
    )
    f.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="CODE",
        help="Talon.One HTTP status (400) or class (4xx)",
    )
    f.add_argument(
        "--command-type",
        action="append",
        default=[],
        choices=COMMAND_TYPES,
        metavar="TYPE",
        help=f"{', '.join(COMMAND_TYPES)} (unknown: the value does not decode)",
    )
    f.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a header of the dead letter equals VALUE (all given must match)",
    )
    f.add_argument(
        "--offsets",
        action="append",
        default=[],
        metavar="P[:FROM-TO]",
        help="DLQ partition P, offsets FROM to TO inclusive (either end may be left open)",
    )
    a = parser.add_argument_group("what to do")
    a.add_argument(
        "-n", "--dry-run", action="store_true", help="list what would be done; write nothing"
    )
    a.add_argument(
        "--json", action="store_true", help="one JSON object per record on stdout instead"
    )
    a.add_argument(
        "--discard",
        action="store_true",
        help="drop the records instead and release their sessions (asks, or needs --yes)",
    )
    a.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help=f"confirm --discard, or a replay of more than {CONFIRM_OVER} records, without asking",
    )
    a.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="send records the safety rules refuse (parked without their poison, "
        "replayed --max-replays times, to the bridge's own topics or the topic read)",
    )
    a.add_argument(
        "--max-replays",
        type=int,
        default=3,
        metavar="N",
        help="refuse records already replayed N times (default: 3)",
    )
    a.add_argument("--rate", type=float, metavar="N", help="send at most N records per second")
    a.add_argument(
        "--group",
        metavar="NAME",
        help="consumer group keeping this selection's progress "
        "(default: talon-bridge-replay-<dlq>-<hash of the selection>)",
    )


def _read_sessions(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SelectionError(f"--sessions-file {path}: {exc.strerror or exc}") from None
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def build_selection(args: argparse.Namespace, now_ms: int) -> tuple[Selection, dict[str, Any]]:
    """The filters, and the arguments that identify the selection (for its group name)."""
    if args.max_replays < 1:
        raise SelectionError("--max-replays must be at least 1")
    if args.rate is not None and not args.rate > 0:
        raise SelectionError("--rate must be a positive number of records per second")
    sessions = set(args.session)
    if args.sessions_file:
        sessions.update(_read_sessions(args.sessions_file))
        if not sessions:
            raise SelectionError(f"--sessions-file {args.sessions_file}: no session IDs in it")
    offsets = tuple(parse_offsets(o) for o in args.offsets)
    headers = tuple(parse_header_filter(h) for h in args.header)
    statuses = frozenset(parse_status(s) for s in args.status)
    selection = Selection(
        since_ms=parse_instant(args.since, now_ms) if args.since else None,
        until_ms=parse_instant(args.until, now_ms) if args.until else None,
        sessions=frozenset(sessions),
        error_classes=frozenset(args.error_class),
        reasons=frozenset(args.reason),
        statuses=statuses,
        command_types=frozenset(args.command_type),
        headers=headers,
        offsets=offsets,
    )
    identity: dict[str, Any] = {
        "to": args.target,
        "since": args.since,
        "until": args.until,
        "sessions": sorted(sessions),
        "errorClasses": sorted({c.lower() for c in args.error_class}),
        "reasons": sorted({r.lower() for r in args.reason}),
        "statuses": sorted(statuses),
        "commandTypes": sorted(set(args.command_type)),
        "headers": sorted([k, v] for k, v in headers),
        "offsets": sorted(str(o) for o in offsets),
        "discard": bool(args.discard),
        "force": bool(args.force),
        "maxReplays": args.max_replays,
    }
    return selection, identity


def default_group(dlq: str, identity: dict[str, Any]) -> str:
    """The selection's own consumer group: same arguments, same group, shared progress."""
    return f"talon-bridge-replay-{dlq}-{selection_digest({**identity, 'from': dlq})}"


def _usage(message: object) -> int:
    print(f"talon-bridge replay: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from bridge.avro.codec import Codec
    from bridge.logs import configure_logging
    from bridge.replay.kafka import DlqReader, ReadError
    from bridge.settings import KafkaSettings, load, warn_unknown

    try:
        selection, identity = build_selection(args, int(time.time() * 1000))
    except SelectionError as exc:
        return _usage(exc)
    if args.discard and not (args.dry_run or args.yes or sys.stdin.isatty()):
        return _usage(
            "--discard drops dead letters for good: confirm with --yes "
            "(stdin is not a terminal, so there is no one to ask)"
        )
    settings = load(KafkaSettings)
    configure_logging(settings.log_level, settings.log_format)
    warn_unknown()
    dlq = args.source or settings.dlq_topic
    group = args.group or default_group(dlq, identity)
    codec = Codec.from_settings(settings)
    try:
        reader = DlqReader(settings, dlq, group, codec)
    except KafkaException as exc:  # an unknown or invalid librdkafka property
        codec.close()
        return _usage(f"Kafka client configuration (BRIDGE_KAFKA_CONFIG): {exc}")
    try:
        return _replay(args, settings, selection, reader)
    except SelectionError as exc:
        return _usage(exc)
    except (KafkaException, ReadError) as exc:
        print(f"talon-bridge replay: error: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    finally:
        reader.close()
        codec.close()


def _replay(
    args: argparse.Namespace, settings: KafkaSettings, selection: Selection, reader: DlqReader
) -> int:
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
            _print_json(the_plan, lambda p: p.action)
        else:
            _print_table(the_plan, reader.topic, reader.group)
        _summary(the_plan, header, outcome=lambda p: p.action)
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
    from bridge.replay.plan import plan

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
    from bridge.replay.plan import CommitTracker

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
            sender.replay(to_send, replay_id=replay_id, rate=args.rate)
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
        _print_json(the_plan, outcome)
    counts = _summary(
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


# --- output ----------------------------------------------------------------------------------


def _record_json(p: Planned, action: str) -> dict[str, Any]:
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


def _print_json(the_plan: Plan, action: Callable[[Planned], str]) -> None:
    out = sys.stdout
    for p in the_plan.items:
        out.write(orjson.dumps(_record_json(p, action(p))).decode() + "\n")
    out.flush()


def _tally(values: Iterable[str | None]) -> str:
    counts = Counter(v or "-" for v in values)
    return ", ".join(f"{k} {n}" for k, n in counts.most_common())


def _print_table(the_plan: Plan, dlq: str, group: str) -> None:
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


def _summary(
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
