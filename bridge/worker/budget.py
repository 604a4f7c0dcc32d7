"""The member's share of the group-wide API budget (`BRIDGE_TALON_MAX_RPS`), kept as the
pacer's ceiling: recomputed on every assignment change and whenever the input topics'
partition counts change (asked again every `RECOUNT_S` seconds, and after each change)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

from bridge.engine.budget import GroupBudget
from bridge.engine.pacing import Pacer
from bridge.kafka.partitions import PartitionCounts
from bridge.settings import Settings
from bridge.types import TP

__all__ = ["RECOUNT_S", "BudgetKeeper", "budget_keeper"]

log = logging.getLogger(__name__)

# Partitions added to an input topic reach the group's assignment within librdkafka's metadata
# refresh (5 minutes by default); counting them sooner lowers this share before others take
# the new partitions' shares.
RECOUNT_S = 30.0

Count = Callable[[Sequence[str]], dict[str, int] | None]


class BudgetKeeper:
    """Sets the pacer's ceiling to budget * owned / total input partitions."""

    def __init__(self, budget: float, topics: Sequence[str], pacer: Pacer, count: Count) -> None:
        self._budget = GroupBudget(budget)
        self._topics = list(topics)
        self._pacer = pacer
        self._count = count
        self._recounts: set[asyncio.Task[None]] = set()

    @property
    def budget(self) -> float:
        return self._budget.budget

    @property
    def share(self) -> float:
        return self._budget.share

    def owned(self, partitions: Iterable[TP]) -> None:
        """The member's partitions changed: assigned, revoked (after the handover) or lost."""
        self._budget.set_owned(partitions)
        self._apply()
        if not self._recounts:
            task = asyncio.get_running_loop().create_task(self.recount())
            self._recounts.add(task)
            task.add_done_callback(self._recounts.discard)

    async def recount(self) -> None:
        """Ask the cluster for the partition counts (in a thread) and apply them."""
        counts = await asyncio.to_thread(self._count, self._topics)
        if counts is not None:
            self._budget.set_counts(counts)
            self._apply()

    async def run(self) -> None:
        """Recount every `RECOUNT_S` seconds, for partitions added to a topic."""
        while True:
            await asyncio.sleep(RECOUNT_S)
            await self.recount()

    def _apply(self) -> None:
        share = self._budget.share
        # Owning nothing, the member sends nothing: the pacer keeps what it learnt.
        if share > 0:
            self._pacer.set_ceiling(share)
        log.debug("budget share", extra={"calls_per_second": round(share, 3)})


def budget_keeper(settings: Settings, pacer: Pacer) -> BudgetKeeper | None:
    """The worker's keeper of `BRIDGE_TALON_MAX_RPS`, or None without a budget."""
    if settings.talon_max_rps is None:
        return None
    counter: list[PartitionCounts] = []

    def count(topics: Sequence[str]) -> dict[str, int] | None:
        # Called in a thread; one admin client for the worker's life, made on first use.
        if not counter:
            counter.append(PartitionCounts(settings.librdkafka_common()))
        return counter[0](topics)

    return BudgetKeeper(settings.talon_max_rps, settings.input_topics, pacer, count)
