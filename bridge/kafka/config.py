"""Client configuration: the properties every client of the bridge gets, and `new_client`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException

from bridge.errors import ConfigError
from bridge.kafka.codes import INVALID_ARG
from bridge.settings import KafkaSettings

__all__ = [
    "DEFAULT_MESSAGE_MAX_BYTES",
    "LIBRDKAFKA_LOGGER",
    "blame_consumer_config",
    "client_errors",
    "consumer_config",
    "message_max_bytes",
    "new_client",
    "new_producer_client",
    "producer_config",
]

C = TypeVar("C")

# The clients' error callbacks: while a broker is down they fire for every reconnection
# attempt, so logging holds repeats back (see `bridge.logs.RepeatFilter`). Operators filter
# on this name (docs/operations.md), so it stays as it was before the package split.
client_errors = logging.getLogger("bridge.kafka.clients.errors")

# librdkafka's own lines (connection failures, broker errors) go through Python logging, so
# they come out as JSON like every other line. The client hands them over on the thread that
# polls it: every client given this logger must be polled or consumed from continuously.
LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")

_SHARED_SETTING = "BRIDGE_KAFKA_CONFIG"
_PRODUCER_SETTING = "BRIDGE_KAFKA_PRODUCER_CONFIG"
_CONSUMER_SETTING = "BRIDGE_KAFKA_CONSUMER_CONFIG"

# Properties correctness depends on; they win over the pass-through.
_CONSUMER_ENFORCED: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "partition.assignment.strategy": "cooperative-sticky",
    "logger": LIBRDKAFKA_LOGGER,
}
_CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "max.poll.interval.ms": 300_000,
    "session.timeout.ms": 45_000,
    # Bounds librdkafka's prefetch so memory stays flat with a huge backlog.
    "queued.max.messages.kbytes": 16_384,
    "fetch.max.bytes": 16_777_216,
    "statistics.interval.ms": 15_000,
}
_PRODUCER_ENFORCED: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "logger": LIBRDKAFKA_LOGGER,
}
_PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "compression.type": "lz4",
    "delivery.timeout.ms": 120_000,
}


def new_client(
    factory: Callable[[dict[str, Any]], C],
    conf: dict[str, Any],
    setting: str = _SHARED_SETTING,
    blame: Callable[[ConfigError], ConfigError] = lambda exc: exc,
) -> C:
    """`factory(conf)`; librdkafka refusing a property is a configuration error.

    Our own properties are fixed and valid, so a refused one came in through the pass-through
    (`setting`, or the one `blame` finds), and the CLI says so instead of printing a traceback.
    """
    try:
        return factory(conf)
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() == INVALID_ARG:
            raise blame(ConfigError(setting, error.str())) from exc
        raise


# With the `consumer` group protocol (KIP-848) the broker assigns partitions and sets the
# session timeout; librdkafka refuses these client-side properties.
_CLASSIC_ONLY = ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms")


def consumer_config(settings: KafkaSettings, *, own: bool = True, **extra: Any) -> dict[str, Any]:
    """The worker's input consumer's properties; `own`: with BRIDGE_KAFKA_CONSUMER_CONFIG."""
    conf = {**_CONSUMER_DEFAULTS, **settings.librdkafka_common(consumer=own), **extra}
    conf["group.id"] = settings.group_id
    conf["group.protocol"] = settings.group_protocol
    if settings.group_instance_id is not None:
        # A static member sends no leave on close: its partitions wait for it to come back
        # (both protocols; KIP-848 keeps them under the id with member epoch -2).
        conf["group.instance.id"] = settings.group_instance_id
    conf.update(_CONSUMER_ENFORCED)
    if settings.group_protocol == "consumer":
        for name in _CLASSIC_ONLY:
            conf.pop(name, None)
    return conf


def producer_config(settings: KafkaSettings, *, own: bool = True, **extra: Any) -> dict[str, Any]:
    """The producers' properties; `own`: with BRIDGE_KAFKA_PRODUCER_CONFIG."""
    conf = {**_PRODUCER_DEFAULTS, **settings.librdkafka_common(producer=own), **extra}
    conf.update(_PRODUCER_ENFORCED)
    return conf


def _blame(
    exc: ConfigError,
    factory: Callable[[dict[str, Any]], Any],
    without_own: dict[str, Any],
    own: dict[str, Any],
    setting: str,
) -> ConfigError:
    """`exc` (a property librdkafka refused) blaming `setting`, the client's own
    pass-through `own`, if the client takes its properties without it."""
    if not own:
        return exc
    try:
        spare = new_client(factory, without_own)
    except ConfigError:
        return exc
    if isinstance(spare, Consumer):
        spare.close()  # it holds librdkafka's threads until closed
    return ConfigError(setting, exc.reason)


def new_producer_client(
    factory: Callable[[dict[str, Any]], C], settings: KafkaSettings, **extra: Any
) -> C:
    """A producer for `settings`; a property librdkafka refuses names the pass-through it
    came from (the producer's own, if the shared one alone is taken)."""

    def blame(exc: ConfigError) -> ConfigError:
        without = producer_config(settings, own=False, **extra)
        return _blame(exc, factory, without, settings.kafka_producer_config, _PRODUCER_SETTING)

    return new_client(factory, producer_config(settings, **extra), blame=blame)


def blame_consumer_config(exc: ConfigError, settings: KafkaSettings) -> ConfigError:
    """`exc`, raised building a consumer from `consumer_config(settings)`, naming the
    pass-through the refused property came from."""
    without = consumer_config(settings, own=False)
    return _blame(exc, Consumer, without, settings.kafka_consumer_config, _CONSUMER_SETTING)


# librdkafka's default message.max.bytes.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000


def message_max_bytes(settings: KafkaSettings) -> int:
    """The largest record the worker's producer takes (its message.max.bytes)."""
    value = producer_config(settings).get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES)
    return int(value)
