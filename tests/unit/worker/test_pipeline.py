"""The pipeline without a broker: a fake `Output` and a Talon client on a mock transport.

Retry and gate delays are a few milliseconds (settings), so nothing waits on the wall clock.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from bridge.avro.codec import Codec
from bridge.commands import Command, UpdateCustomerSession
from bridge.dlq import (
    H_OMITTED,
    H_ORIGINAL_BYTES,
    H_PARKED_POSITION,
    H_REASON,
    DeadLetter,
    header,
    record_letter_headers,
    smaller_letters,
)
from bridge.engine.pacing import Pacer
from bridge.errors import KafkaFatalError, OutputTooLargeError, ProducerFatalError, ServerError
from bridge.kafka.delivery import BATCH_OVERHEAD, Delivered, DeliveryError, Transactions
from bridge.kafka.producer import wire_size
from bridge.kafka.records import InputRecord
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.talon import EVENT_ID_HEADER, TalonClient
from bridge.talon.transports.base import Answer, Request
from bridge.talon.transports.mock import MockTransport, answer
from bridge.types import TP
from bridge.worker.handlers import Handlers
from bridge.worker.output import AtLeastOnce, ExactlyOnce, TransactionalOutput
from bridge.worker.parking import ParkedSession, encode_parked
from bridge.worker.pipeline import Pipeline
from bridge.worker.rebalance import Rebalance
from bridge.worker.work import Output, OutputHeaders, State, Work

CODEC = Codec()
PART: TP = ("in", 0)
OK = {"effects": [], "createdCoupons": [], "createdReferrals": []}
BAD_REQUEST = {"message": "The submitted data was invalid", "errors": []}
UNAUTHORIZED = {"message": "Unauthorized - Invalid API key", "StatusCode": 401}


class FakeOutput:
    """Records every output; acknowledges each on the next loop turn."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.sent: list[tuple[str, bytes | None, bytes | None, OutputHeaders | None]] = []
        self.forgotten: list[TP] = []
        self.orphaned: list[TP] = []

    def send(
        self,
        work: Work,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: OutputHeaders | None = None,
    ) -> None:
        self.sent.append((topic, key, value, headers))
        work.pending += 1
        asyncio.get_running_loop().call_soon(self._ack, work)

    def _ack(self, work: Work) -> None:
        work.pending -= 1
        if work.pending == 0 and work.state is State.PRODUCING:
            self.pipeline.complete(work)

    def finish(self, work: Work) -> None:
        if work.pending == 0:
            self.pipeline.complete(work)

    def forget(self, partitions: Iterable[TP]) -> None:
        self.forgotten.extend(partitions)

    def orphan(self, tp: TP) -> None:
        self.orphaned.append(tp)

    def on(self, topic: str) -> list[tuple[bytes | None, bytes | None, OutputHeaders | None]]:
        return [(k, v, h) for t, k, v, h in self.sent if t == topic]


class Talon:
    """Answers per session from a script of statuses (200 when it runs out), and journals
    the event IDs it applied, per session."""

    def __init__(
        self,
        script: dict[str, list[int]] | None = None,
        delay: float = 0.0,
        effects: list[dict[str, Any]] | None = None,
    ) -> None:
        self.ok = {**OK, "effects": effects or []}
        self.script = defaultdict(list, script or {})
        self.delay = delay
        self.applied: dict[str, list[str]] = defaultdict(list)
        self.calls: list[str] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self.peak = 0  # most calls at once
        self.down = False  # every call answers 503
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, request: Request) -> Answer:
        session = request.url.split("?", 1)[0].rsplit("/", 1)[-1]
        event_id = dict(request.headers)[EVENT_ID_HEADER]
        self.calls.append(event_id)
        if session in self.running:
            self.overlaps += 1
        self.running.add(session)
        self.peak = max(self.peak, len(self.running))
        try:
            await asyncio.sleep(self.delay)
            await self.release.wait()
        finally:
            self.running.discard(session)
        status = self.script[session].pop(0) if self.script[session] else 200
        if self.down:
            status = 503
        if status == 200:
            self.applied[session].append(event_id)
            return answer(200, json=self.ok)
        body = {400: BAD_REQUEST, 401: UNAUTHORIZED}.get(status, {"message": "no"})
        return answer(status, json=body)


def _settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "kafka_bootstrap_servers": "127.0.0.1:1",
        "input_topics": ["in"],
        "talon_base_url": "https://talon.test",
        "talon_api_key": "k",
        "retry_base_delay": 0.001,
        "retry_max_delay": 0.002,
    }
    return Settings(**{**base, **kw})


def _record(offset: int, session: str, event_id: str, **kw: Any) -> InputRecord:
    cmd = Command(event_id, session, 1, UpdateCustomerSession(profile_id="p"))
    value = kw.pop("value", None) or CODEC.encode_command(cmd, "in")
    return InputRecord("in", 0, offset, session.encode(), value, kw.pop("headers", None), 0)


class Rig:
    def __init__(
        self,
        talon: Talon,
        servers: int = 4,
        output: Callable[[Pipeline, Settings, Metrics], Output] | None = None,
        **settings: Any,
    ) -> None:
        self.talon = talon
        self.client = TalonClient("https://talon.test", "k", transport=MockTransport(talon))
        self.metrics = Metrics()
        self.settings = _settings(**settings)
        self.pipeline = Pipeline(
            self.settings,
            codec=CODEC,
            handlers=Handlers(self.client),
            metrics=self.metrics,
        )
        self.output = FakeOutput(self.pipeline)
        self.pipeline.output = (
            self.output if output is None else output(self.pipeline, self.settings, self.metrics)
        )
        self.pipeline.assigned.add(PART)
        self.rebalance = Rebalance(self.pipeline, self.metrics)
        self._servers = [asyncio.create_task(self.pipeline.serve()) for _ in range(servers)]

    async def until(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.001)

    async def finished(self, n: int) -> None:
        """Until the first `n` offsets are finished."""
        await self.until(lambda: self.pipeline.offsets.position(PART) == n)

    async def close(self) -> None:
        for task in self._servers:
            task.cancel()
        await asyncio.gather(*self._servers, return_exceptions=True)
        await self.client.aclose()

    def dlq(self) -> list[tuple[bytes | None, bytes | None, OutputHeaders | None]]:
        return self.output.on(self.settings.dlq_topic)

    def parking(self) -> list[tuple[bytes | None, bytes | None, OutputHeaders | None]]:
        return self.output.on(self.settings.parking_topic)

    def effects(self) -> list[tuple[bytes | None, bytes | None, OutputHeaders | None]]:
        return self.output.on(self.settings.output_topic)

    def reasons(self) -> list[str | None]:
        return [header(h, H_REASON) for _, _, h in self.dlq()]

    def metric(self, name: str, **labels: str) -> float:
        if name.startswith("bridge_api_"):
            labels.setdefault("application", "default")
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def total(self, name: str) -> float:
        return sum(
            s.value
            for family in self.metrics.registry.collect()
            for s in family.samples
            if s.name == name
        )


async def test_sessions_run_in_order_one_call_at_a_time_and_all_offsets_finish() -> None:
    rig = Rig(Talon(delay=0.001))
    records = [_record(i, f"s-{i % 3}", f"e-{i}") for i in range(30)]
    rig.pipeline.on_batch(records)
    await rig.finished(30)
    for s in range(3):
        assert rig.talon.applied[f"s-{s}"] == [f"e-{i}" for i in range(s, 30, 3)]
    assert rig.talon.overlaps == 0, "a session never has two calls at once"
    effects = [CODEC.decode_effects(v) for _, v, _ in rig.effects()]
    for s in range(3):
        mine = [e.source_offset for e in effects if e.session_id == f"s-{s}"]
        assert mine == sorted(mine), "effects of a session are produced in call order"
    assert rig.pipeline.offsets.commit_positions() == {PART: 30}
    assert rig.pipeline.buffered == 0 and rig.pipeline.released == 30
    await rig.close()


def _effect(effect_type: str, value: int) -> dict[str, Any]:
    return {
        "campaignId": 12,
        "rulesetId": 34,
        "ruleIndex": 0,
        "ruleName": "rule",
        "effectType": effect_type,
        "props": {"name": f"off#{value}", "value": value},
    }


# An effects record of about 2 KB.
_MANY_EFFECTS = [_effect("setDiscount", n) for n in range(20)]


async def test_published_effects_are_counted_by_type() -> None:
    kinds = ["setDiscount", "addLoyaltyPoints", "setDiscount"]
    rig = Rig(Talon(effects=[_effect(k, n) for n, k in enumerate(kinds)]))
    rig.pipeline.on_batch([_record(i, f"s-{i}", f"e-{i}") for i in range(4)])
    await rig.finished(4)
    assert rig.metric("bridge_effects_published_total", effect_type="setDiscount") == 8.0
    assert rig.metric("bridge_effects_published_total", effect_type="addLoyaltyPoints") == 4.0
    await rig.close()


@pytest.mark.parametrize("adaptive", [False, True])
async def test_servers_keep_under_the_adaptive_in_flight_limit(adaptive: bool) -> None:
    rig = Rig(Talon(delay=0.005), servers=16, max_in_flight=16, adaptive_in_flight=adaptive)
    # No slow start: servers go at once.
    rig.pipeline.admission.pacer = rig.pipeline.applications["default"].pacer = Pacer(initial=None)
    limit = rig.pipeline.admission.limit
    if adaptive:
        assert limit is not None
        for i in range(400):  # answers of a throttling API: down to the floor
            limit.on_answer(float(i), i - 0.5, dropped=True, in_use=16)
        assert limit.limit == limit.floor == 4
    rig.pipeline.on_batch([_record(i, f"s-{i}", f"e-{i}") for i in range(32)])
    await rig.finished(32)
    # Healthy answers let it grow a step or two meanwhile, never to the 16 servers.
    assert rig.talon.peak <= 6 if adaptive else rig.talon.peak == 16
    await rig.close()


async def test_a_failing_call_is_retried_holding_its_session_only() -> None:
    rig = Rig(Talon({"s-1": [503, 409, 500]}))
    rig.pipeline.on_batch([_record(0, "s-1", "e-0"), _record(1, "s-2", "e-1")])
    rig.pipeline.on_batch([_record(2, "s-1", "e-2")])
    await rig.finished(3)
    assert rig.talon.applied == {"s-1": ["e-0", "e-2"], "s-2": ["e-1"]}
    assert rig.talon.calls.index("e-1") < rig.talon.calls.index("e-2")
    assert rig.dlq() == []
    assert rig.total("bridge_commands_retried_total") == 3
    await rig.close()


async def test_retries_run_out_into_a_dead_letter() -> None:
    rig = Rig(Talon({"s-1": [503] * 5}), retry_max_attempts=2, on_poison="skip")
    rig.pipeline.on_batch([_record(0, "s-1", "e-0"), _record(1, "s-1", "e-1")])
    await rig.finished(2)
    assert rig.reasons() == ["retries-exhausted"] * 2, "skip: the next command runs"
    assert rig.talon.calls == ["e-0", "e-0", "e-1", "e-1"]
    await rig.close()


async def test_a_dead_letter_parks_its_session_and_diverts_what_follows_in_order() -> None:
    rig = Rig(Talon({"s-1": [400]}))
    rig.pipeline.on_batch(
        [
            _record(0, "s-1", "e-0"),
            _record(1, "s-2", "e-1"),
            _record(2, "s-1", "e-2"),
            _record(3, "s-1", "e-3"),
        ]
    )
    await rig.finished(4)
    assert rig.talon.applied == {"s-2": ["e-1"]}
    assert rig.reasons() == ["permanent", "parked", "parked"]
    positions = [header(h, H_PARKED_POSITION) for _, _, h in rig.dlq()]
    assert positions == ["0", "1", "2"]
    parked = rig.pipeline.parking.get(b"s-1")
    assert parked is not None and (parked.size, parked.next) == (3, 0)
    assert len(rig.parking()) == 3, "parked, then grown twice"
    await rig.close()


async def test_a_records_proof_lets_the_chains_next_record_run_and_the_last_releases() -> None:
    rig = Rig(Talon())
    chain = ParkedSession.new("in/0/0", "permanent", "e-0")
    grown = chain.appended()
    rig.pipeline.apply_parking([(b"s-1", encode_parked(grown))])

    def replayed(offset: int, position: int, was: int) -> InputRecord:
        rec = _record(offset, "s-1", f"e-{was}")
        token = grown.token(position, f"in/0/{was}", rec.value)
        rec.headers = [
            ("__talon.bridge.replay.of", f"in/0/{was}".encode()),
            ("__talon.bridge.replay.position", str(position).encode()),
            ("__talon.bridge.replay.token", token.encode()),
        ]
        return rec

    rig.pipeline.on_batch([replayed(10, 0, 0), _record(11, "s-1", "e-live")])
    rig.pipeline.on_batch([replayed(12, 1, 2)])
    await rig.finished(13)
    assert rig.talon.applied["s-1"] == ["e-0", "e-2"]
    assert rig.reasons() == ["parked"], "the live command goes behind the chain"
    # It was diverted at the chain's end (position 2), so the chain is not back yet.
    parked = rig.pipeline.parking.get(b"s-1")
    assert parked is not None and (parked.size, parked.next) == (3, 2)
    await rig.close()


async def test_an_undecodable_record_is_dead_lettered_in_its_place() -> None:
    rig = Rig(Talon(), on_poison="skip")
    rig.pipeline.on_batch([_record(0, "s-1", "e-0", value=b"\x00junk"), _record(1, "s-1", "e-1")])
    await rig.finished(2)
    assert rig.reasons() and rig.reasons()[0] not in (None, "permanent")
    assert rig.talon.applied == {"s-1": ["e-1"]}
    await rig.close()


async def test_a_rejected_key_holds_everything_without_dead_letters_until_it_is_accepted() -> None:
    talon = Talon({"s-1": [401, 401]})
    rig = Rig(talon)
    rig.pipeline.on_batch([_record(0, "s-1", "e-0"), _record(1, "s-2", "e-1")])
    await rig.until(lambda: rig.pipeline.gate.auth_rejected)
    await rig.finished(2)
    assert rig.dlq() == []
    assert not rig.pipeline.gate.auth_rejected and rig.pipeline.gatekeeper.is_open
    assert rig.talon.applied == {"s-1": ["e-0"], "s-2": ["e-1"]}
    await rig.close()


async def test_an_outage_closes_the_gate_and_spends_no_retry_budget() -> None:
    sessions = [f"s-{i}" for i in range(12)]
    talon = Talon(delay=0.002)
    talon.down = True
    # Retries wait longer than the twelve answers take to arrive, which close the gate.
    rig = Rig(talon, servers=16, retry_max_attempts=2, retry_base_delay=0.05, retry_max_delay=0.05)
    rig.pipeline.on_batch([_record(i, s, f"e-{i}") for i, s in enumerate(sessions)])
    await rig.until(lambda: rig.metric("bridge_api_outage") == 1.0)
    await rig.until(lambda: len(talon.calls) >= 30)  # probes go on
    talon.down = False
    await rig.finished(12)
    assert rig.dlq() == [], "many failures each, two attempts: held, not spent"
    assert rig.metric("bridge_api_outage") == 0.0, "cleared by the first success"
    assert sorted(talon.applied) == sorted(sessions)
    await rig.close()


async def test_a_graceful_drain_finishes_what_was_read() -> None:
    rig = Rig(Talon(delay=0.002), servers=1)
    rig.pipeline.on_batch([_record(i, "s-1", f"e-{i}") for i in range(5)])
    positions = await rig.rebalance.drain([PART], timeout=2.0)
    assert positions == {PART: 5}
    rig.rebalance.release([PART], 0)
    assert PART not in rig.pipeline.assigned
    assert rig.output.forgotten == [PART]
    await rig.close()


async def test_a_drain_past_its_deadline_drops_what_has_not_started() -> None:
    talon = Talon()
    talon.release.clear()  # the first call hangs
    rig = Rig(talon, servers=1)
    rig.pipeline.on_batch([_record(i, "s-1", f"e-{i}") for i in range(3)])
    await rig.until(lambda: talon.calls == ["e-0"])
    positions = await rig.rebalance.drain([PART], timeout=0.05)
    assert positions == {PART: 0}, "nothing finished: the next owner reads all three again"
    assert rig.pipeline.buffered == 1 and rig.pipeline.released == 2
    talon.release.set()
    await rig.until(lambda: rig.pipeline.buffered == 0)
    assert talon.calls == ["e-0"], "the dropped records never run"
    await rig.close()


async def test_records_of_a_lost_partition_are_dropped_and_not_read_again_here() -> None:
    talon = Talon()
    talon.release.clear()
    rig = Rig(talon, servers=1)
    rig.pipeline.on_batch([_record(i, "s-1", f"e-{i}") for i in range(3)])
    await rig.until(lambda: talon.calls == ["e-0"])
    rig.rebalance.on_lost([PART])
    rig.pipeline.on_batch([_record(3, "s-1", "e-3")])
    assert rig.pipeline.released == 3, "two dropped, one arriving after the loss"
    talon.release.set()
    await rig.until(lambda: rig.pipeline.buffered == 0)
    assert talon.calls == ["e-0"]
    assert rig.pipeline.offsets.commit_positions() == {}
    await rig.close()


@pytest.mark.parametrize("lost", [False, True])
async def test_a_restarted_log_is_tracked_afresh(lost: bool) -> None:
    rig = Rig(Talon())
    rig.pipeline.on_batch([_record(i, "s-1", f"e-{i}") for i in range(100, 103)])
    await rig.finished(103)
    if lost:
        rig.rebalance.on_log_gone([PART])
        assert rig.output.orphaned == [PART]
    rig.pipeline.on_batch([_record(0, "s-1", "e-new")])
    await rig.finished(1)
    assert rig.metric("bridge_input_log_resets_total", topic="in") == 1.0
    await rig.close()


# --- the production outputs --------------------------------------------------------------


class FakeSender:
    """Reports each send on the next loop turn; fails the next send to a topic on request."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.fail: dict[str, DeliveryError] = {}
        self.too_large: set[str] = set()  # topics whose records the producer refuses
        self.max_bytes: int | None = None  # the producer's message.max.bytes
        self.topic_max: dict[str, int] = {}  # the topics' max.message.bytes
        self.limits: dict[str, int] = {}  # those the worker read at start
        self.records: list[tuple[str, bytes | None, bytes | None, OutputHeaders | None]] = []
        self.on_delivered: Callable[[list[Delivered]], None] = lambda batch: None

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: OutputHeaders | None,
        token: Any,
    ) -> None:
        if topic in self.too_large or (
            self.max_bytes is not None and wire_size(key, value, headers) > self.max_bytes
        ):
            raise OutputTooLargeError("Broker: Message size too large")
        self.sent.append(topic)
        self.records.append((topic, key, value, headers))
        error = self.fail.pop(topic, None)
        if wire_size(key, value, headers) > self.topic_max.get(topic, 1 << 30):
            error = DeliveryError("Broker: Message size too large", "MSG_SIZE", False, True)
        report = [(token, error)]
        asyncio.get_running_loop().call_soon(self.on_delivered, report)

    def over_limit(
        self, topic: str, key: bytes | None, value: bytes | None, headers: OutputHeaders | None
    ) -> bool:
        limit = self.limits.get(topic)
        return limit is not None and wire_size(key, value, headers) + BATCH_OVERHEAD > limit


def _at_least_once(
    sender: FakeSender, fatal: list[KafkaFatalError]
) -> Callable[[Pipeline, Settings, Metrics], Output]:
    def build(pipeline: Pipeline, settings: Settings, metrics: Metrics) -> Output:
        output = AtLeastOnce(
            sender,  # type: ignore[arg-type]
            settings,
            metrics,
            pipeline.complete,
            fatal.append,
            pipeline.refused,
            resend_after=0.001,
        )
        sender.on_delivered = output.delivered
        return output

    return build


async def test_a_failed_delivery_is_sent_again_and_the_offset_waits_for_it() -> None:
    sender, fatal = FakeSender(), list[KafkaFatalError]()
    rig = Rig(Talon(), servers=1, output=_at_least_once(sender, fatal))
    effects = rig.settings.output_topic
    sender.fail[effects] = DeliveryError("Broker: Not enough in-sync replicas", "NOT_ENOUGH", False)
    rig.pipeline.on_batch([_record(0, "s-1", "e-0"), _record(1, "s-1", "e-1")])
    await rig.finished(2)
    assert sender.sent == [effects] * 3
    assert rig.metric("bridge_producer_delivery_failures_total", kind="effects") == 1.0
    assert fatal == []
    await rig.close()


async def test_an_effects_record_too_large_to_produce_is_dead_lettered_in_its_place() -> None:
    sender, fatal = FakeSender(), list[KafkaFatalError]()
    rig = Rig(Talon(), servers=1, output=_at_least_once(sender, fatal), on_poison="park")
    sender.too_large.add(rig.settings.output_topic)
    rig.pipeline.on_batch([_record(0, "s-1", "e-0"), _record(1, "s-1", "e-1")])
    await rig.finished(2)
    assert sender.sent == [rig.settings.dlq_topic] * 2
    assert rig.talon.applied == {"s-1": ["e-0", "e-1"]}, "the session is not parked"
    assert (
        rig.metric("bridge_dead_letters_total", reason="output-too-large", application="default")
        == 2.0
    )
    assert rig.pipeline.offsets.position(PART) == 2
    assert fatal == []
    await rig.close()


async def test_an_effects_record_its_topic_refuses_as_too_large_alone_is_dead_lettered() -> None:
    # The topic's limit, read at start, is below the producer's: sent again, the record
    # would be refused for good and hold its partition.
    sender, fatal = FakeSender(), list[KafkaFatalError]()
    rig = Rig(Talon(effects=_MANY_EFFECTS), servers=1, output=_at_least_once(sender, fatal))
    s = rig.settings
    sender.topic_max[s.output_topic] = sender.limits[s.output_topic] = 1_000
    rig.pipeline.on_batch([_record(0, "s-1", "e-0"), _record(1, "s-1", "e-1")])
    await rig.finished(2)
    assert sender.sent == [s.output_topic, s.dlq_topic] * 2
    letters = [h for t, _, _, h in sender.records if t == s.dlq_topic]
    assert [header(h, H_REASON) for h in letters] == ["output-too-large"] * 2
    assert rig.talon.applied == {"s-1": ["e-0", "e-1"]}
    assert rig.metric("bridge_effects_published_total", effect_type="setDiscount") == 0.0
    assert rig.metric("bridge_producer_delivery_failures_total", kind="effects") == 0.0
    assert rig.pipeline.offsets.position(PART) == 2
    assert fatal == []
    await rig.close()


@pytest.mark.parametrize("known", [None, 1 << 20], ids=["limit-unknown", "limit-lowered"])
async def test_an_effects_record_that_may_fit_its_topic_is_sent_again(known: int | None) -> None:
    # Not described at start, or the topic's limit lowered since: the record may fit once the
    # topic is fixed, and nothing is committed past it meanwhile.
    sender, fatal = FakeSender(), list[KafkaFatalError]()
    rig = Rig(Talon(effects=_MANY_EFFECTS), servers=1, output=_at_least_once(sender, fatal))
    effects = rig.settings.output_topic
    sender.topic_max[effects] = 1_000
    if known is not None:
        sender.limits[effects] = known
    rig.pipeline.on_batch([_record(0, "s-1", "e-0")])
    await rig.until(lambda: sender.sent.count(effects) >= 3)
    assert rig.pipeline.offsets.position(PART) == 0
    del sender.topic_max[effects]
    await rig.finished(1)
    assert rig.settings.dlq_topic not in sender.sent
    assert fatal == []
    await rig.close()


async def test_a_session_key_over_the_parking_topics_limit_is_not_parked() -> None:
    # Refused at delivery, its parking record would be sent again for good.
    sender, fatal = FakeSender(), list[KafkaFatalError]()
    rig = Rig(Talon({"s-1": [400]}), servers=1, output=_at_least_once(sender, fatal))
    s = rig.settings
    sender.topic_max[s.parking_topic] = sender.limits[s.parking_topic] = 200
    big = _record(0, "s-1", "e-0")
    big.key = b"k" * 300
    rig.pipeline.on_batch([big, _record(1, "s-2", "e-1")])
    await rig.finished(2)
    assert s.parking_topic not in sender.sent
    assert sender.sent == [s.dlq_topic, s.output_topic], "dead-lettered, not parked"
    assert rig.metric("bridge_producer_delivery_failures_total", kind="parking") == 0.0
    assert fatal == []
    await rig.close()


async def test_a_record_too_large_to_dead_letter_whole_goes_without_its_value() -> None:
    # Up to the input topic's limit, a record with our headers added can outgrow the
    # producer's: it is dead-lettered without what makes it too large, never held.
    sender, fatal = FakeSender(), list[KafkaFatalError]()
    sender.max_bytes = 3_000
    rig = Rig(Talon(), servers=1, output=_at_least_once(sender, fatal))
    big_value = _record(0, "s-1", "e-0", value=b"\x7f" + b"x" * 5_000)
    big_headers = _record(1, "s-2", "e-1", value=b"\x7fsmall", headers=[("h", b"y" * 5_000)])
    big_key = _record(2, "s-3", "e-2", value=b"\x7fsmall")
    big_key.key = b"k" * 5_000
    small = _record(3, "s-4", "e-3", value=b"\x7fsmall")
    rig.pipeline.on_batch([big_value, big_headers, big_key, small])
    await rig.finished(4)
    s = rig.settings
    letters = [(k, v, h) for t, k, v, h in sender.records if t == s.dlq_topic]
    (k0, v0, h0), (k1, v1, h1), (k2, v2, h2), (k3, v3, h3) = letters
    parked = [k for t, k, _, _ in sender.records if t == s.parking_topic]
    assert parked == [b"s-1", b"s-2", b"s-4"], "a key too large to park is not parked"
    assert (k0, v0, header(h0, H_OMITTED)) == (b"s-1", None, "value,headers")
    assert header(h0, H_ORIGINAL_BYTES) == str(wire_size(b"s-1", big_value.value)), "its size"
    assert header(h0, H_REASON) == "unknown-magic", "and why it failed"
    assert (k1, v1, header(h1, H_OMITTED)) == (b"s-2", None, "value,headers")
    assert "h" not in dict(h1 or ())
    assert (k2, v2, header(h2, H_OMITTED)) == (None, None, "value,headers,key")
    assert (k3, v3, header(h3, H_OMITTED)) == (b"s-4", b"\x7fsmall", None), "whole when it fits"
    assert rig.metric("bridge_dead_letters_value_omitted_total") == 3.0
    assert fatal == []
    await rig.close()


async def test_a_dead_letter_its_topic_refuses_as_too_large_goes_again_smaller() -> None:
    # The dead-letter topic's max.message.bytes below the producer's: sent again whole, the
    # letter would be refused for good and hold its partition.
    sender, fatal = FakeSender(), list[KafkaFatalError]()
    rig = Rig(Talon(), servers=1, output=_at_least_once(sender, fatal))
    dlq_topic = rig.settings.dlq_topic
    sender.topic_max[dlq_topic] = 700
    rig.pipeline.on_batch([_record(0, "s-1", "e-0", value=b"\x7f" + b"x" * 2_000)])
    await rig.finished(1)
    letters = [(k, v, h) for t, k, v, h in sender.records if t == dlq_topic]
    omitted = [header(h, H_OMITTED) for _, _, h in letters]
    # Without a short key a letter is no smaller: the next form leaves out the details.
    assert omitted == [None, "value,headers", "value,headers,key,details"]
    assert rig.metric("bridge_dead_letters_value_omitted_total") == 1.0
    assert rig.metric("bridge_producer_delivery_failures_total", kind="dlq") == 2.0
    assert fatal == []
    await rig.close()


def test_the_smallest_letter_keeps_only_where_the_original_is_and_why() -> None:
    letter_headers = record_letter_headers(
        _record(7, "s-1", "e-0", headers=[("h", b"y")]),
        DeadLetter("decode", "DecodeError", "unknown-magic", "m" * 2_000, body="b" * 2_000),
        "group",
    )
    *_, smallest = smaller_letters((b"s-1", b"v", letter_headers), 123)
    key, value, kept = smallest
    assert (key, value) == (None, None)
    assert dict(kept) == {
        "__connect.errors.topic": b"in",
        "__connect.errors.partition": b"0",
        "__connect.errors.offset": b"7",
        "__connect.errors.stage": b"decode",
        H_REASON: b"unknown-magic",
        H_OMITTED: b"value,headers,key,details",
        H_ORIGINAL_BYTES: b"123",
    }


async def test_a_fatal_delivery_error_stops_the_worker_and_leaves_the_offset() -> None:
    sender, fatal = FakeSender(), list[KafkaFatalError]()
    rig = Rig(Talon(), servers=1, output=_at_least_once(sender, fatal))
    sender.fail[rig.settings.output_topic] = DeliveryError("fenced", "FENCED", True)
    rig.pipeline.on_batch([_record(0, "s-1", "e-0")])
    await rig.until(lambda: fatal != [])
    assert [(type(e), str(e)) for e in fatal] == [(ProducerFatalError, "producer: FENCED")]
    assert rig.pipeline.offsets.position(PART) == 0
    await rig.close()


class TransactionalProducer:
    """What a transactional producer is asked to send and commit."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []
        self.values: list[bytes | None] = []
        self.offsets: list[list[Any]] = []

    def produce(self, topic: str, value: bytes | None, key: bytes | None, **kw: Any) -> None:
        self.sent.append((topic, key))
        self.values.append(value)

    def send_offsets_to_transaction(self, offsets: list[Any], metadata: Any, t: float) -> None:
        self.offsets.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def commit_transaction(self, timeout: float) -> None: ...

    def begin_transaction(self) -> None: ...


def _parked_then_applied(s: Settings) -> list[tuple[str, bytes | None]]:
    """s-1 dead-lettered and parked, then s-2 applied."""
    return [(s.parking_topic, b"s-1"), (s.dlq_topic, b"s-1"), (s.output_topic, b"s-2")]


async def test_exactly_once_holds_outputs_for_the_transaction_that_carries_their_offsets() -> None:
    producer = TransactionalProducer()
    txn = TransactionalOutput(Transactions(producer))  # type: ignore[arg-type]

    def build(pipeline: Pipeline, settings: Settings, metrics: Metrics) -> Output:
        return ExactlyOnce(txn, pipeline.complete)

    rig = Rig(Talon({"s-1": [400]}), servers=1, output=build)
    rig.pipeline.on_batch([_record(0, "s-1", "e-0"), _record(1, "s-2", "e-1")])
    await rig.finished(2)
    assert producer.sent == [], "nothing goes out before the transaction"
    assert await txn.commit({PART: 2}, None)
    assert producer.sent == _parked_then_applied(rig.settings), (
        "in offset order, a record's outputs as it produced them"
    )
    assert producer.offsets == [[("in", 0, 2)]]
    await rig.close()


async def test_exactly_once_refuses_a_record_too_large_as_it_is_held() -> None:
    # At commit a refused record would fail the whole transaction, every time.
    producer = TransactionalProducer()
    txn = TransactionalOutput(Transactions(producer, max_bytes=3_000))  # type: ignore[arg-type]

    def build(pipeline: Pipeline, settings: Settings, metrics: Metrics) -> Output:
        return ExactlyOnce(txn, pipeline.complete)

    rig = Rig(Talon(), servers=1, output=build)
    big = _record(0, "s-1", "e-0", value=b"\x7f" + b"x" * 5_000)
    rig.pipeline.on_batch([big, _record(1, "s-2", "e-1")])
    await rig.finished(2)
    assert await txn.commit({PART: 2}, None)
    assert producer.sent == _parked_then_applied(rig.settings)
    assert producer.values[1] is None, "dead-lettered without its value"
    assert rig.metric("bridge_dead_letters_value_omitted_total") == 1.0
    with pytest.raises(OutputTooLargeError):
        txn.check("any", b"k", b"v" * 3_000, None)
    await rig.close()


async def test_exactly_once_refuses_a_record_over_its_topics_limit_as_it_is_held() -> None:
    producer = TransactionalProducer()
    limits = {_settings().output_topic: 1_000}
    txn = TransactionalOutput(Transactions(producer, limits=limits))  # type: ignore[arg-type]

    def build(pipeline: Pipeline, settings: Settings, metrics: Metrics) -> Output:
        return ExactlyOnce(txn, pipeline.complete)

    rig = Rig(Talon(effects=_MANY_EFFECTS), servers=1, output=build)
    rig.pipeline.on_batch([_record(0, "s-1", "e-0")])
    await rig.finished(1)
    assert await txn.commit({PART: 1}, None)
    s = rig.settings
    assert producer.sent == [(s.dlq_topic, b"s-1")], "dead-lettered in its place"
    with pytest.raises(OutputTooLargeError, match=r"max\.message\.bytes 1000"):
        txn.check(s.output_topic, None, b"v" * (1_000 - BATCH_OVERHEAD), None)
    txn.check(s.dlq_topic, None, b"v" * 3_000, None)  # the other topics' limits are unknown
    await rig.close()


async def test_a_hot_session_is_parked_past_its_quota_and_the_others_run() -> None:
    talon = Talon()
    talon.release.clear()  # every call waits: the hot session's queue fills
    rig = Rig(talon, max_queued_per_session=3)
    hot = [_record(i + (i >= 5), "hot", f"h-{i}") for i in range(8)]
    rig.pipeline.on_batch([*hot[:5], _record(5, "calm", "c-0"), *hot[5:]])
    assert rig.pipeline.buffered == 9, "nothing finished yet"
    assert rig.reasons() == ["hot-session", "parked", "parked", "parked", "parked"]
    positions = [header(h, H_PARKED_POSITION) for _, _, h in rig.dlq()]
    assert positions == ["0", "1", "2", "3", "4"], "what follows the quota keeps its order"
    talon.release.set()
    await rig.finished(9)
    assert talon.applied == {"hot": ["h-0", "h-1", "h-2"], "calm": ["c-0"]}
    assert rig.total("bridge_session_quota_exceeded_total") == 1
    parked = rig.pipeline.parking.get(b"hot")
    assert parked is not None and parked.size == 5 and parked.reason == "hot-session"
    await rig.close()


async def test_skip_mode_dead_letters_each_record_past_the_quota() -> None:
    talon = Talon()
    talon.release.clear()
    rig = Rig(talon, max_queued_per_session=2, on_poison="skip")
    rig.pipeline.on_batch([_record(i, "hot", f"h-{i}") for i in range(4)])
    assert rig.reasons() == ["hot-session", "hot-session"]
    talon.release.set()
    await rig.finished(4)
    assert talon.applied == {"hot": ["h-0", "h-1"]}
    assert rig.pipeline.parking.get(b"hot") is None
    await rig.close()


async def test_one_profile_has_at_most_its_quota_of_calls_in_flight() -> None:
    talon = Talon()
    talon.release.clear()
    rig = Rig(talon, servers=8, max_in_flight_per_profile=2)
    # Six sessions of one profile ("p"): updates of different sessions may run together.
    rig.pipeline.on_batch([_record(i, f"s-{i}", f"e-{i}") for i in range(6)])
    await rig.until(lambda: len(talon.running) == 2)
    await asyncio.sleep(0.01)
    assert len(talon.running) == 2, "the profile's quota holds the others back"
    assert rig.total("bridge_profile_quota_waits_total") == 4
    talon.release.set()
    await rig.finished(6)
    assert sorted(talon.applied) == [f"s-{i}" for i in range(6)]
    await rig.close()


async def test_a_record_dropped_while_held_at_the_gate_is_not_called() -> None:
    talon = Talon()
    rig = Rig(talon, retry_max_delay=0.3)  # the gate reopens after 0.3 s
    app = rig.pipeline.applications["default"]
    app.gatekeeper.close("outage", ServerError("down", status=503))  # its records are held
    rig.pipeline.on_batch([_record(i, f"s-{i}", f"e-{i}") for i in range(3)])
    await rig.until(lambda: len(app.held) == 3)
    assert all(not task.done() for task in rig._servers), "held, not waiting in a server"
    rig.pipeline.drop_pending({PART})  # revoked meanwhile
    assert app.held == []
    await rig.until(lambda: app.gatekeeper.is_open)
    await asyncio.sleep(0.01)
    assert talon.calls == [], "the partition's next owner runs them"
    assert all(not task.done() for task in rig._servers), "the servers keep serving"
    assert rig.pipeline.buffered == 0
    await rig.close()
