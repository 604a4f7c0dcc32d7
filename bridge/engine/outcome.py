"""What a failed Talon.One call leads to: try again later, wait at the gate, or dead-letter.

Pure: the attempt count, the time since the first failure and the gate's verdict are passed
in, so every rule is unit-tested without a clock or a client.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, TypeAlias

from bridge.engine.gate import GateReason
from bridge.engine.retry import RetryPolicy
from bridge.errors import (
    ApiError,
    ConflictError,
    FatalApiError,
    PermanentApiError,
    RetryableApiError,
)

__all__ = ["GiveUp", "GiveUpReason", "Hold", "Outcome", "Retry", "decide"]

# The dead-letter reasons (`bridge.types.DeadLetterReason`) a failed call can end in.
GiveUpReason: TypeAlias = Literal["retries-exhausted", "permanent"]


@dataclass(frozen=True, slots=True)
class Retry:
    """Call again after `delay` seconds; the session waits, holding its place."""

    delay: float


@dataclass(frozen=True, slots=True)
class Hold:
    """No record is to blame: wait at the closed gate, spending no retry budget."""

    reason: GateReason


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Dead-letter the command."""

    reason: GiveUpReason


Outcome = Retry | Hold | GiveUp


def decide(
    exc: ApiError,
    *,
    attempts: int,
    elapsed: float,
    policy: RetryPolicy,
    hold: GateReason | None = None,
    rng: random.Random | None = None,
) -> Outcome:
    """The outcome of the `attempts`-th failed call, `elapsed` seconds after the first one.

    `hold` is the gate's verdict on this failure (see `ApiGate.throttled` / `failed`). A 409
    is bounded by elapsed time only; a rejected key always waits at the gate.
    """
    if isinstance(exc, FatalApiError):
        return Hold("auth")
    if hold is not None:
        return Hold(hold)
    if isinstance(exc, PermanentApiError) or not isinstance(exc, RetryableApiError):
        return GiveUp("permanent")
    if policy.exhausted(attempts, elapsed, conflict=isinstance(exc, ConflictError)):
        return GiveUp("retries-exhausted")
    return Retry(policy.delay(attempts, exc.retry_after, rng))
