"""Per-key sequencing: strict FIFO per key, any number of keys at once.

Every item holds one or more keys (its session; a trackEventV2 also its profile). Items are
queued on each of their keys in arrival order, and an item may run only when it is at the head
of all its queues. Because all items enter in one global order, the oldest waiting item is
always at the head of every queue it is in, so the scheme cannot deadlock. Head-of-line
blocking is per key, never per partition.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["Sequenced", "Sequencer"]

T = TypeVar("T")


class Sequenced(Generic[T]):
    """An item in the sequencer, with the number of its queues where it is not yet at the head."""

    __slots__ = ("blocked", "item", "keys")

    def __init__(self, item: T, keys: tuple[Hashable, ...]) -> None:
        self.item = item
        self.keys = keys
        self.blocked = 0


class Sequencer(Generic[T]):
    """FIFO queues per key. Not thread-safe: one event loop owns it."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[Sequenced[T]]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def active_keys(self) -> int:
        return len(self._queues)

    def add(self, item: T, keys: Iterable[Hashable]) -> Sequenced[T]:
        """Queue `item`; `entry.blocked == 0` means it may run now."""
        entry = Sequenced(item, tuple(dict.fromkeys(keys)))
        queues = self._queues
        for key in entry.keys:
            q = queues.get(key)
            if q is None:
                queues[key] = deque((entry,))
            else:
                q.append(entry)
                entry.blocked += 1
        self._size += 1
        return entry

    def release(self, entry: Sequenced[T]) -> list[Sequenced[T]]:
        """Remove a finished head item; returns the items that became runnable."""
        if entry.blocked:
            raise ValueError("only a runnable item can be released")
        ready: list[Sequenced[T]] = []
        queues = self._queues
        for key in entry.keys:
            q = queues[key]
            if q[0] is not entry:
                raise ValueError("item is not at the head of its queue")
            q.popleft()
            if q:
                head = q[0]
                head.blocked -= 1
                if head.blocked == 0:
                    ready.append(head)
            else:
                del queues[key]
        self._size -= 1
        return ready

    def remove_where(
        self, predicate: Callable[[T], bool]
    ) -> tuple[list[Sequenced[T]], list[Sequenced[T]]]:
        """Drop every queued item matching `predicate`, wherever it waits.

        Returns (removed, became_runnable). Used on revoke for records that never started.
        """
        doomed = {id(e): e for q in self._queues.values() for e in q if predicate(e.item)}
        if not doomed:
            return [], []
        ready: dict[int, Sequenced[T]] = {}
        for key in list(self._queues):
            q = self._queues[key]
            old_head = q[0]
            kept = deque(e for e in q if id(e) not in doomed)
            if not kept:
                del self._queues[key]
                continue
            self._queues[key] = kept
            if old_head is not kept[0]:
                # The new head moved up: recount its blocked queues from scratch below.
                ready[id(kept[0])] = kept[0]
        became: list[Sequenced[T]] = []
        for e in ready.values():
            e.blocked = sum(1 for k in e.keys if self._queues[k][0] is not e)
            if e.blocked == 0:
                became.append(e)
        self._size -= len(doomed)
        return list(doomed.values()), became
