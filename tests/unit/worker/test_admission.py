"""Places under the adaptive in-flight limit, and which answers teach it what."""

from __future__ import annotations

import asyncio

import pytest

from bridge.engine.concurrency import ConcurrencyLimit
from bridge.engine.pacing import Pacer
from bridge.errors import (
    ApiConnectionError,
    ApiTimeoutError,
    ConflictError,
    PermanentApiError,
    RateLimitedError,
    ServerError,
)
from bridge.metrics import Metrics
from bridge.worker.admission import Admission, is_drop


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _admission(ceiling: int, **kw: float) -> tuple[Admission, Metrics, Clock]:
    metrics, clock = Metrics(), Clock()
    limit = ConcurrencyLimit(ceiling, min_answers=2, **kw)  # type: ignore[arg-type]
    return Admission(Pacer(), limit, metrics, clock), metrics, clock


def _changes(metrics: Metrics, direction: str) -> float:
    sample = metrics.registry.get_sample_value(
        "bridge_in_flight_limit_changes_total", {"direction": direction}
    )
    return sample or 0.0


async def test_no_more_places_than_the_limit_first_come_first_served() -> None:
    admission, _, _ = _admission(3)
    for _ in range(3):
        await admission.enter()
    order: list[int] = []

    async def wait(i: int) -> None:
        await admission.enter()
        order.append(i)

    waiting = [asyncio.create_task(wait(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert order == [] and admission.in_use == 3
    admission.leave()
    await asyncio.sleep(0)
    assert order == [0]
    admission.leave()
    admission.leave()
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2] and admission.in_use == 3


async def test_a_cut_takes_effect_as_places_come_back_and_growth_wakes_waiters() -> None:
    admission, metrics, clock = _admission(10, floor=1)
    for _ in range(10):
        await admission.enter()
    clock.now = 1.0
    for _ in range(2):
        admission.failed(1.0, 0.5, RateLimitedError("429", status=429))
    assert admission.limit is not None and admission.limit.limit == 9
    assert _changes(metrics, "down") == 1
    admission.leave()
    admission.leave()  # 8 in use, below 9: a place is free again
    waiter = asyncio.create_task(admission.enter())
    await asyncio.sleep(0)
    assert waiter.done() and admission.in_use == 9
    late = asyncio.create_task(admission.enter())
    await asyncio.sleep(0)
    assert not late.done()
    clock.now = 2.0
    admission.accepted(1.5)
    admission.accepted(1.5)  # a healthy epoch with the limit in use: it grows, and wakes
    await asyncio.sleep(0)
    assert admission.limit.limit == 10 and late.done()
    assert _changes(metrics, "up") == 1


async def test_a_server_stopped_while_waiting_leaks_no_place() -> None:
    admission, _, _ = _admission(1)
    await admission.enter()
    waiter = asyncio.create_task(admission.enter())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    admission.leave()
    assert admission.in_use == 0
    await admission.enter()
    assert admission.in_use == 1


async def test_without_an_adaptive_limit_places_are_never_refused() -> None:
    admission = Admission(Pacer(), None, Metrics(), Clock())
    for _ in range(1000):
        await admission.enter()
    admission.failed(1.0, 0.5, RateLimitedError("429", status=429))
    assert admission.in_use == 1000


@pytest.mark.parametrize(
    ("exc", "drop"),
    [
        (RateLimitedError("429", status=429), True),
        (ServerError("503", status=503), True),
        (ApiTimeoutError("slow"), True),
        (ServerError("500", status=500), False),
        (ConflictError("409", status=409), False),
        (ApiConnectionError("reset"), False),
        (PermanentApiError("400", status=400), False),
    ],
)
def test_drops_are_429_503_and_timeouts(exc: Exception, drop: bool) -> None:
    assert is_drop(exc) is drop  # type: ignore[arg-type]
