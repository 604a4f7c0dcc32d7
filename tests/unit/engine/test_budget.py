"""A member's share of the group-wide API budget."""

from __future__ import annotations

import pytest

from bridge.engine.budget import GroupBudget


def test_share_follows_the_partitions_owned() -> None:
    budget = GroupBudget(120.0)
    budget.set_counts({"a": 8, "b": 4})
    budget.set_owned([("a", 0), ("a", 1), ("b", 3)])
    assert (budget.owned, budget.total) == (3, 12)
    assert budget.share == pytest.approx(30.0)


def test_a_member_owning_nothing_takes_nothing() -> None:
    budget = GroupBudget(120.0)
    budget.set_counts({"a": 8})
    budget.set_owned([])
    assert budget.share == 0.0


def test_shares_of_the_whole_group_add_up_to_the_budget() -> None:
    counts = {"a": 7, "b": 5}
    partitions = [(t, p) for t, n in counts.items() for p in range(n)]
    members = [partitions[i::5] for i in range(5)]
    shares = []
    for owned in members:
        budget = GroupBudget(100.0)
        budget.set_counts(counts)
        budget.set_owned(owned)
        shares.append(budget.share)
    assert sum(shares) == pytest.approx(100.0)
    assert len(set(shares)) > 1  # 12 partitions over 5 members: not all alike


def test_recomputed_when_the_assignment_or_the_counts_change() -> None:
    budget = GroupBudget(60.0)
    budget.set_counts({"a": 6})
    budget.set_owned([("a", 0), ("a", 1), ("a", 2)])
    assert budget.share == pytest.approx(30.0)
    budget.set_owned([("a", 0)])  # a revoke
    assert budget.share == pytest.approx(10.0)
    budget.set_counts({"a": 12})  # partitions added to the topic
    assert budget.share == pytest.approx(5.0)


def test_an_owned_partition_beyond_stale_counts_shrinks_the_share() -> None:
    budget = GroupBudget(60.0)
    budget.set_counts({"a": 2})  # metadata from before partitions were added
    budget.set_owned([("a", 0), ("a", 5)])
    assert budget.total == 6
    assert budget.share == pytest.approx(20.0)
    budget.set_counts({})  # not described yet
    assert budget.total == 6


def test_the_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        GroupBudget(0.0)
