"""A group-wide API budget and one member's share of it (pure, no I/O).

`BRIDGE_TALON_MAX_RPS` caps the calls per second of the whole consumer group. Records are
spread over the group by partition, so each member takes the budget in proportion to the
input partitions it owns: budget * owned / total. A member owning nothing takes nothing, and
the shares add up to the budget once every partition has an owner. During a handover the old
owner keeps its share until its revoke callback returns, and the next owner gets the
partition only after that, so the shares never add up to more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bridge.types import TP

__all__ = ["GroupBudget"]


class GroupBudget:
    """The budget, the input topics' partition counts and this member's partitions."""

    def __init__(self, budget: float) -> None:
        if budget <= 0:
            raise ValueError("the budget must be positive")
        self.budget = budget
        self._counts: dict[str, int] = {}
        self._owned: dict[str, set[int]] = {}

    def set_counts(self, counts: Mapping[str, int]) -> None:
        """Partitions per input topic, as the cluster describes them."""
        self._counts = dict(counts)

    def set_owned(self, partitions: Iterable[TP]) -> None:
        """The input partitions this member owns now."""
        owned: dict[str, set[int]] = {}
        for topic, partition in partitions:
            owned.setdefault(topic, set()).add(partition)
        self._owned = owned

    @property
    def owned(self) -> int:
        return sum(len(ps) for ps in self._owned.values())

    @property
    def total(self) -> int:
        """Partitions of the input topics. A partition owned proves its topic has at least
        that many (partition numbers start at 0), so metadata older than an assignment of
        new partitions cannot make the share larger than it is."""
        topics = self._counts.keys() | self._owned.keys()
        return sum(
            max(self._counts.get(t, 0), max(self._owned.get(t, ()), default=-1) + 1) for t in topics
        )

    @property
    def share(self) -> float:
        """Calls per second this member may make."""
        owned = self.owned
        return self.budget * owned / self.total if owned else 0.0
