"""`talon-bridge doctor`: check a deployment's setup before (or while) the worker runs.

It reads the same settings as `run` and tries, without writing anything, what the worker
will do: reach the brokers; find each topic with a sane shape (the parking topic compacted,
the input and dead-letter topics not); hold the ACLs the worker needs on its topics and its
group; read the group's committed offsets; decode the newest input records; find the Schema
Registry (confluent encoding);
and have Talon.One accept the API key on a ``dry=true`` updateCustomerSessionV2, which
Talon.One does not persist.

The Kafka checks are `doctor_kafka`, the Schema Registry, Talon.One and worker checks
`doctor_services`, the rows and their table `doctor_report`.

Prints one row per check and exits 0 when nothing failed, 1 otherwise (warnings pass).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from bridge.environment import load, warn_unknown
from bridge.settings import Settings
from bridge.tools.doctor_kafka import kafka_checks
from bridge.tools.doctor_report import Check, Status, render
from bridge.tools.doctor_services import registry_checks, talon_checks, worker_check

__all__ = ["HELP", "Check", "Status", "configure", "diagnose", "run"]

HELP = "check brokers, topics, ACLs, registry and Talon.One credentials without writing"


def diagnose(
    settings: Settings, *, timeout: float = 10.0, worker_url: str | None = None
) -> list[Check]:
    """Run every check against the deployment `settings` describe; returns the rows.

    With `worker_url` (the metrics address of running workers) their health is checked too.
    """
    rows = kafka_checks(settings, timeout)
    rows += registry_checks(settings)
    rows.extend(talon_checks(settings))
    if worker_url:
        rows.append(worker_check(worker_url.rstrip("/"), timeout))
    return rows


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per Kafka request (default 10)"
    )
    parser.add_argument(
        "--worker-url",
        default=None,
        metavar="URL",
        help="also check running workers' /healthz and /metrics at URL (their metrics port)",
    )
    parser.epilog = "Reads the same BRIDGE_* settings as `run`. Exit status: 0 fine, 1 failed."


def run(args: argparse.Namespace) -> int:
    from bridge.logs import configure_logging

    settings = load(Settings)
    configure_logging(settings.log_level, settings.log_format)
    warn_unknown()
    rows = diagnose(settings, timeout=args.timeout, worker_url=args.worker_url)
    failed = any(r.status == "fail" for r in rows)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(r) for r in rows]}, indent=2))
    else:
        print(render(rows))
    return 1 if failed else 0
