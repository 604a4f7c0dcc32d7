"""Property tests of the sequencer and the offset tracker against a simple model.

Random arrivals over a few partitions, sessions and profiles; random starts of runnable items,
completions in any order, and revokes that drop never-started records. Invariants: per key at
most one item runs and items start in arrival order; a committed position is never past an
unfinished record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bridge.engine.offsets import OffsetTracker, Slot
from bridge.engine.sequencer import Sequenced, Sequencer

PARTITIONS = 3


@dataclass(eq=False)
class Item:
    seq: int
    tp: tuple[str, int]
    offset: int
    keys: tuple[str, ...]
    slot: Slot
    started: bool = False
    finished: bool = False
    dropped: bool = False
    entry: Sequenced[Item] | None = field(default=None, repr=False)


class EngineModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.seq = Sequencer[Item]()
        self.offsets = OffsetTracker()
        self.next_offset = dict.fromkeys(range(PARTITIONS), 0)
        self.items: list[Item] = []
        self.runnable: set[int] = set()  # seqs of items allowed to start
        self.running: list[Item] = []
        self.started_order: dict[str, list[int]] = {}
        self.committed: dict[tuple[str, int], int] = {}
        self.counter = 0

    @rule(session=st.integers(0, 7), profile=st.none() | st.integers(0, 3))
    def arrive(self, session: int, profile: int | None) -> None:
        partition = session % PARTITIONS  # a session key always maps to one partition
        tp = ("t", partition)
        offset = self.next_offset[partition]
        self.next_offset[partition] += 1 + (offset % 3 == 2)  # leave gaps sometimes
        keys = (f"s{session}",)
        locks = (f"p{profile}",) if profile is not None else ()
        slot = self.offsets.track(tp, offset)
        assert slot is not None
        assert self.offsets.track(tp, offset) is None, "a redelivery must not be tracked twice"
        item = Item(self.counter, tp, offset, keys + locks, slot)
        self.counter += 1
        item.entry = self.seq.add(item, keys, locks)
        if item.entry.runnable:
            self.runnable.add(item.seq)
        self.items.append(item)

    def _waiting(self) -> list[Item]:
        return [i for i in self.items if i.seq in self.runnable and not i.started]

    @precondition(lambda self: any(i.seq in self.runnable and not i.started for i in self.items))
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(self._waiting()))
        for key in item.keys:
            assert all(key not in r.keys for r in self.running), "two items of one key running"
            if key.startswith("s"):  # sessions are ordered; profiles only exclude
                self.started_order.setdefault(key, []).append(item.seq)
        item.started = True
        self.running.append(item)

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(self.running))
        self.running.remove(item)
        item.finished = True
        assert item.entry is not None
        for ready in self.seq.release(item.entry):
            self.runnable.add(ready.item.seq)
        self.runnable.discard(item.seq)
        OffsetTracker.complete(item.slot)

    @rule(partition=st.integers(0, PARTITIONS - 1))
    def revoke(self, partition: int) -> None:
        tp = ("t", partition)
        # In-flight items of the partition finish first (the drain), then the rest is dropped.
        for item in [r for r in self.running if r.tp == tp]:
            self.running.remove(item)
            item.finished = True
            assert item.entry is not None
            for ready in self.seq.release(item.entry):
                self.runnable.add(ready.item.seq)
            OffsetTracker.complete(item.slot)
        removed, became = self.seq.remove_where(lambda i: i.tp == tp and not i.started)
        for e in removed:
            e.item.dropped = True
            self.runnable.discard(e.item.seq)
        for e in became:
            self.runnable.add(e.item.seq)
        position = self.offsets.position(tp)
        if position is not None:
            self.committed[tp] = position
        self.offsets.forget(tp)
        self.items = [i for i in self.items if i.tp != tp or not (i.dropped or i.finished)]
        # The next owner re-reads from the committed position.
        if position is not None:
            self.next_offset[partition] = position

    @rule()
    def commit(self) -> None:
        self.committed.update(self.offsets.commit_positions())

    @invariant()
    def committed_never_past_unfinished(self) -> None:
        for tp, pos in self.committed.items():
            unfinished = [
                i.offset for i in self.items if i.tp == tp and not i.finished and not i.dropped
            ]
            if unfinished:
                assert pos <= min(unfinished)

    @invariant()
    def per_key_start_order_is_arrival_order(self) -> None:
        for order in self.started_order.values():
            assert order == sorted(order)

    @invariant()
    def runnable_matches_heads(self) -> None:
        for item in self.items:
            if item.entry is not None and not item.finished and not item.dropped:
                assert item.entry.runnable == (item.seq in self.runnable)

    @invariant()
    def no_deadlock(self) -> None:
        live = [i for i in self.items if not i.finished and not i.dropped]
        if live and not self.running:
            assert self._waiting(), "items wait but none can start"


EngineModel.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestEngineModel = EngineModel.TestCase
