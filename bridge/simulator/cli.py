"""The ``talon-bridge simulator`` subcommand: serve the Talon.One simulator over HTTP.

Prints one line, ``talon-bridge simulator listening on http://HOST:PORT``, on stdout once
the socket accepts connections (``--port 0`` picks a free port and the line names it), and
stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from aiohttp import web

from bridge.errors import ConfigError
from bridge.simulator import collector
from bridge.simulator.app import Simulator, build_app
from bridge.simulator.faults import FaultConfig, FaultConfigError
from bridge.simulator.idempotency import IDEMPOTENCY_MAX_KEYS
from bridge.simulator.journal import JOURNAL_LIMIT
from bridge.simulator.rules import RuleConfig

__all__ = ["HELP", "READY_PREFIX", "configure", "fault_config", "run"]

HELP = "Run the Talon.One Integration API simulator (tests, demo, benchmarks)."
READY_PREFIX = "talon-bridge simulator listening on "

log = logging.getLogger(__name__)

# Shutdown waits this long for in-flight requests before cancelling them.
_SHUTDOWN_TIMEOUT_S = 2.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=9000, help="port to bind; 0 picks a free one (default 9000)"
    )
    parser.add_argument("--api-key", required=True, help="the only accepted ApiKey-v1 key")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault/latency RNGs")
    parser.add_argument(
        "--access-log", action="store_true", help="log one line per request (off by default)"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    parser.add_argument(
        "--journal-limit",
        type=int,
        default=JOURNAL_LIMIT,
        help="journal entries kept in memory, oldest dropped first (default %(default)s)",
    )
    parser.add_argument(
        "--idempotency-max-keys",
        type=int,
        default=IDEMPOTENCY_MAX_KEYS,
        help="stored Idempotency-Key responses, oldest evicted first (default %(default)s)",
    )
    lat = parser.add_argument_group("latency")
    lat.add_argument("--latency-ms", type=float, default=0.0, help="mean processing time")
    lat.add_argument("--latency-jitter-ms", type=float, default=0.0, help="spread around the mean")
    lat.add_argument("--latency-distribution", choices=("uniform", "lognormal"), default="uniform")
    lat.add_argument("--latency-tail-rate", type=float, default=0.0, help="share of slow requests")
    lat.add_argument("--latency-tail-ms", type=float, default=0.0, help="extra time when slow")
    flt = parser.add_argument_group("faults (rates are probabilities per request)")
    for status in ("429", "500", "502", "503"):
        flt.add_argument(f"--rate-{status}", type=float, default=0.0, metavar="P")
    flt.add_argument("--retry-after-s", type=int, default=1, help="Retry-After of 429 and 503")
    flt.add_argument(
        "--rate-limit-rps",
        type=float,
        default=0.0,
        help="the Application's request limit (token bucket), answered with 429 past it",
    )
    flt.add_argument("--rate-limit-burst", type=int, default=20, help="requests the bucket saves")
    flt.add_argument("--rate-hang", type=float, default=0.0, metavar="P")
    flt.add_argument(
        "--hang-s", type=float, default=30.0, help="how long a hang lasts; 0 means forever"
    )
    flt.add_argument("--rate-reset", type=float, default=0.0, metavar="P")
    flt.add_argument(
        "--rate-lost-response",
        type=float,
        default=0.0,
        metavar="P",
        help="apply the request, then hold its answer for --hang-s",
    )
    flt.add_argument("--fail-session", action="append", default=[], metavar="ID")
    flt.add_argument("--reject-attribute", action="append", default=[], metavar="NAME")
    flt.add_argument(
        "--reject-attribute-prefix",
        action="append",
        default=None,
        metavar="PREFIX",
        help="attribute names treated as unknown (default: x-undefined)",
    )
    rules = parser.add_argument_group("rules")
    rules.add_argument(
        "--event-type-effect",
        action="append",
        default=[],
        metavar="TYPE",
        help="event types that produce a customEffect",
    )


def fault_config(args: argparse.Namespace) -> FaultConfig:
    """The FaultConfig described by the command-line options."""
    values: dict[str, Any] = {
        "rate_429": args.rate_429,
        "retry_after_s": args.retry_after_s,
        "rate_limit_rps": args.rate_limit_rps,
        "rate_limit_burst": args.rate_limit_burst,
        "rate_500": args.rate_500,
        "rate_502": args.rate_502,
        "rate_503": args.rate_503,
        "rate_hang": args.rate_hang,
        "hang_s": args.hang_s if args.hang_s > 0 else None,
        "rate_reset": args.rate_reset,
        "rate_lost_response": args.rate_lost_response,
        "latency_ms": args.latency_ms,
        "latency_jitter_ms": args.latency_jitter_ms,
        "latency_distribution": args.latency_distribution,
        "latency_tail_rate": args.latency_tail_rate,
        "latency_tail_ms": args.latency_tail_ms,
        "fail_sessions": args.fail_session,
        "reject_attributes": args.reject_attribute,
    }
    if args.reject_attribute_prefix is not None:
        values["reject_attribute_prefixes"] = args.reject_attribute_prefix
    try:
        return FaultConfig.from_json(values)
    except FaultConfigError as exc:
        raise ConfigError("simulator faults", str(exc)) from exc


async def _serve(args: argparse.Namespace, sim: Simulator) -> None:
    app = build_app(sim)
    access_log = logging.getLogger("aiohttp.access") if args.access_log else None
    runner = web.AppRunner(app, access_log=access_log, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    collector.install()
    host, port = runner.addresses[0][:2]
    print(f"{READY_PREFIX}http://{host}:{port}", flush=True)
    log.info("simulator ready on %s:%s (seed %s)", host, port, args.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        sim.close()
        await runner.cleanup()
        counters = sim.state.counters
        log.info("simulator stopped: %d requests, %d applied", counters.requests, counters.applied)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    faults = fault_config(args)
    rules = RuleConfig(event_effect_types=frozenset(args.event_type_effect))
    if args.journal_limit < 1 or args.idempotency_max_keys < 1:
        raise ConfigError("--journal-limit/--idempotency-max-keys", "must be at least 1")
    sim = Simulator(
        args.api_key,
        faults=faults,
        seed=args.seed,
        rules=rules,
        journal_limit=args.journal_limit,
        idempotency_max_keys=args.idempotency_max_keys,
    )
    asyncio.run(_serve(args, sim))
    return 0
