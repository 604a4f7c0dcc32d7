"""Peak memory of the worst single records: what one ~1 MB command costs the worker.

Each shape is a command of just under 1 MB (Kafka's default `message.max.bytes`) built to make
decoding or request building allocate as much as it can: a huge cart, a huge return, a million
coupon codes, attribute maps of tiny entries. Each is measured in a fresh process: its peak RSS
(VmHWM) once the bridge is imported and warmed up, then again after the record went the way
it goes in the worker (decoded, then its request body checked and built, or refused). The
goal is at most +50 MiB over that idle figure.

Run: ``.venv/bin/python -m benchmarks.hostile`` (add ``--shape NAME`` for one shape).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.procstat import peak_rss_mb
from bridge.avro.codec import Codec
from bridge.commands import (
    AdditionalCost,
    CartItem,
    Command,
    ReturnCartItems,
    ReturnedCartItem,
    TrackEvent,
    UpdateCustomerSession,
)
from bridge.errors import BridgeError
from bridge.worker.handlers import event_request, return_request, session_request

MAX_BYTES = 1_000_000
TOPIC = "talon.commands"


def _session(**fields: Any) -> Command:
    return Command("e-1", "s-1", 1, UpdateCustomerSession(**fields))


def _keys(n: int) -> list[str]:
    return [f"{i:x}" for i in range(n)]


# name -> (what it is, builder of a command of about `n` elements, n)
SHAPES: dict[str, tuple[str, Callable[[int], Command], int]] = {
    "cart-lines": (
        "cart lines with an empty sku and quantity 0 (every line invalid)",
        lambda n: _session(cart_items=[CartItem("", 0)] * n),
        166_000,
    ),
    "cart-at-limit": (
        "1000 invalid cart lines (the most that passes the limit), each with attributes",
        lambda n: _session(
            cart_items=[CartItem("", 0, attributes=dict.fromkeys(_keys(n), 0))] * 1000
        ),
        200,
    ),
    "returned-items": (
        "returned items with every field null",
        lambda n: Command("e-1", "s-1", 1, ReturnCartItems([ReturnedCartItem()] * n)),
        330_000,
    ),
    "coupon-codes": (
        "empty coupon codes",
        lambda n: _session(coupon_codes=[""] * n),
        990_000,
    ),
    "session-attributes": (
        "session attributes of one byte each",
        lambda n: _session(attributes=dict.fromkeys(_keys(n), 0)),
        140_000,
    ),
    "event-attributes": (
        "event attributes holding empty lists",
        lambda n: Command("e-1", "s-1", 1, TrackEvent("t", "p", {k: [] for k in _keys(n)})),
        125_000,
    ),
    "additional-costs": (
        "additional costs",
        lambda n: _session(additional_costs=dict.fromkeys(_keys(n), AdditionalCost(1.0))),
        70_000,
    ),
    "one-string": (
        "one sku of a megabyte",
        lambda n: _session(cart_items=[CartItem("x" * n, 1)]),
        999_000,
    ),
}


def _build(payload: Any) -> Any:
    if isinstance(payload, UpdateCustomerSession):
        return session_request(payload)
    if isinstance(payload, TrackEvent):
        return event_request(payload)
    return return_request(payload)


def measure(path: Path) -> tuple[float, float, float, str]:
    """(idle MiB, peak MiB, seconds, outcome) of one record, in this process."""
    codec = Codec()
    warm = codec.encode_command(_session(cart_items=[CartItem("s", 1)]), TOPIC)
    _build(codec.decode_command(warm).payload)
    data = path.read_bytes()
    idle = peak_rss_mb()
    started = time.perf_counter()
    try:
        _build(codec.decode_command(data).payload)
        outcome = "sent"
    except BridgeError as exc:
        outcome = f"refused: {type(exc).__name__}"
    return idle, peak_rss_mb(), time.perf_counter() - started, outcome


def _fit(codec: Codec, build: Callable[[int], Command], n: int) -> bytes:
    """The record of the most elements (scaled from `n`) that fits in `MAX_BYTES`."""
    data = codec.encode_command(build(n), TOPIC)
    n = int(n * 0.995 * MAX_BYTES / len(data))
    while len(data := codec.encode_command(build(n), TOPIC)) > MAX_BYTES:
        n = int(n * 0.99)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), action="append")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(*measure(args.measure), sep="\t")
        return
    codec = Codec()
    print(
        f"{'shape':<20} {'bytes':>9} {'idle MiB':>9} {'peak MiB':>9} {'+MiB':>6} {'s':>6}  outcome"
    )
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.shape or SHAPES:
            _, build, n = SHAPES[name]
            data = _fit(codec, build, n)
            path = Path(tmp) / name
            path.write_bytes(data)
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.hostile", "--measure", str(path)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split("\t")
            idle, peak, seconds = (float(v) for v in out[:3])
            worst = max(worst, peak - idle)
            print(
                f"{name:<20} {len(data):>9,} {idle:>9.1f} {peak:>9.1f} {peak - idle:>6.1f}"
                f" {seconds:>6.2f}  {out[3].strip()}"
            )
    print(f"worst: +{worst:.1f} MiB over idle (goal: at most +50 MiB)")


if __name__ == "__main__":
    main()
