"""What a failed call leads to: retry, hold at the gate, or dead-letter."""

from __future__ import annotations

import random

import pytest

from bridge.engine.gate import GateReason
from bridge.engine.outcome import GiveUp, Hold, Outcome, Retry, decide
from bridge.engine.retry import RETRY_AFTER_MARGIN, RetryPolicy
from bridge.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    ConflictError,
    FatalApiError,
    PermanentApiError,
    RateLimitedError,
    ServerError,
)

POLICY = RetryPolicy(base_delay=0.1, max_delay=2.0, max_attempts=5, max_elapsed=60.0)


def _decide(
    exc: ApiError, attempts: int = 1, elapsed: float = 0.0, hold: GateReason | None = None
) -> Outcome:
    return decide(
        exc, attempts=attempts, elapsed=elapsed, policy=POLICY, hold=hold, rng=random.Random(1)
    )


@pytest.mark.parametrize(
    "exc",
    [ServerError("503"), ApiTimeoutError("slow"), ApiConnectionError("reset"), ConflictError("")],
)
def test_a_retryable_failure_is_tried_again_within_the_backoff_cap(exc: ApiError) -> None:
    outcome = _decide(exc, attempts=3)
    assert isinstance(outcome, Retry)
    assert 0.0 <= outcome.delay <= 0.4


def test_retry_after_is_a_floor() -> None:
    outcome = _decide(RateLimitedError("429", retry_after=5.0))
    assert isinstance(outcome, Retry)
    assert outcome.delay >= 5.0 + RETRY_AFTER_MARGIN


def test_attempts_run_out() -> None:
    assert _decide(ServerError("503"), attempts=5) == GiveUp("retries-exhausted")


def test_a_conflict_is_bounded_by_elapsed_time_only() -> None:
    assert isinstance(_decide(ConflictError("busy"), attempts=500, elapsed=59.0), Retry)
    assert _decide(ConflictError("busy"), attempts=2, elapsed=60.0) == GiveUp("retries-exhausted")


@pytest.mark.parametrize("exc", [PermanentApiError("400", status=400), ApiError("odd")])
def test_a_request_that_can_never_succeed_is_dead_lettered_at_once(exc: ApiError) -> None:
    assert _decide(exc) == GiveUp("permanent")


def test_a_rejected_key_waits_at_the_gate_whatever_the_budget() -> None:
    assert _decide(FatalApiError("401", status=401), attempts=99, elapsed=999.0) == Hold("auth")


def test_the_gates_verdict_spends_no_budget() -> None:
    assert _decide(ServerError("503"), attempts=5, hold="outage") == Hold("outage")
    assert _decide(RateLimitedError("429"), hold="throttled") == Hold("throttled")
