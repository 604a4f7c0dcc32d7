"""Exactly-once output when a source partition's log is deleted or restarted."""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from bridge.kafka.delivery import Transactions
from bridge.worker.output import HeldOutput, TransactionalOutput

TP = ("orders", 0)


class FakeProducer:
    """Records what a transactional producer is asked to do."""

    def __init__(self) -> None:
        self.sent: list[bytes | None] = []
        self.offsets: list[list[Any]] = []
        self.fail_next_commit = False

    def produce(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Any = None
    ) -> None:
        self.sent.append(value)

    def poll(self, timeout: float) -> int:
        return 0

    def send_offsets_to_transaction(self, offsets: list[Any], metadata: Any, t: float) -> None:
        self.offsets.append(offsets)

    def commit_transaction(self, timeout: float) -> None:
        if self.fail_next_commit:
            self.fail_next_commit = False
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))

    def begin_transaction(self) -> None:
        pass

    def abort_transaction(self, timeout: float) -> None:
        self.sent.clear()


def _output(offset: int) -> HeldOutput:
    return HeldOutput(offset, [("effects", b"k", f"effects of {offset}".encode(), None)])


def test_outputs_of_a_gone_log_go_out_with_the_next_transaction_without_offsets() -> None:
    producer = FakeProducer()
    txn = TransactionalOutput(Transactions(producer))  # type: ignore[arg-type]

    async def run() -> None:
        txn.hold(TP, _output(7))
        txn.hold(TP, _output(8))
        txn.orphan(TP)  # the topic was deleted before a position covered them
        txn.hold_orphan(_output(9))  # finished afterwards
        producer.fail_next_commit = True
        assert not await txn.commit({}, None), "an aborted transaction keeps its outputs"
        assert await txn.commit({}, None)
        assert producer.sent == [b"effects of 7", b"effects of 8", b"effects of 9"]
        # The new log's first position covers nothing of the old one.
        txn.hold(TP, _output(0))
        assert await txn.commit({TP: 1}, None)
        assert producer.sent[3:] == [b"effects of 0"]
        assert not await txn.commit({TP: 1}, None)

    asyncio.run(run())


def test_held_outputs_of_forgotten_partitions_are_never_sent() -> None:
    producer = FakeProducer()
    txn = TransactionalOutput(Transactions(producer))  # type: ignore[arg-type]

    async def run() -> None:
        txn.hold(TP, _output(3))
        txn.forget([TP])  # revoked or lost: the next owner redoes record 3
        assert await txn.commit({TP: 10}, None)
        assert producer.sent == []

    asyncio.run(run())
