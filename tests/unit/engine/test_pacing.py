"""The pacer's rules, driven by a model of an API with a token-bucket limit (no clock)."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

import pytest

from bridge.engine.pacing import Pacer
from bridge.simulator.faults import TokenBucket


@dataclass
class Run:
    applied: int
    rejected: int
    seconds: float
    pacer: Pacer

    @property
    def per_second(self) -> float:
        return self.applied / self.seconds


def drive(
    pacer: Pacer,
    *,
    limit: float | None,
    burst: int = 20,
    random_429: float = 0.0,
    seconds: float = 60.0,
    latency: float = 0.02,
    concurrency: int = 64,
    start: float = 0.0,
) -> Run:
    """A bridge with `concurrency` callers against an API limited to `limit` calls/s.

    Callers take send slots one at a time, as the worker's pacing lock makes them do; each
    answer arrives `latency` seconds after its call.
    """
    rng = random.Random(7)
    bucket = TokenBucket(limit, burst, start) if limit is not None else None
    idle = concurrency
    events: list[tuple[float, int, str, float, bool]] = [(start, 0, "send", 0.0, False)]
    seq = 1
    applied = rejected = 0
    waiting = False
    end = start + seconds
    while events:
        now, _, kind, sent_at, ok = heapq.heappop(events)
        if now > end:
            break
        if kind == "answer":
            if ok:
                pacer.on_accepted(now, sent_at)
            else:
                pacer.on_throttled(now, sent_at, 1.0)
            idle += 1
            if waiting:
                waiting = False
                heapq.heappush(events, (now, seq, "send", 0.0, False))
                seq += 1
            continue
        if idle == 0:
            waiting = True
            continue
        send = now + pacer.reserve(now)
        idle -= 1
        ok = rng.random() >= random_429 and (bucket is None or bucket.take(send) is None)
        applied += ok
        rejected += not ok
        heapq.heappush(events, (send + latency, seq, "answer", send, ok))
        heapq.heappush(events, (send, seq + 1, "send", 0.0, False))
        seq += 2
    return Run(applied, rejected, seconds, pacer)


@pytest.mark.parametrize("limit", [150.0, 240.0, 1200.0, 2000.0])
def test_uses_a_rate_limit_fully_and_wastes_few_calls(limit: float) -> None:
    run = drive(Pacer(), limit=limit)
    assert run.per_second >= 0.9 * limit
    assert run.rejected / run.applied <= 0.15


def test_a_start_up_backlog_does_not_go_out_at_once_into_a_low_limit() -> None:
    # 256 callers with 5 ms answers could send thousands of calls before the first answer.
    run = drive(Pacer(), limit=66, concurrency=256, latency=0.005, seconds=20)
    assert run.per_second >= 0.95 * 66
    assert run.rejected / run.applied <= 0.15


def test_a_limit_met_after_the_slow_start_is_found_without_starving() -> None:
    # Unlimited at first, so the slow start ends; then the API starts refusing. The first
    # answers after that can all be 429s, which must not cut the rate to nearly nothing.
    pacer = Pacer()
    drive(pacer, limit=None, concurrency=256, latency=0.005, seconds=10)
    assert pacer.limit is None
    run = drive(pacer, limit=66, concurrency=256, latency=0.005, seconds=20, start=10)
    assert run.per_second >= 0.9 * 66


def test_without_a_limit_nothing_is_paced() -> None:
    pacer = Pacer()
    start = drive(pacer, limit=None, seconds=10)
    # The slow start reaches 3,200 calls/s in under two seconds and then steps aside.
    assert start.rejected == 0
    assert pacer.limit is None
    assert start.per_second >= 0.85 * 64 / 0.02
    run = drive(pacer, limit=None, seconds=10, start=10)
    assert run.per_second == pytest.approx(64 / 0.02, rel=0.01)


def test_first_429_starts_below_what_the_api_accepted_while_sending() -> None:
    pacer = Pacer(max_answers=100)
    for i in range(10):  # 1,000 calls a second, 40% of them rejected
        sent = 5 + i / 1000
        pacer.reserve(sent)
        if i % 5 < 2:
            pacer.on_throttled(sent + 0.02, sent, 1.0)
        else:
            pacer.on_accepted(sent + 0.02, sent)
    # Far above a limit, the first cut comes after `min_answers` answers, not a second later:
    # 10 sends in 9 ms, 60% of them accepted.
    assert pacer.limit == pytest.approx(0.9 * 10 / 0.009 * 0.6, rel=0.02)


def test_after_a_burst_is_cut_the_rate_doubles_until_429s_show_again() -> None:
    pacer = Pacer()
    for i in range(10):  # a start-up burst: every call at once, most rejected
        pacer.reserve(0.0)
        if i < 3:
            pacer.on_accepted(0.005, 0.0)
        else:
            pacer.on_throttled(0.005, 0.0, 1.0)
    cut = pacer.limit
    assert cut is not None
    now = 0.005
    while now < 5.0:  # every call accepted, sends waiting for the limit
        now += 1.0 / (pacer.limit or 1.0)
        pacer.reserve(now)
        pacer.on_accepted(now + 0.005, now)
    assert pacer.limit is not None and pacer.limit >= 8 * cut


def test_idle_time_does_not_count_as_a_slow_rate() -> None:
    pacer = Pacer(min_answers=20, max_answers=20)
    for i in range(20):  # bursts at 1,000/s, with a second of nothing between them
        sent = i // 10 + (i % 10) / 1000
        pacer.reserve(sent)
        if i % 2:
            pacer.on_throttled(sent + 0.02, sent, 1.0)
        else:
            pacer.on_accepted(sent + 0.02, sent)
    # Counted over the 20 ms spent sending (and one short gap), not over the whole second.
    assert pacer.limit is not None and pacer.limit > 100


def test_grows_back_when_the_limit_is_raised() -> None:
    pacer = Pacer()
    drive(pacer, limit=200, seconds=30)
    assert pacer.limit is not None and pacer.limit < 260
    run = drive(pacer, limit=1000, seconds=30, start=30)
    assert run.per_second >= 750  # the ramp up included


def test_random_429s_that_do_not_follow_the_rate_are_tolerated() -> None:
    run = drive(Pacer(), limit=None, random_429=0.05, seconds=30)
    assert run.pacer.noise > 0
    # Cutting on every epoch would leave a few calls a second.
    assert run.per_second >= 0.3 * 64 / 0.02


def test_a_ceiling_caps_the_rate_and_the_adaptive_rate_stays_below() -> None:
    pacer = Pacer(ceiling=100)
    run = drive(pacer, limit=None, seconds=10)
    assert run.per_second == pytest.approx(100, rel=0.05)
    pacer.set_ceiling(50)
    assert pacer.limit == 50
    run = drive(pacer, limit=40, seconds=30, start=10)
    assert 36 <= run.per_second <= 41
    assert pacer.limit is not None and pacer.limit <= 50


def test_a_ceiling_of_nothing_is_the_minimum_rate() -> None:
    # A member owning no partition has no share of the group's budget.
    pacer = Pacer(min_rate=1.0, burst=0)
    pacer.set_ceiling(0.0)
    assert pacer.limit == 1.0
    assert [pacer.reserve(0.0) for _ in range(2)] == pytest.approx([0.0, 1.0])


def test_a_raised_ceiling_lifts_a_rate_it_held_but_not_one_429s_lowered() -> None:
    pacer = Pacer(ceiling=20)
    pacer.set_ceiling(60)  # e.g. a larger share of the group's budget
    assert pacer.limit == 60
    pacer = Pacer(ceiling=100, min_answers=1, max_answers=1)
    pacer.reserve(0.0)
    pacer.on_throttled(1.0, 0.0, None)
    learnt = pacer.limit
    assert learnt is not None and learnt < 100
    pacer.set_ceiling(200)
    assert pacer.limit == learnt


def test_reserve_spaces_sends_at_the_limit() -> None:
    pacer = Pacer(ceiling=10, burst=0)
    waits = [pacer.reserve(0.0) for _ in range(3)]
    assert waits == pytest.approx([0.0, 0.1, 0.2])


def test_a_429_to_a_call_sent_before_the_last_decision_is_an_echo() -> None:
    pacer = Pacer(min_answers=1, max_answers=1)
    pacer.reserve(0.0)
    assert pacer.on_throttled(1.0, 0.0, None)  # decides: cuts
    assert not pacer.on_throttled(1.01, 0.5, None)  # sent before that decision
    assert pacer.on_throttled(1.5, 1.2, None)


def test_retry_after_deadline_is_the_latest_seen_from_each_answer() -> None:
    pacer = Pacer()
    assert pacer.retry_after_in_force(0.0) == 0.0
    pacer.on_retry_after(10.0, 5.0)
    pacer.on_retry_after(11.0, 1.0)  # earlier deadline: the later one stands
    assert pacer.not_before == 15.0
    pacer.on_throttled(12.0, 11.9, 10.0)
    assert pacer.not_before == 22.0
    assert pacer.retry_after_in_force(20.0) == 2.0
    assert pacer.retry_after_in_force(30.0) == 0.0
    pacer.on_retry_after(31.0, None)
    assert pacer.not_before == 22.0
