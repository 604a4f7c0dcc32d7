"""Exactly-once output: effects (and dead letters) committed with their source offsets.

In this mode a finished record's output is held, not sent. Every commit interval the outputs
of the records inside each partition's contiguous finished prefix are produced, in offset
order, inside one Kafka transaction together with those partitions' positions
(`send_offsets_to_transaction`). A read_committed consumer therefore sees a record's effects
if and only if its source offset is committed: a crash or a rebalance can make the bridge call
Talon.One again (the Idempotency-Key makes that harmless), never publish twice.
The price is latency: output appears at the next commit, up to BRIDGE_COMMIT_INTERVAL later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from bridge.errors import KafkaFatalError

__all__ = ["HeldOutput", "TransactionalOutput"]

log = logging.getLogger(__name__)

TP = tuple[str, int]
Headers = list[tuple[str, str | bytes | None]] | None


@dataclass(slots=True)
class HeldOutput:
    """The records one source record produces, waiting for its transaction."""

    offset: int
    records: list[tuple[str, bytes | None, bytes | None, Headers]] = field(default_factory=list)


class TransactionalOutput:
    """Holds outputs per source partition and commits them with offsets, one transaction
    per commit interval. Owned by the event loop; the blocking transaction calls run in a
    worker thread while the loop keeps calling Talon.One."""

    def __init__(
        self,
        producer: Producer,
        timeout: float = 30.0,
        on_abort: Callable[[str], None] | None = None,
    ) -> None:
        self._producer = producer
        self._on_abort = on_abort or (lambda cause: None)
        # Why the last commit aborted; None after one that went through.
        self.aborted: KafkaError | None = None
        self._timeout = timeout
        self._held: dict[TP, list[HeldOutput]] = {}
        # Outputs of records whose log was deleted or restarted: no offset can cover them.
        self._orphans: list[HeldOutput] = []
        self._committed: dict[TP, int] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._producer.init_transactions, self._timeout)
        self._producer.begin_transaction()

    def hold(self, tp: TP, output: HeldOutput) -> None:
        self._held.setdefault(tp, []).append(output)

    def forget(self, tps: Iterable[TP]) -> None:
        """Drop held outputs of partitions we no longer own: their next owner redoes them."""
        for tp in tps:
            self._held.pop(tp, None)
            self._committed.pop(tp, None)

    def orphan(self, tp: TP) -> None:
        """The partition's log is gone, so nobody will redo its records: what it holds goes
        out with the next transaction, with no offset of the new log."""
        self._orphans.extend(self._held.pop(tp, ()))
        self._committed.pop(tp, None)

    def hold_orphan(self, output: HeldOutput) -> None:
        """The output of a record that finished after its log was gone."""
        self._orphans.append(output)

    async def commit(self, positions: dict[TP, int], group_metadata: Any) -> bool:
        """Send what `positions` cover and commit it with them; False if nothing was due,
        or if the transaction aborted (then `aborted` says why)."""
        async with self._lock:
            self.aborted = None
            due: list[tuple[TP, HeldOutput]] = []
            for tp, outputs in self._held.items():
                pos = positions.get(tp)
                if pos is None:
                    continue
                due.extend((tp, o) for o in outputs if o.offset < pos)
            changed = {tp: p for tp, p in positions.items() if self._committed.get(tp) != p}
            orphans = list(self._orphans)
            if not due and not changed and not orphans:
                return False
            due.sort(key=lambda item: (item[0], item[1].offset))
            for output in [*orphans, *(o for _, o in due)]:
                for topic, key, value, headers in output.records:
                    self._send(topic, key, value, headers)
            offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, self._commit_sync, offsets, group_metadata)
            except KafkaException as exc:
                err = exc.args[0]
                if err.fatal():
                    raise KafkaFatalError(f"transaction: {err}") from exc
                # Abortable or timed out: abort, keep everything held, try again next time.
                log.warning(
                    "transaction aborted; its outputs will be sent again",
                    extra={"error": str(err), "cause": err.name()},
                )
                self.aborted = err
                self._on_abort(err.name())
                await loop.run_in_executor(None, self._abort_sync)
                return False
            del self._orphans[: len(orphans)]
            sent = {id(o) for _, o in due}
            for tp in list(self._held):
                kept = [o for o in self._held[tp] if id(o) not in sent]
                if kept:
                    self._held[tp] = kept
                else:
                    del self._held[tp]
            self._committed.update(positions)
            return True

    def _send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers)
                return
            except BufferError:
                self._producer.poll(0.01)

    def _commit_sync(self, offsets: list[TopicPartition], group_metadata: Any) -> None:
        if offsets:
            self._producer.send_offsets_to_transaction(offsets, group_metadata, self._timeout)
        self._producer.commit_transaction(self._timeout)
        self._producer.begin_transaction()

    def _abort_sync(self) -> None:
        try:
            self._producer.abort_transaction(self._timeout)
        finally:
            self._producer.begin_transaction()
