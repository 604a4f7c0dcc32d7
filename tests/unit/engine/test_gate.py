"""The API gate as a state machine: closing, probing, reopening and recovering."""

from __future__ import annotations

from bridge.engine.gate import OUTAGE_SESSIONS, OUTAGE_STREAK, ApiGate
from bridge.engine.retry import RETRY_AFTER_MARGIN

NO_RETRY_AFTER = 0.0


def _trip(gate: ApiGate, sessions: int = OUTAGE_SESSIONS) -> bool:
    tripped = False
    for i in range(OUTAGE_STREAK):
        tripped = gate.failed(f"s-{i % sessions}".encode())
    return tripped


def test_one_failing_session_never_closes_the_gate() -> None:
    gate = ApiGate(max_backoff=30.0)
    assert not any(gate.failed(b"s-1") for _ in range(10 * OUTAGE_STREAK))


def test_a_streak_across_sessions_means_an_outage() -> None:
    gate = ApiGate(max_backoff=30.0)
    for i in range(OUTAGE_STREAK - 1):
        assert not gate.failed(f"s-{i % OUTAGE_SESSIONS}".encode())
    assert gate.failed(b"s-0")


def test_a_success_breaks_the_streak() -> None:
    gate = ApiGate(max_backoff=30.0)
    for i in range(OUTAGE_STREAK - 1):
        gate.failed(f"s-{i % OUTAGE_SESSIONS}".encode())
    assert gate.succeeded() is None, "it never closed"
    assert not gate.failed(b"s-0")


def test_closing_probes_with_growing_backoff_until_a_success() -> None:
    gate = ApiGate(max_backoff=3.0)
    assert _trip(gate)
    assert gate.close("outage", 100.0, NO_RETRY_AFTER) == 100.5
    assert not gate.is_open and gate.closed_for("outage")
    assert gate.close("outage", 100.1, NO_RETRY_AFTER) is None, "closed already"
    assert gate.reopen(100.5, NO_RETRY_AFTER)
    assert gate.is_open and not gate.closed_for("outage")
    # The probe fails: the reason stands while probing, so it closes again, for longer.
    assert gate.failed(b"s-9")
    assert gate.close("outage", 101.0, NO_RETRY_AFTER) == 102.0
    assert gate.reopen(102.0, NO_RETRY_AFTER)
    assert gate.failed(b"s-9")
    assert gate.close("outage", 103.0, NO_RETRY_AFTER) == 105.0
    assert gate.reopen(105.0, NO_RETRY_AFTER)
    assert gate.failed(b"s-9")
    assert gate.close("outage", 106.0, NO_RETRY_AFTER) == 109.0, "capped at max_backoff"
    assert gate.reopen(109.0, NO_RETRY_AFTER)
    assert gate.succeeded() == "outage"
    assert gate.reason is None and gate.closures == 0
    assert not gate.failed(b"s-9"), "the streak starts over"


def test_the_gate_never_reopens_before_the_retry_after() -> None:
    gate = ApiGate(max_backoff=30.0)
    gate.close("outage", 10.0, 20.0)
    assert gate.reopen_at(10.5, 20.0) == 20.0 + RETRY_AFTER_MARGIN
    assert not gate.reopen(10.5, 20.0), "a Retry-After arrived meanwhile"
    assert not gate.is_open
    assert gate.reopen(20.0 + RETRY_AFTER_MARGIN, 20.0)


def test_only_429s_to_slowed_calls_close_the_gate_as_throttled() -> None:
    gate = ApiGate(max_backoff=30.0)
    sessions = [f"s-{i % OUTAGE_SESSIONS}".encode() for i in range(OUTAGE_STREAK)]
    assert not any(gate.throttled(s, slowed=False) for s in sessions * 3)
    assert [gate.throttled(s, slowed=True) for s in sessions][-1]
    # Retry-After says when: no backoff of its own.
    assert gate.close("throttled", 50.0, 55.0) == 50.0
    assert gate.reopen(55.0 + RETRY_AFTER_MARGIN, 55.0)
    assert gate.throttled(b"s-0", slowed=False), "still throttled while probing"


def test_a_rejected_key_is_reported_until_a_call_succeeds() -> None:
    gate = ApiGate(max_backoff=30.0)
    gate.close("auth", 0.0, NO_RETRY_AFTER)
    assert gate.auth_rejected and gate.closed_for("auth")
    assert gate.reopen(0.5, NO_RETRY_AFTER)
    assert gate.auth_rejected, "probing is not recovering"
    assert gate.succeeded() == "auth"
    assert not gate.auth_rejected


def test_a_success_while_closed_recovers_but_the_gate_waits_for_its_timer() -> None:
    gate = ApiGate(max_backoff=30.0)
    gate.close("outage", 0.0, NO_RETRY_AFTER)
    assert gate.succeeded() == "outage"
    assert not gate.is_open and not gate.closed_for("outage")
    assert gate.close("outage", 0.1, NO_RETRY_AFTER) is None
    assert gate.reopen(0.5, NO_RETRY_AFTER)
