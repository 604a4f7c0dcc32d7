"""Dead letters written by hand, and `talon-bridge replay` run as a process, for replay tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from bridge.avro.codec import Codec
from bridge.commands import CartItem, Command, TrackEvent, UpdateCustomerSession
from bridge.dlq import DeadLetter, coordinates, dead_letter_headers

REPLAY = [sys.executable, "-m", "bridge", "replay"]


def replay_env(env: Mapping[str, str]) -> dict[str, str]:
    """The process environment for a replay: ours, minus stray BRIDGE_* settings, plus `env`."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
        "BRIDGE_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        **env,
    }


def run_replay(
    env: Mapping[str, str], *args: str, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`talon-bridge replay ARGS` as a subprocess with stdin not a terminal."""
    return subprocess.run(
        [*REPLAY, *args],
        env=replay_env(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_replay(env: Mapping[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*REPLAY, *args],
        env=replay_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def headers_of(msg: Any) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in (msg.headers() or [])}


def command(event_id: str, session: str, *, kind: str = "update") -> Command:
    payload: UpdateCustomerSession | TrackEvent
    if kind == "event":
        payload = TrackEvent(type="product_viewed", profile_id=f"p-{session}")
    else:
        payload = UpdateCustomerSession(
            profile_id=f"p-{session}",
            cart_items=[CartItem(sku="SKU-1", quantity=1, price=10.0)],
        )
    return Command(event_id, session, 1, payload)


@dataclass
class Letter:
    """A dead letter to write by hand, the way the worker would have written it."""

    session: str | None
    value: bytes
    reason: str = "permanent"
    error_class: str = "PermanentApiError"
    status: int | None = 400
    source: tuple[str, int, int] | None = None  # None: no __connect.errors.* headers
    behind: str | None = None  # poison coordinates, for a parked record
    partition: int = 0
    timestamp_ms: int | None = None
    extra: Sequence[tuple[str, bytes]] = ()

    @property
    def poison_ref(self) -> str:
        assert self.source is not None
        return coordinates(*self.source)

    def headers(self) -> list[tuple[str, bytes]]:
        topic, partition, offset = self.source or ("-", 0, 0)
        hs = dead_letter_headers(
            list(self.extra),
            DeadLetter(
                "parked" if self.behind else "api",
                self.error_class,
                self.reason,
                "dead-lettered for a test",
                http_status=self.status,
                parked_behind=self.behind,
            ),
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=0,
            group="talon-bridge",
            version="test",
        )
        if self.source is None:
            hs = [(k, v) for k, v in hs if not k.startswith("__connect.errors.")]
        return hs


def parked(poison: Letter, value: bytes, **fields: Any) -> Letter:
    """A record of `poison`'s session diverted behind it, the way the worker parks one."""
    return Letter(
        poison.session,
        value,
        reason="parked",
        error_class="SessionParked",
        status=None,
        behind=poison.poison_ref,
        partition=poison.partition,
        **fields,
    )


def encode(cmd: Command) -> bytes:
    return Codec().encode_command(cmd, "unused")


def write_letters(conf: Mapping[str, Any], topic: str, letters: Sequence[Letter]) -> None:
    p = Producer({**conf, "enable.idempotence": True})
    for lt in letters:
        kwargs: dict[str, Any] = {}
        if lt.timestamp_ms is not None:
            kwargs["timestamp"] = lt.timestamp_ms
        p.produce(
            topic,
            key=lt.session.encode() if lt.session is not None else None,
            value=lt.value,
            headers=[*lt.headers()],
            partition=lt.partition,
            **kwargs,
        )
    assert p.flush(30) == 0
