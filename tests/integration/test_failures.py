"""Failure handling on the real broker and simulator: poison, parking, undecodable input."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable

import msgspec
import orjson
import pytest
from confluent_kafka import Producer

from bridge import dlq
from bridge.avro.codec import Codec
from bridge.avro.schemas import get_schema
from bridge.commands import AdditionalCost, Command, UpdateCustomerSession
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import WorkerProcess, end_offsets, read_topic, wait_committed, wait_for
from bridge.tools.produce import LoadSpec, generate
from tests.support.bridge import Bridge
from tests.support.oracle import assert_applied_in_order

pytestmark = pytest.mark.kafka


def _headers(msg: object) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in (msg.headers() or [])}  # type: ignore[attr-defined]


def _all_finished_and_ready(worker: WorkerProcess, total: int, timeout: float) -> None:
    wait_for(
        lambda: worker.metric_sum("bridge_commands_processed_total") >= total,
        timeout,
        "every record finished",
    )
    assert worker.ready(), "the worker keeps running"


def _poison(cmd: Command) -> Command:
    payload = cmd.payload
    assert isinstance(payload, UpdateCustomerSession)
    bad = msgspec.structs.replace(payload, attributes={"x-undefined-tier": "gold"})
    return msgspec.structs.replace(cmd, payload=bad)


def test_poison_parks_the_session_in_order_and_survives_restart(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=3)
    commands = list(generate(LoadSpec(sessions=60, max_cart_updates=5, run_id="poison")))
    # The victim: a session whose second command is a cart update, with more after it.
    by_session: dict[str, list[Command]] = {}
    for c in commands:
        by_session.setdefault(c.session_id, []).append(c)
    victim = next(
        s
        for s, cs in by_session.items()
        if len(cs) >= 4 and isinstance(cs[1].payload, UpdateCustomerSession)
    )
    victim_cmds = by_session[victim]
    poison_at = next(i for i, c in enumerate(commands) if c is victim_cmds[1])
    commands[poison_at] = _poison(commands[poison_at])
    poison_id = commands[poison_at].event_id
    parked_ids = [c.event_id for c in victim_cmds[2:]]
    healthy = [c for c in commands if c.session_id != victim]

    with WorkerProcess(bridge.env) as worker:
        bridge.produce(commands)
        wait_for(
            lambda: worker.metric_sum("bridge_commands_processed_total") >= len(commands),
            60,
            "all commands processed",
        )
        assert worker.metric_sum("bridge_parked_sessions") == 1

    letters = read_topic(bridge.conf, bridge.dlq, expected=1 + len(parked_ids), timeout=30)
    codec = Codec()
    ids = [codec.decode_command(m.value()).event_id for m in letters]
    assert ids == [poison_id, *parked_ids], "poison first, then its session's commands in order"
    first = _headers(letters[0])
    assert first[dlq.H_REASON] == "permanent"
    assert first[dlq.H_HTTP_STATUS] == "400"
    assert first[dlq.H_EXCEPTION_CLASS] == "PermanentApiError"
    assert first[dlq.H_ORIGINAL_TOPIC] == bridge.input
    assert int(first[dlq.H_ORIGINAL_OFFSET]) >= 0
    assert "x-undefined-tier" in first[dlq.H_ERROR_BODY]
    assert first[dlq.H_GROUP] == bridge.group
    for key in (
        dlq.H_ATTEMPTS,
        dlq.H_FIRST_FAILURE,
        dlq.H_LAST_FAILURE,
        dlq.H_BRIDGE_VERSION,
        dlq.H_ORIGINAL_PARTITION,
        dlq.H_ORIGINAL_TIMESTAMP,
        dlq.H_EXCEPTION_MESSAGE,
    ):
        assert first[key], key
    poison_ref = dlq.coordinates(
        first[dlq.H_ORIGINAL_TOPIC],
        int(first[dlq.H_ORIGINAL_PARTITION]),
        int(first[dlq.H_ORIGINAL_OFFSET]),
    )
    for m in letters[1:]:
        h = _headers(m)
        assert h[dlq.H_REASON] == "parked"
        assert h[dlq.H_PARKED_BEHIND] == poison_ref
        assert m.key() == victim.encode()

    # Other sessions were applied in full and in order; the victim only up to its poison.
    assert_applied_in_order(
        healthy,
        {
            "sessions": {k: v for k, v in simulator.journal()["sessions"].items() if k != victim},
            "profiles": simulator.journal()["profiles"],
        },
    )
    victim_journal = simulator.journal(session=victim)
    assert [e["eventId"] for e in victim_journal] == [victim_cmds[0].event_id]
    assert simulator.stats()["conflicts_409"] == 0

    # After a restart the session is still parked: a new command for it is diverted too.
    late = msgspec.structs.replace(victim_cmds[0], event_id="poison:late:1")
    with WorkerProcess(bridge.env) as worker:
        assert worker.metric_sum("bridge_parked_sessions") == 1
        bridge.produce([late])
        wait_for(
            lambda: (
                worker.metric_sum(
                    'bridge_commands_processed_total{command_type="update_customer_session",outcome="parked"}'
                )
                >= 1
            ),
            30,
            "the late command to be parked",
        )
    letters = read_topic(bridge.conf, bridge.dlq, expected=2 + len(parked_ids), timeout=30)
    assert codec.decode_command(letters[-1].value()).event_id == "poison:late:1"
    assert simulator.journal(session=victim)[-1]["eventId"] == victim_cmds[0].event_id


def test_undecodable_records_go_to_the_dlq_with_a_reason(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=2)
    good = list(generate(LoadSpec(sessions=20, run_id="decode")))
    codec = Codec()
    valid = codec.encode_command(good[0], bridge.input)
    other = msgspec.structs.replace(good[1], session_id="someone-else")
    bad: list[tuple[bytes | None, bytes | None, str]] = [
        (b"k-garbage", b"\x00\xffnot avro at all", "unknown-schema-id"),
        (b"k-trunc", valid[: len(valid) // 2], "truncated"),
        (b"k-fp", b"\xc3\x01" + struct.pack("<Q", 12345) + valid[10:], "unknown-fingerprint"),
        (b"k-magic", b"\x7fhello", "unknown-magic"),
        (None, codec.encode_command(good[2], bridge.input), "missing-key"),
        (b"k-mismatch", codec.encode_command(other, bridge.input), "key-mismatch"),
        (b"k-empty", b"", "empty"),
    ]
    with WorkerProcess(bridge.env) as worker:
        bridge.produce_raw([(k, v) for k, v, _ in bad])
        # Skip the command whose copy was made undecodable above only by bytes, not content.
        bridge.produce(good)
        _all_finished_and_ready(worker, len(bad) + len(good), 60)
    letters = read_topic(bridge.conf, bridge.dlq, expected=len(bad), timeout=30)
    reasons = Counter(_headers(m)[dlq.H_REASON] for m in letters)
    assert reasons == Counter(r for _, _, r in bad)
    for m in letters:
        assert _headers(m)[dlq.H_STAGE] == "decode"
    applied = simulator.stats()["applied"]
    assert applied == len(good), "count in = applied + dead-lettered"
    effects = read_topic(bridge.conf, bridge.output, expected=len(good), timeout=30)
    assert len(effects) == len(good)


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_records_too_large_to_dead_letter_whole_go_without_their_value(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess, exactly_once: bool
) -> None:
    # The input topic takes up to 1,048,588 bytes, the producer's message.max.bytes is
    # 1,000,000: a dead letter of a record in between (or with a crafted key or headers)
    # would be refused, and must not stall its partition or stop the worker.
    bridge = bridge_factory(partitions=2, BRIDGE_EXACTLY_ONCE=str(exactly_once).lower())
    huge = 1_040_000
    big: list[tuple[bytes, bytes, list[tuple[str, bytes]] | None]] = [
        (b"k-big-value", b"\x7f" + b"x" * huge, None),
        (b"k-big-headers", b"\x7fsmall", [("h", b"y" * huge)]),
        (b"k" * huge, b"\x7fsmall", None),
    ]
    good = list(generate(LoadSpec(sessions=10, run_id="too-large")))
    with WorkerProcess(bridge.env) as worker:
        producer = Producer({**bridge.conf, "message.max.bytes": 2_000_000})
        for key, value, headers in big:
            producer.produce(bridge.input, key=key, value=value, headers=headers)
        assert producer.flush(30) == 0
        bridge.produce(good)
        _all_finished_and_ready(worker, len(big) + len(good), 90)
        assert worker.metric_sum("bridge_dead_letters_value_omitted_total") == len(big)
        ends = end_offsets(bridge.conf, bridge.input)
        wait_committed(bridge.conf, bridge.group, bridge.input, ends, 60, "all committed")
    letters = read_topic(bridge.conf, bridge.dlq, expected=len(big), timeout=30)
    by_key = {m.key(): _headers(m) for m in letters}
    assert all(m.value() is None for m in letters)
    assert by_key[b"k-big-value"][dlq.H_OMITTED] == "value,headers"
    assert by_key[b"k-big-headers"][dlq.H_OMITTED] == "value,headers"
    assert by_key[None][dlq.H_OMITTED] == "value,headers,key"
    for headers in by_key.values():
        assert headers[dlq.H_REASON] == "unknown-magic"
        assert int(headers[dlq.H_ORIGINAL_BYTES]) > huge
    assert simulator.stats()["applied"] == len(good)


class _Registry:
    """A Schema Registry that accepts connections and does not answer until told to; then
    it serves one schema for every id."""

    def __init__(self, schema: str) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.accepted = threading.Event()
        self.answering = threading.Event()
        body = orjson.dumps({"schema": schema})
        self._answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed
            while True:
                conn, _ = self._listener.accept()
                self.accepted.set()
                if self.answering.is_set():
                    threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
                else:
                    self._held.append(conn)

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)  # a small GET: one read holds it
            conn.sendall(self._answer)

    def hang_up(self) -> None:
        """Drop the connections held so far (the client sees a transport error)."""
        held, self._held = self._held, []
        for conn in held:
            conn.close()

    def close(self) -> None:
        self._listener.close()
        self.hang_up()


def test_a_schema_registry_that_never_answers_holds_only_its_record(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    registry = _Registry(get_schema("Command").to_json())
    bridge = bridge_factory(
        partitions=2,
        BRIDGE_SCHEMA_REGISTRY_URL=registry.url,
        # Far longer than the test: a lookup is outstanding until the registry hangs up.
        BRIDGE_SCHEMA_REGISTRY_TIMEOUT="600",
    )
    good = list(generate(LoadSpec(sessions=20, run_id="registry-hang")))
    held = msgspec.structs.replace(good[0], session_id="registry-held", event_id="registry-held-1")
    body = Codec().encode_command(held, bridge.input)[10:]
    framed = b"\x00" + (7).to_bytes(4, "big") + body  # schema id 7: fetched from the registry
    processed = "bridge_commands_processed_total"
    try:
        with WorkerProcess(bridge.env) as worker:
            bridge.produce_raw([(b"registry-held", framed)])
            assert registry.accepted.wait(60), "the worker asks the registry"
            bridge.produce(good)
            wait_for(
                lambda: worker.metric_sum(processed) >= len(good),
                60,
                "the other records processed while the registry call hangs",
            )
            assert worker.alive()
            assert worker.ready()
            assert worker.metric_sum(processed) == len(good)
            # The lookup fails once the registry hangs up (on the retry too): counted, and the
            # record waits with backoff instead of being dead-lettered.
            wait_for(
                lambda: (
                    registry.hang_up()
                    or worker.metric_sum("bridge_schema_registry_failures_total") >= 1
                ),
                60,
                "the failed lookup counted",
            )
            assert worker.metric_sum(processed) == len(good)
            # Once the registry answers, the held record is decoded and applied.
            registry.answering.set()
            wait_for(
                lambda: registry.hang_up() or worker.metric_sum(processed) > len(good),
                60,
                "the held record applied once the registry answers",
            )
            assert worker.metric_sum("bridge_dead_letters_total") == 0
            # A lookup still hanging does not hold up shutdown.
            registry.answering.clear()
            registry.accepted.clear()
            bridge.produce_raw([(b"registry-held-2", b"\x00" + (8).to_bytes(4, "big") + body)])
            assert registry.accepted.wait(60), "the worker asks the registry again"
            assert worker.stop() == 0
    finally:
        registry.close()
    assert simulator.stats()["applied"] == len(good) + 1
    assert [e["eventId"] for e in simulator.journal(session="registry-held")] == [held.event_id]


def _zigzag(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    return bytes([*out, z])


def test_hostile_records_are_dead_lettered_in_their_place(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    # A cost name claiming 2**63 - 1 bytes once escaped decoding as an OverflowError: its
    # offset was never finished, the rest of its batch never ran, and nothing was committed.
    bridge = bridge_factory(partitions=2, BRIDGE_ON_POISON="skip")
    commands = list(generate(LoadSpec(sessions=8, run_id="hostile")))
    victim = commands[0].session_id
    codec = Codec()
    hostile = codec.encode_command(
        Command(
            "hostile-1",
            victim,
            1,
            UpdateCustomerSession(additional_costs={"ship": AdditionalCost(0.0)}),
        ),
        bridge.input,
    )
    at = hostile.index(b"\x08ship")
    hostile = hostile[:at] + _zigzag(2**63 - 1) + hostile[at + 1 :]
    # An empty eventId once failed deriving the Idempotency-Key, an internal error.
    other = next(c.session_id for c in commands if c.session_id != victim)
    nameless = codec.encode_command(
        Command("", other, 1, UpdateCustomerSession(profile_id="p")), bridge.input
    )
    records = [(c.session_id.encode(), codec.encode_command(c, bridge.input)) for c in commands]
    # Each right behind the first command of its session.
    records.insert(1, (victim.encode(), hostile))
    records.insert(
        records.index(next(r for r in records if r[0] == other.encode())) + 1,
        (other.encode(), nameless),
    )
    with WorkerProcess(bridge.env) as worker:
        bridge.produce_raw(records)
        wait_for(
            lambda: worker.metric_sum("bridge_commands_processed_total") >= len(records),
            60,
            "every record finished",
        )
        wait_committed(
            bridge.conf,
            bridge.group,
            bridge.input,
            end_offsets(bridge.conf, bridge.input),
            30,
            "offsets committed to the end",
        )
        assert worker.ready()
    letters = read_topic(bridge.conf, bridge.dlq, expected=2, timeout=30)
    reasons = {m.value(): (_headers(m)[dlq.H_STAGE], _headers(m)[dlq.H_REASON]) for m in letters}
    assert reasons[hostile][0] == "decode"
    assert reasons[nameless] == ("validate", "validation")
    assert_applied_in_order(commands, simulator.journal())
