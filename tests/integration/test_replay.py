"""`talon-bridge replay` on a real broker, with the worker and the simulator where it matters."""

from __future__ import annotations

import io
import logging
import os
import re
import shlex
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from confluent_kafka import Producer

from bridge import dlq
from bridge.avro.codec import Codec
from bridge.cli import main
from bridge.commands import Command, ReturnCartItems, ReturnedCartItem, UpdateCustomerSession
from bridge.replay.cli import CONFIRM_OVER
from bridge.simulator.process import SimulatorProcess
from bridge.talon.client import idempotency_key_for
from bridge.tools.harness import WorkerProcess, committed_offsets, end_offsets, read_topic, wait_for
from bridge.tools.produce import LoadSpec, generate
from bridge.worker.parking import ParkedSession, encode_parked
from tests.support.bridge import Bridge
from tests.support.replay import (
    Letter,
    command,
    encode,
    headers_of,
    json_lines,
    parked,
    run_replay,
    start_replay,
    write_letters,
)

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Deployment:
    """Kafka topics of a bridge without a worker: enough for replay on its own."""

    conf: dict[str, str]
    dlq: str
    input: str
    parking: str
    other: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": self.conf["bootstrap.servers"],
            "BRIDGE_DLQ_TOPIC": self.dlq,
            "BRIDGE_INPUT_TOPICS": self.input,
            "BRIDGE_PARKING_TOPIC": self.parking,
        }


@pytest.fixture
def deployment(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> Deployment:
    return Deployment(
        conf={"bootstrap.servers": kafka_bootstrap},
        dlq=topic_factory("dlq", 4),
        input=topic_factory("in", 2),
        parking=topic_factory("park", 1, {"cleanup.policy": "compact"}),
        other=topic_factory("other", 3),
    )


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def replay_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`bridge.cli.main(["replay", ...])` in this process: (exit code, stdout, stderr)."""

    def call(env: dict[str, str], *args: str) -> tuple[int, str, str]:
        for name in [n for n in os.environ if n.startswith("BRIDGE_")]:
            monkeypatch.delenv(name)
        for name, value in {**env, "BRIDGE_LOG_FORMAT": "json"}.items():
            monkeypatch.setenv(name, value)
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            code = main(["replay", *args])
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code or 0)
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        out, err = capsys.readouterr()
        return code, out, err

    return call


def group_of(stderr: str) -> str:
    m = re.search(r"^talon-bridge replay.*, group (\S+)$", stderr, re.MULTILINE)
    assert m is not None, stderr
    return m.group(1)


def poisoned(cmd: Command) -> Command:
    payload = cmd.payload
    assert isinstance(payload, UpdateCustomerSession)
    return msgspec.structs.replace(
        cmd, payload=msgspec.structs.replace(payload, attributes={"x-undefined-tier": "gold"})
    )


# --- end to end, with the worker running ----------------------------------------------------------


def test_replay_sends_a_parked_session_back_in_order_and_releases_it(
    bridge_factory: Callable[..., Bridge], simulator: SimulatorProcess
) -> None:
    bridge = bridge_factory(partitions=3)
    victim = "replay-victim"
    mine = [command(f"victim:{i}", victim) for i in range(6)]
    mine[1] = poisoned(mine[1])
    others = list(generate(LoadSpec(sessions=12, run_id="bystander")))
    codec = Codec()

    with WorkerProcess(bridge.env) as worker:
        bridge.produce([mine[0], *others[:20], *mine[1:], *others[20:]])
        total = len(mine) + len(others)
        wait_for(
            lambda: worker.metric_sum("bridge_commands_processed_total") >= total,
            60,
            "every command processed",
        )
        assert worker.metric_sum("bridge_parked_sessions") == 1
        letters = read_topic(bridge.conf, bridge.dlq, expected=5, timeout=30)
        assert [codec.decode_command(m.value()).event_id for m in letters] == [
            c.event_id for c in mine[1:]
        ]

        simulator.set_faults(reject_attribute_prefixes=[])  # the cause is fixed
        done = run_replay(bridge.env, "--session", victim)
        assert done.returncode == 0, done.stderr
        assert "replayed   5" in done.stderr

        def applied() -> list[dict[str, object]]:
            entries: list[dict[str, object]] = simulator.journal(session=victim)
            return entries

        wait_for(lambda: len(applied()) >= len(mine), 60, "the session's commands applied")
        wait_for(
            lambda: worker.metric_sum("bridge_parked_sessions") == 0, 30, "the session released"
        )
        wait_for(
            lambda: worker.metric_sum("bridge_commands_processed_total") >= total + 5,
            30,
            "the replayed commands processed",
        )
        assert worker.metric_sum("bridge_parked_sessions") == 0

    entries = applied()
    assert [e["idempotencyKey"] for e in entries] == [
        idempotency_key_for(c.event_id) for c in mine
    ], "every command of the session applied once, in the original order"
    if all(e["eventId"] for e in entries):
        assert [e["eventId"] for e in entries] == [c.event_id for c in mine]
    assert simulator.stats()["applied_event_ids_repeated"] == 0
    assert simulator.stats()["conflicts_409"] == 0
    # Nothing of the session went back to the DLQ.
    assert len(read_topic(bridge.conf, bridge.dlq, timeout=10, idle=1)) == len(letters)

    # What was sent: the dead letters, to their original partitions, with replay headers.
    sent = [
        m
        for m in read_topic(bridge.conf, bridge.input, expected=total + 5, timeout=30)
        if dlq.H_REPLAY_ID in headers_of(m)
    ]
    assert len(sent) == 5
    assert len({headers_of(m)[dlq.H_REPLAY_ID] for m in sent}) == 1, "one run, one replay id"
    for letter, m in zip(letters, sorted(sent, key=lambda m: m.offset()), strict=True):
        lh, h = headers_of(letter), headers_of(m)
        assert m.key() == letter.key() and m.value() == letter.value()
        assert m.partition() == int(lh[dlq.H_ORIGINAL_PARTITION])
        assert h[dlq.H_REPLAY_OF] == dlq.coordinates(
            lh[dlq.H_ORIGINAL_TOPIC],
            int(lh[dlq.H_ORIGINAL_PARTITION]),
            int(lh[dlq.H_ORIGINAL_OFFSET]),
        )
        assert h[dlq.H_REPLAY_DLQ] == dlq.coordinates(
            bridge.dlq, letter.partition(), letter.offset()
        )
        assert h[dlq.H_REPLAY_COUNT] == "1"
        assert not [k for k in h if k.startswith("__connect.errors.")]
        assert not [k for k in h if k.startswith("__talon.bridge.") and "replay." not in k]

    # The same command again: everything is done, nothing is sent.
    before = end_offsets(bridge.conf, bridge.input)
    again = run_replay(bridge.env, "--session", victim)
    assert again.returncode == 0, again.stderr
    assert "done       5" in again.stderr
    assert end_offsets(bridge.conf, bridge.input) == before


# --- each filter, and a dry run writes nothing ----------------------------------------------------


def _filter_letters(d: Deployment, now_ms: int) -> dict[str, Letter]:
    old = now_ms - 3 * 3600 * 1000
    a = Letter("s-a", encode(command("a:1", "s-a")), source=(d.input, 0, 100), timestamp_ms=now_ms)
    returns = Command("c:1", "s-c", 1, ReturnCartItems([ReturnedCartItem(position=0, quantity=1)]))
    return {
        "0:0": a,
        "0:1": parked(
            a, encode(command("a:2", "s-a")), source=(d.input, 0, 101), timestamp_ms=now_ms
        ),
        "0:2": parked(
            a,
            encode(command("a:3", "s-a", kind="event")),
            source=(d.input, 0, 102),
            timestamp_ms=now_ms,
        ),
        "0:3": Letter(
            "s-b",
            encode(command("b:1", "s-b", kind="event")),
            reason="retries-exhausted",
            error_class="ServerError",
            status=503,
            source=(d.input, 1, 7),
            timestamp_ms=old,
        ),
        "1:0": Letter(
            "s-c",
            encode(returns),
            reason="validation",
            error_class="InvalidCommandError",
            status=None,
            source=(d.input, 1, 8),
            partition=1,
            timestamp_ms=old,
        ),
        "1:1": Letter(
            "s-d",
            b"\x7fnot a command",
            reason="unknown-magic",
            error_class="DecodeError",
            status=None,
            source=(d.input, 0, 9),
            partition=1,
            timestamp_ms=now_ms,
        ),
        "1:2": Letter(
            "s-e",
            encode(command("e:1", "s-e")),
            status=422,
            source=(d.input, 1, 10),
            partition=1,
            timestamp_ms=now_ms,
            extra=[("tenant", b"eu")],
        ),
    }


def test_each_filter_selects_its_dead_letters_and_a_dry_run_writes_nothing(
    deployment: Deployment, replay_cli: Cli, tmp_path: Path
) -> None:
    d = deployment
    letters = _filter_letters(d, int(time.time() * 1000))
    # Written partition by partition, so "P:N" above is each record's DLQ position.
    write_letters(d.conf, d.dlq, [letters[k] for k in sorted(letters)])
    sessions_file = tmp_path / "sessions.txt"
    sessions_file.write_text("s-b\n# support ticket 4711\ns-e\n", encoding="utf-8")
    before = {t: end_offsets(d.conf, t) for t in (d.input, d.other, d.parking, d.dlq)}
    pos = {f"{d.dlq}/{k.replace(':', '/')}": k for k in letters}

    cases: list[tuple[list[str], dict[str, str]]] = [
        ([], dict.fromkeys(letters, "replay")),
        (["--session", "s-a"], {"0:0": "replay", "0:1": "replay", "0:2": "replay"}),
        (
            ["--reason", "permanent"],
            {"0:0": "replay", "0:1": "replay", "0:2": "replay", "1:2": "replay"},
        ),
        (["--reason", "parked"], {"0:1": "skip", "0:2": "skip"}),
        (["--error-class", "ServerError"], {"0:3": "replay"}),
        (["--error-class", "invalidcommanderror"], {"1:0": "replay"}),
        (["--status", "4xx"], {"0:0": "replay", "0:1": "replay", "0:2": "replay", "1:2": "replay"}),
        (["--status", "503"], {"0:3": "replay"}),
        (["--command-type", "unknown"], {"1:1": "replay"}),
        (["--command-type", "return_cart_items"], {"1:0": "replay"}),
        (["--command-type", "track_event"], {"0:2": "skip", "0:3": "replay"}),
        (["--header", "tenant=eu"], {"1:2": "replay"}),
        (["--offsets", "1:1-2"], {"1:1": "replay", "1:2": "replay"}),
        (["--offsets", "0:3-", "--offsets", "1:-0"], {"0:3": "replay", "1:0": "replay"}),
        (["--since", "1h"], {k: "replay" for k in ("0:0", "0:1", "0:2", "1:1", "1:2")}),
        (["--until", "1h"], {"0:3": "replay", "1:0": "replay"}),
        (["--sessions-file", str(sessions_file)], {"0:3": "replay", "1:2": "replay"}),
        (["--reason", "permanent", "--status", "422"], {"1:2": "replay"}),
        (["--to", d.other, "--session", "s-b"], {"0:3": "replay"}),
    ]
    groups = []
    by_case: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for args, expected in cases:
        code, out, err = replay_cli(d.env, "--dry-run", "--json", *args)
        assert code == 0, (args, err)
        rows = by_case[tuple(args)] = json_lines(out)
        assert {pos[r["dlq"]]: r["action"] for r in rows} == expected, args
        groups.append(group_of(err))

    permanent = {pos[r["dlq"]]: r for r in by_case[("--reason", "permanent")]}
    assert [permanent[k]["pulledIn"] for k in ("0:0", "0:1", "0:2", "1:2")] == [
        False,
        True,
        True,
        False,
    ]
    assert {r["skipReason"] for r in by_case[("--reason", "parked")]} == {"parked-without-poison"}
    assert [r["target"] for r in by_case[("--to", d.other, "--session", "s-b")]] == [d.other]
    everything = {pos[r["dlq"]]: r for r in by_case[()]}
    assert everything["1:1"]["commandType"] == "unknown" and everything["1:1"]["eventId"] is None
    assert everything["0:2"]["commandType"] == "track_event"
    assert everything["0:0"]["target"] == d.input and everything["0:0"]["status"] == 400
    assert everything["0:1"]["parkedBehind"] == letters["0:0"].poison_ref

    # The table: one row per session.
    code, out, err = replay_cli(d.env, "--dry-run", "--reason", "permanent")
    assert code == 0, err
    assert "s-a" in out and "s-e" in out and "s-b" not in out
    assert "parked 2" in out
    assert "to replay  4" in err

    assert {t: end_offsets(d.conf, t) for t in before} == before, "a dry run produces nothing"
    for group in {*groups, group_of(err)}:
        assert all(o < 0 for o in committed_offsets(d.conf, group, d.dlq).values()), group


# --- interrupt, then resume -----------------------------------------------------------------------


def test_an_interrupted_replay_resumes_without_sending_anything_twice(
    deployment: Deployment,
) -> None:
    d = deployment
    letters: list[Letter] = []
    chains: dict[str, int] = {}
    for i in range(10):  # sessions with a poison and three parked records
        session = f"chain-{i}"
        poison = Letter(
            session,
            encode(command(f"{session}:0", session)),
            source=(d.input, i % 2, 10 * i),
            partition=i % 4,
        )
        letters.append(poison)
        for j in range(1, 4):
            value = encode(command(f"{session}:{j}", session))
            letters.append(parked(poison, value, source=(d.input, i % 2, 10 * i + j)))
        chains[session] = 4
    for i in range(20):
        session = f"single-{i}"
        letters.append(
            Letter(
                session,
                encode(command(f"{session}:0", session)),
                source=(d.input, i % 2, 500 + i),
                partition=i % 4,
            )
        )
    write_letters(d.conf, d.dlq, letters)
    dlq_end = end_offsets(d.conf, d.dlq)
    assert sum(dlq_end.values()) == 60

    def sent() -> int:
        return sum(end_offsets(d.conf, d.input).values())

    proc = start_replay(d.env, "--rate", "10")
    try:
        wait_for(lambda: sent() >= 10, 60, "the first records sent")
    finally:
        proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "interrupted" in err
    first_run = sent()
    assert 10 <= first_run < 60, "stopped part way"
    on_target = read_topic(d.conf, d.input, expected=first_run, timeout=30)
    per_chain = Counter(m.key().decode() for m in on_target if m.key().startswith(b"chain-"))
    assert all(n == 4 for n in per_chain.values()), f"a chain was split: {per_chain}"

    rerun = run_replay(d.env)  # --rate is not part of the selection: same progress group
    assert rerun.returncode == 0, rerun.stderr
    assert f"done       {first_run}" in rerun.stderr

    everything = read_topic(d.conf, d.input, expected=60, timeout=60)
    assert len(everything) == 60
    copies = Counter(headers_of(m)[dlq.H_REPLAY_DLQ] for m in everything)
    assert copies == Counter(
        {f"{d.dlq}/{p}/{o}": 1 for p, n in dlq_end.items() for o in range(n)}
    ), "every dead letter sent exactly once over both runs"
    group = group_of(rerun.stderr)
    assert committed_offsets(d.conf, group, d.dlq) == dlq_end
    # Per session, the order is the DLQ order (poison first).
    for session in chains:
        ids = [
            Codec().decode_command(m.value()).event_id
            for m in sorted(everything, key=lambda m: (m.partition(), m.offset()))
            if m.key() == session.encode()
        ]
        assert ids == [f"{session}:{j}" for j in range(4)]


# --- bad input ------------------------------------------------------------------------------------


def test_unknown_topics_and_malformed_arguments_exit_2(
    deployment: Deployment, replay_cli: Cli
) -> None:
    d = deployment
    no_servers = {k: v for k, v in d.env.items() if k != "BRIDGE_KAFKA_BOOTSTRAP_SERVERS"}
    cases: list[tuple[dict[str, str], list[str], str]] = [
        (d.env, ["--from", "no-such-dlq-topic"], "'no-such-dlq-topic'"),
        ({**d.env, "BRIDGE_DLQ_TOPIC": "no-such-default-dlq"}, [], "BRIDGE_DLQ_TOPIC"),
        (d.env, ["--to", "no-such-target-topic"], "'no-such-target-topic'"),
        (d.env, ["--offsets", "x"], "--offsets 'x'"),
        (d.env, ["--offsets", "9:0-5"], "no partition 9"),
        (d.env, ["--since", "last tuesday"], "'last tuesday'"),
        (d.env, ["--command-type", "refund"], "refund"),
        (no_servers, [], "BRIDGE_KAFKA_BOOTSTRAP_SERVERS"),
        ({**d.env, "BRIDGE_KAFKA_CONFIG": '{"no.such.property": "1"}'}, [], "no.such.property"),
        (d.env, ["--session", "s", "--discard"], "--yes"),
    ]
    for env, args, message in cases:
        code, _out, err = replay_cli(env, *args)
        assert code == 2, (args, err)
        assert message in err, (args, err)
    # The same as a process, the way a Job runs it.
    res = run_replay(d.env, "--from", "no-such-dlq-topic")
    assert res.returncode == 2, res.stderr
    assert "dead-letter topic 'no-such-dlq-topic' (--from) does not exist" in res.stderr
    assert sum(end_offsets(d.conf, d.input).values()) == 0


def test_the_bridges_own_topics_and_the_source_are_refused_as_targets(
    deployment: Deployment, replay_cli: Cli
) -> None:
    d = deployment
    env = {**d.env, "BRIDGE_OUTPUT_TOPIC": d.other}
    letters = [
        Letter("s-ok", encode(command("ok:1", "s-ok")), source=(d.input, 0, 1)),
        # A dead letter naming the parking topic as its origin: sent back, it would
        # overwrite parked sessions.
        Letter("s-bad", encode(command("bad:1", "s-bad")), source=(d.parking, 0, 2)),
    ]
    write_letters(d.conf, d.dlq, letters)
    for args, named in (
        (["--to", d.other], "BRIDGE_OUTPUT_TOPIC"),
        (["--to", d.parking], "BRIDGE_PARKING_TOPIC"),
        (["--to", d.dlq], "BRIDGE_DLQ_TOPIC"),
        (["--from", d.input, "--to", d.input], "--from"),
    ):
        code, _out, err = replay_cli(env, *args)
        assert code == 2, (args, err)
        assert named in err and "--force" in err, (args, err)
    assert all(sum(end_offsets(d.conf, t).values()) == 0 for t in (d.other, d.parking, d.input))

    code, out, err = replay_cli(env, "--json")
    assert code == 1, err
    rows = {r["session"]: r for r in json_lines(out)}
    assert (rows["s-bad"]["action"], rows["s-bad"]["skipReason"]) == ("skipped", "bridge-topic")
    assert rows["s-ok"]["action"] == "replayed"
    assert sum(end_offsets(d.conf, d.parking).values()) == 0
    # --force means it: a copy of the DLQ into itself, for the next run.
    code, _out, err = replay_cli(env, "--to", d.dlq, "--force", "--session", "s-ok")
    assert code == 0, err
    assert sum(end_offsets(d.conf, d.dlq).values()) == 3


def test_a_large_replay_asks_first_on_a_terminal(
    deployment: Deployment, replay_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = deployment
    many = CONFIRM_OVER + 1
    write_letters(
        d.conf,
        d.dlq,
        [
            Letter(f"s-{i}", encode(command(f"many:{i}", f"s-{i}")), source=(d.input, 0, i))
            for i in range(many)
        ],
    )
    answers: list[str] = []

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def answer(prompt: str = "") -> str:
        return answers.pop(0)

    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("builtins.input", answer)
    answers.append("n")
    code, _out, err = replay_cli(d.env)
    assert code == 1, err
    assert f"Replay {many} dead letters of {many} sessions to {d.input}? [y/N]" in err
    assert "nothing sent" in err and sum(end_offsets(d.conf, d.input).values()) == 0
    code, _out, err = replay_cli(d.env, "--offsets", f"0:0-{CONFIRM_OVER - 1}")
    assert code == 0 and "[y/N]" not in err, "a smaller run goes without asking"
    code, _out, err = replay_cli(d.env, "--yes")
    assert code == 0 and "[y/N]" not in err, err
    assert sum(end_offsets(d.conf, d.input).values()) == CONFIRM_OVER + many


def test_a_dead_letter_without_its_original_topic_is_skipped_and_kept(
    deployment: Deployment,
) -> None:
    d = deployment
    bare = Letter("s-bare", encode(command("bare:1", "s-bare")), source=None)
    gone = Letter(
        "s-gone", encode(command("gone:1", "s-gone")), source=("deleted-topic-x", 0, 3), partition=1
    )
    fine = Letter(
        "s-fine", encode(command("fine:1", "s-fine")), source=(d.input, 1, 4), partition=2
    )
    write_letters(d.conf, d.dlq, [bare, gone, fine])
    dlq_before = end_offsets(d.conf, d.dlq)

    res = run_replay(d.env, "--json")
    assert res.returncode == 1, res.stderr
    rows = {r["session"]: r for r in json_lines(res.stdout)}
    assert (rows["s-bare"]["action"], rows["s-bare"]["skipReason"]) == (
        "skipped",
        "no-original-topic",
    )
    assert (rows["s-gone"]["action"], rows["s-gone"]["skipReason"]) == (
        "skipped",
        "unknown-target-topic",
    )
    assert rows["s-fine"]["action"] == "replayed"
    assert "no-original-topic 1" in res.stderr and "unknown-target-topic 1" in res.stderr
    # Kept: the DLQ is untouched, a rerun still lists the skip, and a target picks it up.
    assert end_offsets(d.conf, d.dlq) == dlq_before
    assert len(read_topic(d.conf, d.dlq, expected=3, timeout=30)) == 3
    again = run_replay(d.env)
    assert (
        again.returncode == 1
        and "skipped then: " in again.stderr
        and "no-original-topic" in again.stderr
    )
    res = run_replay(d.env, "--to", d.other, "--session", "s-bare")
    assert res.returncode == 0, res.stderr
    out = read_topic(d.conf, d.other, expected=1, timeout=30)
    assert [m.key() for m in out] == [b"s-bare"]
    assert headers_of(out[0])[dlq.H_REPLAY_DLQ] == f"{d.dlq}/0/0"
    assert dlq.H_REPLAY_OF not in headers_of(out[0])


def test_discard_releases_the_session_and_sends_nothing(deployment: Deployment) -> None:
    d = deployment
    poison = Letter("s-drop", encode(command("drop:1", "s-drop")), source=(d.input, 0, 40))
    held = parked(poison, encode(command("drop:2", "s-drop")), source=(d.input, 0, 41))
    keep = Letter("s-keep", encode(command("keep:1", "s-keep")), source=(d.input, 1, 42))
    write_letters(d.conf, d.dlq, [poison, held, keep])
    p = Producer(d.conf)
    p.produce(
        d.parking,
        key=b"s-drop",
        value=encode_parked(ParkedSession(poison.poison_ref, 1, "permanent")),
    )
    assert p.flush(30) == 0

    res = run_replay(d.env, "--session", "s-drop", "--discard", "--yes", "--json")
    assert res.returncode == 0, res.stderr
    assert [r["action"] for r in json_lines(res.stdout)] == ["discarded", "discarded"]
    assert "released   1" in res.stderr
    parking = read_topic(d.conf, d.parking, expected=2, timeout=30)
    assert [(m.key(), m.value()) for m in parking][-1] == (b"s-drop", None), "a tombstone"
    assert sum(end_offsets(d.conf, d.input).values()) == 0, "nothing re-sent"
    assert committed_offsets(d.conf, group_of(res.stderr), d.dlq)[0] == 3
    # Discarded means handled: the same command again finds nothing left to do.
    again = run_replay(d.env, "--session", "s-drop", "--discard", "--yes")
    assert again.returncode == 0 and "done       2" in again.stderr
    assert len(read_topic(d.conf, d.parking, timeout=10, idle=1)) == 2


# --- documented examples run, with flags that exist -----------------------------------------------


def _examples(text: str) -> Iterator[str]:
    """`talon-bridge replay ...` lines of the fenced shell blocks in `text`."""
    for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("talon-bridge replay"):
                yield line


def _documented(help_text: str) -> list[str]:
    """The examples of README's Replay section, of docs/replay.md and of `--help`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Replay\n", 1)[1].split("\n## ", 1)[0]
    docs = (ROOT / "docs/replay.md").read_text(encoding="utf-8")
    in_help = [
        line.strip()
        for line in help_text.splitlines()
        if line.strip().startswith("talon-bridge replay ")
    ]
    return [*_examples(section), *_examples(docs), *in_help]


def test_documented_examples_run_and_use_only_real_flags(
    deployment: Deployment,
    replay_cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d = deployment
    code, help_text, _ = replay_cli(d.env, "--help")
    assert code == 0
    examples = _documented(help_text)
    assert len(examples) >= 15, examples
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sessions.txt").write_text("7f3a-checkout\n", encoding="utf-8")
    for example in examples:
        words = shlex.split(example, comments=True)[2:]
        words = words[: words.index("|")] if "|" in words else words
        for word in words:
            if word.startswith("-"):
                assert word.split("=", 1)[0] in help_text, f"{word} of {example!r} is not in --help"
        # Topics named in the examples stand for this deployment's.
        for flag, topic in (("--from", d.dlq), ("--to", d.other)):
            if flag in words:
                words[words.index(flag) + 1] = topic
        if "--dry-run" not in words and "-n" not in words:
            words.append("--dry-run")
        code, _out, err = replay_cli(d.env, *words)
        assert code == 0, (example, err)
