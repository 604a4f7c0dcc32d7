"""`talon-bridge run`: the bridge worker's entry point."""

from __future__ import annotations

import argparse

from bridge.environment import help_text, load, warn_unknown
from bridge.logs import configure_logging
from bridge.settings import Settings
from bridge.tracing import from_environment

__all__ = ["HELP", "configure", "run"]

HELP = "consume commands, apply them to Talon.One in per-session order, publish effects"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the setup and exit instead of running (same as `talon-bridge doctor`)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes in this pod, each a member of the consumer group "
        "(overrides BRIDGE_WORKERS)",
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = help_text()


def run(args: argparse.Namespace) -> int:
    if args.check:
        from bridge.tools import doctor

        return doctor.run(argparse.Namespace(json=False, timeout=10.0, worker_url=None))
    overrides = {} if args.workers is None else {"workers": args.workers}
    settings = load(Settings, overrides)
    configure_logging(settings.log_level, settings.log_format)
    warn_unknown()
    if settings.workers > 1:
        from bridge.worker.supervisor import run_supervisor

        return run_supervisor(settings)
    tracing = from_environment()
    from bridge.worker.root import run_worker  # deferred: heavy imports only when running

    return run_worker(settings, tracing=tracing)
