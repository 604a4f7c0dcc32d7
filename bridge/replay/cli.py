"""`talon-bridge replay`: send dead letters back, in each session's original order, safely.

Thin on purpose: parse the arguments into a `Selection`, load the `BRIDGE_*` settings, open
the dead-letter topic (`replay.kafka`) and hand over to `replay.runner`, which reads a fixed
snapshot, decides (`replay.plan.plan`), sends or lists, and reports (`replay.report`).
docs/replay.md is the reference for the rules and the design.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bridge.errors import SelectionError
from bridge.replay.runner import CONFIRM_OVER, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, replay
from bridge.replay.selection import (
    COMMAND_TYPES,
    Selection,
    parse_header_filter,
    parse_instant,
    parse_offsets,
    parse_status,
    selection_digest,
)

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

HELP = "re-send dead letters to their original topics, in per-session order, resumably"


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
        "--application",
        action="append",
        default=[],
        metavar="NAME",
        help="dead letters of this Talon.One application (__talon.bridge.application); they "
        "are re-sent with BRIDGE_APPLICATION_HEADER naming it, so they go back there",
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
        applications=frozenset(args.application),
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
    if args.application:  # only then: the groups of earlier selections keep their names
        identity["applications"] = sorted(set(args.application))
    return selection, identity


def default_group(dlq: str, identity: dict[str, Any]) -> str:
    """The selection's own consumer group: same arguments, same group, shared progress."""
    return f"talon-bridge-replay-{dlq}-{selection_digest({**identity, 'from': dlq})}"


def _usage(message: object) -> int:
    print(f"talon-bridge replay: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _check_confirmable(args: argparse.Namespace) -> None:
    if args.discard and not (args.dry_run or args.yes or sys.stdin.isatty()):
        raise SelectionError(
            "--discard drops dead letters for good: confirm with --yes "
            "(stdin is not a terminal, so there is no one to ask)"
        )


def run(args: argparse.Namespace) -> int:
    from bridge.avro.codec import Codec
    from bridge.environment import load, warn_unknown
    from bridge.kafka.errors import KafkaException
    from bridge.logs import configure_logging
    from bridge.replay.kafka import DlqReader, ReadError
    from bridge.settings import KafkaSettings

    try:
        selection, identity = build_selection(args, int(time.time() * 1000))
        _check_confirmable(args)
    except SelectionError as exc:
        return _usage(exc)
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
        return replay(args, settings, selection, reader)
    except SelectionError as exc:
        return _usage(exc)
    except (KafkaException, ReadError) as exc:
        print(f"talon-bridge replay: error: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    finally:
        reader.close()
        codec.close()
