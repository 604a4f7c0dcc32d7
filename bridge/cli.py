"""The `talon-bridge` command line: parse, load settings, call one function.

Each subcommand lives in a module of its own that holds its command line and exposes `HELP`,
`configure(parser)` and `run(args) -> int`: `bridge/tools/<name>.py`, or the `cli.py` of the
package it runs (worker, simulator, replay). The library code a command uses stays in its
package. This module only wires them up and maps typed outcomes to exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from bridge import __version__
from bridge.errors import ConfigError

__all__ = ["EXIT_CONFIG", "SUBCOMMANDS", "main"]

EXIT_CONFIG = 2

# name -> (module implementing it, one-line help); modules are imported only when chosen.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("bridge.worker.cli", "run the bridge worker"),
    "simulator": ("bridge.simulator.cli", "run the Talon.One simulator"),
    "produce": ("bridge.tools.produce", "produce realistic session lifecycles"),
    "send": ("bridge.tools.send", "produce commands written as JSON lines"),
    "replay": ("bridge.replay.cli", "re-send dead letters in per-session order"),
    "demo": ("bridge.tools.demo", "run broker, simulator and bridge on sample load"),
    "schemas": ("bridge.tools.schemas", "list, show, export or register the Avro schemas"),
    "topics": ("bridge.tools.topics", "create the bridge's topics"),
    "doctor": ("bridge.tools.doctor", "check brokers, topics, ACLs, registry and Talon.One access"),
}


class _Subcommand(Protocol):
    HELP: str

    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Subcommand:
    return cast(_Subcommand, importlib.import_module(SUBCOMMANDS[name][0]))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="talon-bridge",
        description="Kafka to Talon.One bridge: apply commands in per-session order, "
        "publish effects back to Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"talon-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, short) in SUBCOMMANDS.items():
        if name != only:
            sub.add_parser(name, help=short)
            continue
        module = _load(name)
        sp = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sp)
        sp.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in SUBCOMMANDS else None)
    args = parser.parse_args(args_list)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"talon-bridge: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
