"""Per-key sequencing: strict FIFO per key, plus locks, any number of keys at once.

Every item holds one or more *ordered* keys (its session) and, optionally, *lock* keys (a
trackEventV2 also holds its profile) and *quota* keys (every command of a profile, when the
sequencer has a `quota`). Items queue on their ordered keys in arrival order, and an item is
*eligible* when it is at the head of all of them. Only then does it ask for its locks; it runs
once it holds them all, and releases everything when it finishes. A lock has one holder; a
quota key has at most `quota` holders at once, so one hot profile cannot take every call in
flight.

Order matters within a session; for a profile only mutual exclusion does (Talon.One rejects
parallel requests on one profile, but events of different sessions have no order between
them). Taking locks only when eligible keeps a session that is stuck (retrying, or waiting for
its own earlier command) from blocking other sessions of the same customer profile.

Deadlock freedom: all ordered queues are entered in one global order, so the oldest waiting
item is at the head of all its ordered queues; a lock is held only by a running item, which
releases it when it finishes; and an item that waits for locks holds none (all or nothing).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["Sequenced", "Sequencer"]

T = TypeVar("T")


class Sequenced(Generic[T]):
    """An item in the sequencer.

    `blocked` counts its ordered queues where it is not yet at the head; `runnable` is true
    once it is eligible and holds its locks.
    """

    __slots__ = ("blocked", "item", "keys", "locks", "quotas", "runnable")

    def __init__(
        self,
        item: T,
        keys: tuple[Hashable, ...],
        locks: tuple[Hashable, ...],
        quotas: tuple[Hashable, ...] = (),
    ) -> None:
        self.item = item
        self.keys = keys
        self.locks = locks
        self.quotas = quotas
        self.blocked = 0
        self.runnable = False


class Sequencer(Generic[T]):
    """FIFO queues per ordered key, exclusive locks and quotas (`quota` holders per quota key,
    unset: quota keys are ignored). Not thread-safe: one loop owns it."""

    def __init__(
        self, quota: int | None = None, on_quota_wait: Callable[[], None] | None = None
    ) -> None:
        if quota is not None and quota < 1:
            raise ValueError("a quota admits at least one holder")
        self._quota = quota
        # Called when a quota key makes an eligible item wait (the operator's counter).
        self._on_quota_wait = on_quota_wait
        self._queues: dict[Hashable, deque[Sequenced[T]]] = {}
        self._owners: dict[Hashable, Sequenced[T]] = {}  # lock key -> holder
        self._held: dict[Hashable, int] = {}  # quota key -> holders
        self._waiters: dict[Hashable, deque[Sequenced[T]]] = {}  # lock key -> eligible items
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def active_keys(self) -> int:
        return len(self._queues) + len(self._owners)

    def queued(self, key: Hashable) -> int:
        """Items waiting on or holding ordered key `key`."""
        q = self._queues.get(key)
        return len(q) if q is not None else 0

    def last(self, key: Hashable) -> T | None:
        """The newest item on ordered key `key`."""
        q = self._queues.get(key)
        return q[-1].item if q else None

    def add(
        self,
        item: T,
        keys: Iterable[Hashable],
        locks: Iterable[Hashable] = (),
        quotas: Iterable[Hashable] = (),
    ) -> Sequenced[T]:
        """Queue `item`; `entry.runnable` means it may run now."""
        entry = Sequenced(
            item,
            tuple(dict.fromkeys(keys)),
            tuple(dict.fromkeys(locks)),
            tuple(dict.fromkeys(quotas)) if self._quota is not None else (),
        )
        queues = self._queues
        for key in entry.keys:
            q = queues.get(key)
            if q is None:
                queues[key] = deque((entry,))
            else:
                q.append(entry)
                entry.blocked += 1
        self._size += 1
        if entry.blocked == 0:
            self._acquire(entry)
        return entry

    def _acquire(self, entry: Sequenced[T]) -> bool:
        """Give an eligible item its locks if all are free; else wait on the first busy one."""
        owners = self._owners
        for lock in entry.locks:
            if lock in owners:
                self._waiters.setdefault(lock, deque()).append(entry)
                return False
        held = self._held
        if entry.quotas:
            quota = self._quota
            for key in entry.quotas:
                if held.get(key, 0) == quota:
                    if self._on_quota_wait is not None:
                        self._on_quota_wait()
                    self._waiters.setdefault(key, deque()).append(entry)
                    return False
            for key in entry.quotas:
                held[key] = held.get(key, 0) + 1
        for lock in entry.locks:
            owners[lock] = entry
        entry.runnable = True
        return True

    def _unlock(self, entry: Sequenced[T], ready: list[Sequenced[T]]) -> None:
        """Release what a runnable `entry` holds and wake the next waiter of each."""
        for lock in entry.locks:
            if self._owners.get(lock) is entry:
                del self._owners[lock]
                self._wake(lock, ready)
        held = self._held
        for key in entry.quotas:
            left = held[key] - 1
            if left:
                held[key] = left
            else:
                del held[key]
            self._wake(key, ready)

    def _wake(self, lock: Hashable, ready: list[Sequenced[T]]) -> None:
        waiters = self._waiters.get(lock)
        while waiters:
            nxt = waiters.popleft()
            if self._acquire(nxt):
                ready.append(nxt)
                break
            # It now waits on another of its locks; let the next one try this lock.
        if waiters is not None and not waiters:
            del self._waiters[lock]

    def release(self, entry: Sequenced[T]) -> list[Sequenced[T]]:
        """Remove a finished item; returns the items that became runnable."""
        if not entry.runnable:
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
                if head.blocked == 0 and self._acquire(head):
                    ready.append(head)
            else:
                del queues[key]
        self._unlock(entry, ready)
        entry.runnable = False
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
        ready: list[Sequenced[T]] = []
        for lock, waiters in list(self._waiters.items()):
            kept = deque(e for e in waiters if id(e) not in doomed)
            if kept:
                self._waiters[lock] = kept
            else:
                del self._waiters[lock]
        promoted: dict[int, Sequenced[T]] = {}
        for key in list(self._queues):
            q = self._queues[key]
            old_head = q[0]
            kept = deque(e for e in q if id(e) not in doomed)
            if not kept:
                del self._queues[key]
                continue
            self._queues[key] = kept
            if old_head is not kept[0]:
                promoted[id(kept[0])] = kept[0]
        for e in doomed.values():
            if e.runnable:
                self._unlock(e, ready)
            e.runnable = False
        for e in promoted.values():
            e.blocked = sum(1 for k in e.keys if self._queues[k][0] is not e)
            if e.blocked == 0 and not e.runnable and self._acquire(e):
                ready.append(e)
        self._size -= len(doomed)
        return list(doomed.values()), [e for e in ready if id(e) not in doomed]
