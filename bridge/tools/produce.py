"""`talon-bridge produce`: a realistic load generator of customer-session lifecycles.

Each session lives through a few cart updates, sometimes a coupon, a close (or a cancel),
sometimes a partial return, plus custom events for its profile (a share of them, with
``--events-v3``, as trackEventV3 events). Sessions are interleaved the
way a shop's traffic is, so many sessions are active at once, and records are keyed by
session ID so each session lands on one partition (with ``--route-by profile``, the partition
of its customer profile: `bridge.routing`). Generation is deterministic for a seed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.commands import (
    AdditionalCost,
    CartItem,
    Command,
    Payload,
    ReturnCartItems,
    ReturnedCartItem,
    TrackEvent,
    TrackEventV3,
    UpdateCustomerSession,
)

__all__ = [
    "HELP",
    "ROUTES",
    "LoadSpec",
    "add_route_option",
    "configure",
    "generate",
    "produce_commands",
    "run",
]

HELP = "produce realistic session lifecycles (Avro) to the input topic"

_CATALOG = [
    ("SKU-SHOE-1", "Running shoes", "shoes", 89.0),
    ("SKU-SHOE-2", "Trail shoes", "shoes", 129.0),
    ("SKU-SHIRT-1", "T-shirt", "apparel", 19.5),
    ("SKU-SOCK-1", "Socks 3-pack", "apparel", 9.99),
    ("SKU-CAP-1", "Cap", "accessories", 24.0),
    ("SKU-BAG-1", "Gym bag", "accessories", 49.0),
    ("SKU-BOTTLE-1", "Bottle", "accessories", 12.0),
]
_COUPONS = ["SAVE10", "XMAS-20", "SAVE5", "EXPIRED-1", "BOGUS"]
_EVENT_TYPES = ["newsletter_signup", "product_viewed", "wishlist_added"]
# What `--route-by` chooses the partition by; the record key is the session ID either way.
ROUTES = ("session", "profile")


@dataclass(frozen=True, slots=True)
class LoadSpec:
    sessions: int = 1000
    total: int | None = None  # stop after this many commands (None: full lifecycles)
    profiles: int | None = None  # distinct profiles; fewer than sessions shares profiles
    seed: int = 1
    run_id: str = "run"
    max_cart_updates: int = 4  # each session updates its cart 1..N times before checkout
    events_v3: float = 0.0  # share of the custom events sent as TrackEventV3


def _event(rng: random.Random, profile: str, sku: str, v3_share: float) -> Payload:
    kind = rng.choice(_EVENT_TYPES)
    # No draw without a share, so the commands of a seed stay those of earlier versions.
    if v3_share and rng.random() < v3_share:
        return TrackEventV3(type=kind, profile_id=profile, attributes={"sku": sku})
    return TrackEvent(type=kind, profile_id=profile, attributes={"sku": sku})


def _lifecycle(
    rng: random.Random,
    session: str,
    profile: str,
    run_id: str,
    max_updates: int,
    v3_share: float = 0.0,
) -> list[Command]:
    cart: list[CartItem] = []
    out: list[Command] = []
    step = 0

    def cmd(payload: Payload) -> None:
        nonlocal step
        out.append(
            Command(
                event_id=f"{run_id}:{session}:{step}",
                session_id=session,
                occurred_at_ms=0,
                payload=payload,
                source="talon-bridge-produce",
            )
        )
        step += 1

    for _ in range(rng.randint(1, max_updates)):
        sku, name, category, price = rng.choice(_CATALOG)
        cart = [
            *cart,
            CartItem(
                sku=sku,
                quantity=rng.randint(1, 3),
                price=price,
                name=name,
                category=category,
                attributes={"color": rng.choice(["red", "blue"])},
            ),
        ]
        cmd(
            UpdateCustomerSession(
                profile_id=profile,
                state="open",
                cart_items=cart,
                attributes={"channel": rng.choice(["web", "app", "store"])},
            )
        )
        if rng.random() < 0.3:
            cmd(_event(rng, profile, sku, v3_share))
    if rng.random() < 0.5:
        cmd(
            UpdateCustomerSession(
                profile_id=profile,
                state="open",
                cart_items=cart,
                coupon_codes=[rng.choice(_COUPONS)],
            )
        )
    if rng.random() < 0.1:
        cmd(UpdateCustomerSession(profile_id=profile, state="cancelled", cart_items=cart))
        return out
    cmd(
        UpdateCustomerSession(
            profile_id=profile,
            state="closed",
            cart_items=cart,
            additional_costs={"shipping": AdditionalCost(price=4.95)},
        )
    )
    if rng.random() < 0.2:
        pos = rng.randrange(len(cart))
        cmd(ReturnCartItems(returned_cart_items=[ReturnedCartItem(position=pos, quantity=1)]))
    return out


def generate(spec: LoadSpec) -> Iterator[Command]:
    """Interleaved commands of `spec.sessions` session lifecycles, in production order."""
    rng = random.Random(spec.seed)
    profiles = spec.profiles or max(1, spec.sessions * 3 // 4)
    # A window of concurrently active sessions, like a shop's open carts.
    pending = list(range(spec.sessions))
    active: list[list[Command]] = []
    window = max(1, min(spec.sessions, 2000))
    produced = 0
    while pending or active:
        while pending and len(active) < window:
            n = pending.pop(0)
            session = f"{spec.run_id}-s{n:07d}"
            profile = f"{spec.run_id}-p{rng.randrange(profiles):07d}"
            active.append(
                _lifecycle(
                    rng, session, profile, spec.run_id, spec.max_cart_updates, spec.events_v3
                )
            )
        i = rng.randrange(len(active))
        lifecycle = active[i]
        c = lifecycle.pop(0)
        if not lifecycle:
            active[i] = active[-1]
            active.pop()
        # occurredAt is when the command is handed to the producer (generation is lazy).
        now_ms = int(time.time() * 1000)
        yield Command(c.event_id, c.session_id, now_ms, c.payload, c.source, c.dry)
        produced += 1
        if spec.total is not None and produced >= spec.total:
            return


def produce_commands(
    conf: Mapping[str, Any],
    topic: str,
    commands: Iterator[Command],
    *,
    encode: Callable[[Command, str], bytes],
    rate: float | None = None,
    progress: bool = False,
    expected: int | None = None,
    linger_ms: int = 20,
    partitioner: Callable[[Command, int], int] | None = None,
) -> int:
    """Produce `commands` keyed by session ID; returns how many were acknowledged.

    `partitioner`, given a command and the topic's partition count, picks its partition
    (`bridge.routing.ProfileRouter.partition`); without one, the key's murmur2 does.
    """
    from bridge.kafka.config import LIBRDKAFKA_LOGGER
    from bridge.kafka.producer import new_producer, produce

    producer = new_producer(
        {
            **conf,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            "partitioner": "murmur2_random",
            "compression.type": "lz4",
            "logger": LIBRDKAFKA_LOGGER,
        },
    )
    partitions = _partition_count(producer, topic) if partitioner is not None else 0
    failures = 0

    def on_delivery(err: object, _msg: object) -> None:
        nonlocal failures
        if err is not None:
            failures += 1

    sent = 0
    started = time.monotonic()
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=False)
        bar.start()
        task = bar.add_task("producing", total=expected)
    try:
        for cmd in commands:
            value = encode(cmd, topic)
            produce(
                producer,
                topic,
                value=value,
                key=cmd.session_id.encode(),
                partition=partitioner(cmd, partitions) if partitioner is not None else None,
                on_delivery=on_delivery,
            )
            sent += 1
            if sent % 1000 == 0:
                producer.poll(0)
                if bar is not None:
                    bar.update(task, completed=sent)
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        remaining = producer.flush(60)
    finally:
        if bar is not None:
            bar.update(task, completed=sent)
            bar.stop()
    if remaining or failures:
        raise RuntimeError(f"{remaining + failures} records were not acknowledged")
    return sent


def _partition_count(producer: Any, topic: str) -> int:
    meta = producer.list_topics(topic, timeout=30).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise RuntimeError(f"topic {topic}: its partitions are unknown (does it exist?)")
    return len(meta.partitions)


def add_route_option(parser: argparse.ArgumentParser) -> None:
    """`--route-by`, shared with `talon-bridge send`."""
    parser.add_argument(
        "--route-by",
        choices=ROUTES,
        default="session",
        help="choose each record's partition by its session (Kafka's default for the key) or"
        " by its customer profile, so one customer's sessions share a partition; the key is"
        " the session ID either way (docs/producers.md)",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=1000, help="session lifecycles")
    parser.add_argument("--commands", type=int, default=None, help="stop after N commands")
    parser.add_argument("--profiles", type=int, default=None, help="distinct customer profiles")
    parser.add_argument("--rate", type=float, default=None, help="commands per second")
    parser.add_argument("--topic", default=None, help="default: first of BRIDGE_INPUT_TOPICS")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--run-id", default=None, help="prefix of session IDs and eventIds")
    parser.add_argument(
        "--events-v3",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share (0 to 1) of custom events sent as track_event_v3 (default: 0)",
    )
    parser.add_argument("--no-progress", action="store_true")
    add_route_option(parser)


def run(args: argparse.Namespace) -> int:
    from bridge.avro.codec import Codec
    from bridge.environment import load, warn_unknown
    from bridge.logs import configure_logging
    from bridge.routing import ProfileRouter
    from bridge.settings import KafkaSettings

    settings = load(KafkaSettings)
    configure_logging(settings.log_level, settings.log_format)
    warn_unknown()
    codec = Codec.from_settings(settings)
    topic = args.topic or settings.input_topics[0]
    spec = LoadSpec(
        sessions=args.sessions,
        total=args.commands,
        profiles=args.profiles,
        seed=args.seed,
        run_id=args.run_id or f"r{int(time.time())}",
        events_v3=args.events_v3,
    )
    started = time.monotonic()
    router = ProfileRouter() if args.route_by == "profile" else None
    try:
        sent = produce_commands(
            settings.librdkafka_common(),
            topic,
            generate(spec),
            encode=codec.encode_command,
            rate=args.rate,
            progress=not args.no_progress and sys.stderr.isatty(),
            expected=args.commands,
            partitioner=router.partition if router is not None else None,
        )
    finally:
        codec.close()  # its registry client's connections, with the confluent encoding
    elapsed = time.monotonic() - started
    print(f"produced {sent} commands to {topic} in {elapsed:.1f}s ({sent / elapsed:,.0f}/s)")
    return 0
