"""One bridge deployment under test: its topics and the worker's settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.avro.codec import Codec
from bridge.commands import Command
from bridge.tools.produce import produce_commands

# The simulator's key in the integration tests.
API_KEY = "it-api-key-5f1e"


@dataclass
class Bridge:
    """Topics and settings of one bridge deployment under test."""

    bootstrap: str
    env: dict[str, str]
    input: str
    output: str
    dlq: str
    parking: str
    group: str
    partitions: int

    @property
    def conf(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap}

    def produce(self, commands: list[Command]) -> int:
        return produce_commands(
            self.conf, self.input, iter(commands), encode=Codec().encode_command
        )

    def produce_raw(self, records: list[tuple[bytes | None, bytes | None]]) -> None:
        from confluent_kafka import Producer

        p = Producer({**self.conf, "enable.idempotence": True})
        for key, value in records:
            p.produce(self.input, key=key, value=value)
        assert p.flush(30) == 0
