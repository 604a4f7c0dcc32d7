"""Where a record's outputs go: produced at once (at least once), or held for a transaction.

**At least once** (the default): each output is produced at once; a record is finished when
every output it sent is acknowledged. A failed delivery is sent again, so the record's offset
stays uncommitted until it goes through.

**Exactly once**: a finished record's output is held, not sent. Every commit interval the
outputs of the records inside each partition's contiguous finished prefix are produced, in
offset order, inside one Kafka transaction together with those partitions' positions
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

from bridge.dlq import H_OMITTED, Letter, header, smaller_letter
from bridge.errors import KafkaFatalError, OutputTooLargeError, ProducerFatalError
from bridge.kafka.delivery import (
    Delivered,
    DeliveryError,
    OutputHeaders,
    Sender,
    TransactionError,
    Transactions,
)
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.types import TP, DeliveryKind
from bridge.worker.work import State, Work

__all__ = ["AtLeastOnce", "ExactlyOnce", "HeldOutput", "TransactionalOutput"]

log = logging.getLogger(__name__)
# Every held record fails alike while a topic or the cluster is unavailable; thinned by
# RepeatFilter to one line per topic and error each 30 s. The name predates this module.
delivery_errors = logging.getLogger("bridge.worker.root.delivery")

Complete = Callable[[Work], None]
# An applied record whose effects record its topic refused as too large: (work, why, bytes).
Refused = Callable[[Work, str, int], None]


class AtLeastOnce:
    """Produces each output at once; completes a record once all of them are acknowledged."""

    def __init__(
        self,
        sender: Sender,
        settings: Settings,
        metrics: Metrics,
        complete: Complete,
        on_fatal: Callable[[KafkaFatalError], None],
        on_refused: Refused,
        resend_after: float = 1.0,
    ) -> None:
        self._sender = sender
        self._on_refused = on_refused
        self._output_topic = settings.output_topic
        self._resend_after = resend_after
        self._complete = complete
        self._on_fatal = on_fatal
        self._metrics = metrics
        self._kinds: dict[str, DeliveryKind] = {
            settings.dlq_topic: "dlq",
            settings.parking_topic: "parking",
        }
        self._dlq_topic = settings.dlq_topic
        self._parking_topic = settings.parking_topic

    def _smaller_letter(self, work: Work, letter: Letter) -> Letter | None:
        """A dead letter the topic refused as too large, in its next smaller form: sent
        again whole it would be refused for good, and hold its partition."""
        smaller = smaller_letter(letter, work.rec.wire_size)
        if smaller is not None:
            log.error(
                "dead letter too large for its topic; sent again without what it can leave out",
                extra={**work.log_extra(), "omitted": header(smaller[2], H_OMITTED)},
            )
            if header(letter[2], H_OMITTED) is None:
                self._metrics.dead_letters_value_omitted.inc()
        return smaller

    def send(
        self,
        work: Work,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: OutputHeaders | None = None,
    ) -> None:
        if topic == self._parking_topic and self._sender.over_limit(topic, key, value, headers):
            # Checked as sent: a parking record refused at delivery would be sent again for
            # good. Parking records are few, so only they pay for counting their size.
            raise OutputTooLargeError(f"over {topic}'s max.message.bytes")
        work.pending += 1
        try:
            self._sender.send(topic, key, value, headers, (work, topic, key, value, headers))
        except OutputTooLargeError:
            work.pending -= 1
            raise

    def finish(self, work: Work) -> None:
        # What it did produce (a parking record) may still await its acknowledgement.
        if work.pending == 0:
            self._complete(work)

    def forget(self, partitions: Iterable[TP]) -> None:
        pass  # nothing held: what was sent stays sent

    def orphan(self, tp: TP) -> None:
        pass

    def delivered(self, batch: list[Delivered]) -> None:
        for token, err in batch:
            work = token[0]
            if err is not None:
                self._failed(token, err)
                continue
            work.pending -= 1
            # A parking record written before the API call is acknowledged first; the record
            # finishes with the call's own outputs.
            if work.pending == 0 and work.state is State.PRODUCING:
                self._complete(work)

    def _failed(self, token: tuple[Any, ...], err: DeliveryError) -> None:
        work, topic, key, value, headers = token
        work.pending -= 1  # sent again below
        if (
            err.too_large
            and topic == self._output_topic
            and self._sender.over_limit(topic, key, value, headers)
        ):
            # Sent again it would be refused for good, and hold its partition.
            self._on_refused(work, err.reason, len(value or b""))
            return
        self._metrics.delivery_failures.labels(self._kinds.get(topic, "effects")).inc()
        delivery_errors.error(
            "producer could not deliver to %s: %s; sending again",
            topic,
            err.reason,
            extra={**work.log_extra(), "topic": topic, "error": err.detail},
        )
        if err.fatal:
            self._on_fatal(ProducerFatalError(f"producer: {err.detail}"))
            return
        if err.too_large and topic == self._dlq_topic:
            smaller = self._smaller_letter(work, (key, value, headers))
            if smaller is not None:
                key, value, headers = smaller
        # The offset stays uncommitted until a send succeeds, so nothing is lost either way.
        asyncio.get_running_loop().call_later(
            self._resend_after, self.send, work, topic, key, value, headers
        )


class ExactlyOnce:
    """Holds a record's outputs; the record is finished once they are handed to the next
    transaction, which commits them with its offset."""

    def __init__(self, txn: TransactionalOutput, complete: Complete) -> None:
        self.txn = txn
        self._complete = complete

    def send(
        self,
        work: Work,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: OutputHeaders | None = None,
    ) -> None:
        self.txn.check(topic, key, value, headers)
        if work.held is None:
            work.held = HeldOutput(work.rec.offset)
        if work.state is State.PRODUCING:
            # Once every output of this step is collected, the record counts as finished:
            # its outputs are committed in the same transaction as its offset. (A parking
            # record written before the API call waits for the call's own outputs.)
            asyncio.get_running_loop().call_soon(self._hand_over, work)
        work.held.records.append((topic, key, value, headers))

    def finish(self, work: Work) -> None:
        if work.held is not None:
            asyncio.get_running_loop().call_soon(self._hand_over, work)
        elif work.pending == 0:
            self._complete(work)

    def forget(self, partitions: Iterable[TP]) -> None:
        self.txn.forget(partitions)

    def orphan(self, tp: TP) -> None:
        self.txn.orphan(tp)

    def _hand_over(self, work: Work) -> None:
        if work.held is None:
            return
        if work.slot.tracked:
            self.txn.hold(work.tp, work.held)
        elif work.slot.log_gone:
            self.txn.hold_orphan(work.held)
        work.held = None
        self._complete(work)


@dataclass(slots=True)
class HeldOutput:
    """The records one source record produces, waiting for its transaction."""

    offset: int
    records: list[tuple[str, bytes | None, bytes | None, OutputHeaders | None]] = field(
        default_factory=list
    )


class TransactionalOutput:
    """Holds outputs per source partition and commits them with offsets, one transaction
    per commit interval. Owned by the event loop; the blocking transaction calls run in a
    worker thread while the loop keeps calling Talon.One."""

    def __init__(
        self,
        transactions: Transactions,
        on_abort: Callable[[str], None] | None = None,
    ) -> None:
        self._kafka = transactions
        self._on_abort = on_abort or (lambda cause: None)
        # Why the last commit aborted; None after one that went through.
        self.aborted: TransactionError | None = None
        self._held: dict[TP, list[HeldOutput]] = {}
        # Outputs of records whose log was deleted or restarted: no offset can cover them.
        self._orphans: list[HeldOutput] = []
        self._committed: dict[TP, int] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._kafka.start)

    def check(
        self, topic: str, key: bytes | None, value: bytes | None, headers: OutputHeaders | None
    ) -> None:
        """Raises `OutputTooLargeError` for a record the producer or `topic` would refuse."""
        self._kafka.check(topic, key, value, headers)

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
        or if the transaction aborted (then `aborted` says why). Raises `KafkaFatalError`."""
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
                    self._kafka.send(topic, key, value, headers)
            loop = asyncio.get_running_loop()
            err = await loop.run_in_executor(None, self._kafka.commit, positions, group_metadata)
            if err is not None:
                # Abortable or timed out: abort, keep everything held, try again next time.
                log.warning(
                    "transaction aborted; its outputs will be sent again",
                    extra={"error": str(err), "cause": err.name()},
                )
                self.aborted = err
                self._on_abort(err.name())
                await loop.run_in_executor(None, self._kafka.abort)
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
