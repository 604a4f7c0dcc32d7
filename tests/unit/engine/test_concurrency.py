"""The adaptive in-flight limit's rules, driven by models of an API (no clock)."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from bridge.engine.concurrency import ConcurrencyLimit


@dataclass
class Run:
    limits: list[int] = field(default_factory=list)
    answered: int = 0
    end: float = 0.0


def drive(
    lim: ConcurrencyLimit,
    *,
    latency: Callable[[float, int], float],
    dropped: Callable[[float, int], bool] = lambda now, n: False,
    demand: int = 1000,
    start: float = 0.0,
    seconds: float = 30.0,
) -> Run:
    """`demand` callers always ready to send; a call goes out while fewer than the limit run,
    and is answered `latency(now, in_use)` seconds later, a drop when `dropped(now, in_use)`."""
    run = Run()
    in_use = 0
    answers: list[tuple[float, int, float, bool]] = []
    seq = 0
    now = start
    end = start + seconds
    while now <= end:
        while in_use < min(lim.limit, demand):
            in_use += 1
            seq += 1
            heapq.heappush(answers, (now + latency(now, in_use), seq, now, dropped(now, in_use)))
        now, _, sent_at, drop = heapq.heappop(answers)
        in_use -= 1
        lim.on_answer(now, sent_at, dropped=drop, in_use=in_use + 1)
        run.answered += 1
        run.limits.append(lim.limit)
    run.end = now
    return run


def steady(seconds: float) -> Callable[[float, int], float]:
    return lambda now, n: seconds


def test_starts_at_the_ceiling_and_stays_there_when_healthy() -> None:
    lim = ConcurrencyLimit(256)
    run = drive(lim, latency=steady(0.02), seconds=5.0)
    assert run.answered > 50_000
    assert set(run.limits) == {256}


def test_a_burst_of_drops_cuts_once_per_round_trip() -> None:
    lim = ConcurrencyLimit(100, min_answers=20)
    # 100 calls sent together, all answered 429 at once: one cut, not a hundred.
    for i in range(100):
        lim.on_answer(0.1 + i * 1e-4, 0.0, dropped=True, in_use=100 - i)
    assert lim.limit == 90


def test_drops_cut_down_to_the_floor_and_no_lower() -> None:
    lim = ConcurrencyLimit(256, floor=4)
    run = drive(lim, latency=steady(0.02), dropped=lambda now, n: True)
    assert run.limits[-1] == 4
    assert min(run.limits) == 4
    # Each cut waited for answers to calls sent after the previous one.
    assert len(set(run.limits)) > 10


def test_a_few_drops_below_the_tolerance_do_not_cut() -> None:
    lim = ConcurrencyLimit(64, drop_tolerance=0.05)
    count = 0

    def one_in_fifty(now: float, n: int) -> bool:
        nonlocal count
        count += 1
        return count % 50 == 0

    run = drive(lim, latency=steady(0.02), dropped=one_in_fifty, seconds=5.0)
    assert set(run.limits) == {64}


def test_grows_back_to_the_ceiling_once_healthy() -> None:
    lim = ConcurrencyLimit(256)
    drive(lim, latency=steady(0.02), dropped=lambda now, n: now < 5.0, seconds=5.0)
    assert lim.limit < 16
    run = drive(lim, latency=steady(0.02), start=5.0, seconds=10.0)
    assert run.limits[-1] == 256
    assert max(run.limits) == 256
    # Back within a few dozen round trips, not minutes.
    first = next(i for i, v in enumerate(run.limits) if v == 256)
    assert first < run.answered / 4


def test_an_unused_limit_does_not_grow() -> None:
    lim = ConcurrencyLimit(256)
    drive(lim, latency=steady(0.02), dropped=lambda now, n: True, seconds=0.3)
    low = lim.limit
    assert 4 < low < 256
    # Only three callers: the limit is never half in use, so nothing shows it could be higher.
    run = drive(lim, latency=steady(0.02), demand=3, start=2.0, seconds=10.0)
    assert run.limits[-1] == run.limits[len(run.limits) // 10] <= low * 1.1 + 1


def test_latency_rising_with_the_load_holds_the_limit_near_the_knee() -> None:
    lim = ConcurrencyLimit(256, tolerance=2.0, window=30.0)
    knee = 40
    run = drive(lim, latency=steady(0.02), seconds=5.0)
    assert set(run.limits) == {256}
    # Now the API serves `knee` calls at once: beyond that, calls queue and take longer.
    run = drive(lim, latency=lambda now, n: 0.02 * max(1.0, n / knee), start=5.0, seconds=20.0)
    settled = run.limits[len(run.limits) // 2 :]
    # Down to where latency is back within the tolerance, and never below what the API
    # serves at once: no throughput is given up.
    assert max(settled) <= 2 * knee * 1.15
    assert min(settled) >= knee
    # Healthy again: back to the ceiling.
    run = drive(lim, latency=steady(0.02), start=run.end, seconds=5.0)
    assert run.limits[-1] == 256


def test_an_api_slower_for_good_becomes_the_new_normal() -> None:
    lim = ConcurrencyLimit(256, window=5.0)
    drive(lim, latency=steady(0.02), seconds=2.0)
    # Five times slower from t=2 on, whatever the load: cut at first, then, once the fast
    # epochs leave the window, grown back to the ceiling.
    run = drive(lim, latency=steady(0.1), start=2.0, seconds=15.0)
    assert min(run.limits) < 256
    assert run.limits[-1] == 256
    assert lim.baseline == pytest.approx(0.1)


def test_a_ceiling_below_the_floor_is_both() -> None:
    lim = ConcurrencyLimit(2, floor=4)
    assert (lim.limit, lim.floor, lim.ceiling) == (2, 2, 2)
    drive(lim, latency=steady(0.02), dropped=lambda now, n: True, seconds=2.0)
    assert lim.limit == 2


def test_reports_the_direction_of_each_change() -> None:
    lim = ConcurrencyLimit(100, min_answers=2)
    assert lim.on_answer(1.0, 0.9, dropped=True, in_use=100) is None
    assert lim.on_answer(1.0, 0.9, dropped=True, in_use=100) == "down"
    assert lim.limit == 90
    assert lim.on_answer(1.2, 1.1, dropped=False, in_use=90) is None
    assert lim.on_answer(1.2, 1.1, dropped=False, in_use=90) == "up"
    assert lim.limit == 99


@pytest.mark.parametrize(("ceiling", "decrease"), [(0, 0.9), (10, 1.0), (10, 0.0)])
def test_rejects_nonsense(ceiling: int, decrease: float) -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimit(ceiling, decrease=decrease)
