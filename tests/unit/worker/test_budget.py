"""The member's share of the group budget follows its partitions and the topics' counts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bridge.avro.codec import Codec
from bridge.engine.pacing import Pacer
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.talon import TalonClient
from bridge.talon.transports.mock import MockTransport, answer
from bridge.worker.budget import BudgetKeeper
from bridge.worker.handlers import Handlers
from bridge.worker.pipeline import Pipeline
from bridge.worker.rebalance import Rebalance


class Counts:
    """The cluster's partition counts, as the admin client would report them."""

    def __init__(self, counts: dict[str, int] | None) -> None:
        self.counts = counts
        self.asked = 0

    def __call__(self, topics: Sequence[str]) -> dict[str, int] | None:
        self.asked += 1
        if self.counts is None:
            return None
        return {t: self.counts.get(t, 0) for t in topics}


def _rebalance(keeper: BudgetKeeper) -> Rebalance:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        input_topics=["a", "b"],
        talon_base_url="https://talon.test",
        talon_api_key="k",
    )
    client = TalonClient(
        "https://talon.test", "k", transport=MockTransport(lambda r: answer(200, json={}))
    )
    metrics = Metrics()
    pipeline = Pipeline(settings, codec=Codec(), handlers=Handlers(client), metrics=metrics)
    return Rebalance(pipeline, metrics, on_owned=keeper.owned)


async def test_the_pacer_ceiling_follows_every_assignment_change() -> None:
    pacer, counts = Pacer(), Counts({"a": 6, "b": 6})
    keeper = BudgetKeeper(120.0, ["a", "b"], pacer, counts)
    await keeper.recount()
    rebalance = _rebalance(keeper)
    rebalance.on_assigned([("a", 0), ("a", 1), ("b", 0)])
    assert keeper.share == pytest.approx(30.0)
    assert pacer.limit == pytest.approx(30.0)
    rebalance.release([("a", 1)], 0)  # revoked and handed over
    assert keeper.share == pytest.approx(20.0) and pacer.limit == pytest.approx(20.0)
    rebalance.on_assigned([("b", 1), ("b", 2), ("b", 3), ("b", 4)])
    assert keeper.share == pytest.approx(60.0) and pacer.limit == pytest.approx(60.0)
    rebalance.on_lost([("a", 0), ("b", 0), ("b", 1), ("b", 2), ("b", 3), ("b", 4)])
    assert keeper.share == 0.0
    # Owning nothing, nothing is sent: the pacer keeps its last ceiling.
    assert pacer.limit == pytest.approx(60.0)


async def test_partitions_added_to_a_topic_shrink_the_share_at_the_next_count() -> None:
    pacer, counts = Pacer(), Counts({"a": 4, "b": 0})
    keeper = BudgetKeeper(40.0, ["a", "b"], pacer, counts)
    await keeper.recount()
    keeper.owned({("a", 0), ("a", 1)})
    assert keeper.share == pytest.approx(20.0)
    counts.counts = {"a": 8, "b": 0}
    await keeper.recount()
    assert keeper.share == pytest.approx(10.0) and pacer.limit == pytest.approx(10.0)
    counts.counts = None  # the cluster does not answer: the last counts stand
    await keeper.recount()
    assert keeper.share == pytest.approx(10.0)


async def test_an_assignment_change_asks_for_the_counts_again() -> None:
    counts = Counts({"a": 4})
    keeper = BudgetKeeper(40.0, ["a"], Pacer(), counts)
    keeper.owned({("a", 0)})
    assert keeper.share == pytest.approx(40.0)  # nothing known yet but the partition owned
    while counts.asked == 0:
        await asyncio.sleep(0.001)
    while keeper.share != pytest.approx(10.0):
        await asyncio.sleep(0.001)
