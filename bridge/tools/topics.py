"""`talon-bridge topics create`: create the bridge's topics that are missing.

Meant for a first installation or a Helm pre-install Job; the topics' names and shapes, and
the idempotent creation, are `bridge.kafka.topics`.
"""

from __future__ import annotations

import argparse
import sys

from bridge.environment import load, warn_unknown
from bridge.kafka.errors import KafkaException
from bridge.kafka.topics import ensure_topics, specs_for
from bridge.logs import configure_logging
from bridge.settings import KafkaSettings

__all__ = ["HELP", "configure", "run"]

HELP = "create the input, output, dead-letter and parking topics if missing"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["create"])
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--replication-factor", type=int, default=-1)


def run(args: argparse.Namespace) -> int:
    settings = load(KafkaSettings)
    configure_logging(settings.log_level, settings.log_format)
    warn_unknown()
    specs = specs_for(settings, partitions=args.partitions, replication=args.replication_factor)
    try:
        created = ensure_topics(settings.librdkafka_common(), specs)
    except KafkaException as exc:
        print(f"talon-bridge topics: error: {exc.args[0].str()}", file=sys.stderr)
        return 1
    for spec in specs:
        print(f"{spec.name}: {'created' if spec.name in created else 'exists'}")
    return 0
