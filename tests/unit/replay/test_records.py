"""The headers a dead letter is re-sent with."""

from __future__ import annotations

from bridge import dlq
from bridge.dlq import coordinates, header
from bridge.replay.records import replay_headers
from tests.support.letters import DLQ, IN, letter

# --- headers ---------------------------------------------------------------------------------


def test_replay_headers_strip_errors_and_add_replay_headers() -> None:
    before = letter(
        7,
        "a",
        partition=3,
        source=(IN, 2, 41),
        extra=[
            (dlq.H_REPLAY_COUNT, b"1"),
            (dlq.H_REPLAY_ID, b"old-run"),
            (dlq.H_REPLAY_OF, b"talon.commands/0/1"),
            (dlq.H_REPLAY_DLQ, b"talon.commands.dlq/0/0"),
        ],
    )
    out = replay_headers(before, replay_id="run-2")
    names = [k for k, _ in out]
    assert out[0] == ("trace", b"t-7"), "the record's own headers first, in order"
    assert not [n for n in names if n.startswith("__connect.errors.")]
    assert [n for n in names if n.startswith("__talon.bridge.")] == [
        dlq.H_REPLAY_OF,
        dlq.H_REPLAY_ID,
        dlq.H_REPLAY_COUNT,
        dlq.H_REPLAY_DLQ,
    ], "error headers gone, replay headers once each"
    assert header(out, dlq.H_REPLAY_OF) == coordinates(IN, 2, 41)
    assert header(out, dlq.H_REPLAY_ID) == "run-2"
    assert header(out, dlq.H_REPLAY_COUNT) == "2"
    assert header(out, dlq.H_REPLAY_DLQ) == coordinates(DLQ, 3, 7)
    first = replay_headers(letter(1, "b"), replay_id="r")
    assert header(first, dlq.H_REPLAY_COUNT) == "1"
    # Without source coordinates, an earlier replay.of is the best reference there is.
    bare = letter(2, "c", original_headers=False, extra=[(dlq.H_REPLAY_OF, b"in/0/3")])
    assert header(replay_headers(bare, replay_id="r"), dlq.H_REPLAY_OF) == "in/0/3"
    assert (
        header(
            replay_headers(letter(3, "d", original_headers=False), replay_id="r"), dlq.H_REPLAY_OF
        )
        is None
    )


def test_replay_headers_carry_the_chain_position_and_token_once() -> None:
    poison = letter(0, "a", source=(IN, 1, 50), chain=(0, "t0"))
    follower = letter(
        1,
        "a",
        source=(IN, 1, 51),
        behind=poison,
        chain=(1, "t1"),
        extra=[(dlq.H_REPLAY_POSITION, b"9"), (dlq.H_REPLAY_TOKEN, b"stale")],
    )
    assert (follower.chain_position, follower.chain_token) == (1, "t1")
    out = replay_headers(follower, replay_id="r")
    assert [v for k, v in out if k == dlq.H_REPLAY_POSITION] == [b"1"]
    assert [v for k, v in out if k == dlq.H_REPLAY_TOKEN] == [b"t1"]
    assert header(out, dlq.H_REPLAY_OF) == coordinates(IN, 1, 51)
    legacy = replay_headers(letter(2, "b"), replay_id="r")
    assert header(legacy, dlq.H_REPLAY_TOKEN) is None


def test_replay_keeps_the_trace_context_of_the_dead_letter() -> None:
    parent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    before = letter(5, "a", extra=[("traceparent", parent), ("tracestate", b"v=1")])
    out = replay_headers(before, replay_id="r")
    assert header(out, "traceparent") == parent.decode()
    assert header(out, "tracestate") == "v=1"


def test_a_record_is_routed_back_to_the_application_it_went_to() -> None:
    went = letter(
        4,
        "a",
        application="fr",
        extra=[("talon-application", b"fr-old")],
    )
    assert went.application == "fr"
    out = replay_headers(went, replay_id="r", route_header="talon-application")
    assert [v for k, v in out if k == "talon-application"] == [b"fr"], "one routing header"
    assert header(out, dlq.H_APPLICATION) is None, "the dead letter's own header is dropped"
    # Without the option the record's own headers are kept as they were.
    plain = replay_headers(went, replay_id="r")
    assert [v for k, v in plain if k == "talon-application"] == [b"fr-old"]
    # A record that went to no application keeps its headers as they are.
    nowhere = letter(5, "b", extra=[("talon-application", b"it")])
    routed = replay_headers(nowhere, replay_id="r", route_header="talon-application")
    assert [v for k, v in routed if k == "talon-application"] == [b"it"]
