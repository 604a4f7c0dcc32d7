"""The offset tracker when a partition's log starts over below what was read from it."""

from __future__ import annotations

from bridge.engine.offsets import OffsetTracker

TP = ("orders", 0)


def test_a_restarted_log_is_tracked_afresh_and_old_records_complete_into_nothing() -> None:
    offsets = OffsetTracker()
    old = [offsets.track(TP, o) for o in range(100, 105)]
    assert all(slot is not None for slot in old)
    assert offsets.track(TP, 3) is None, "below what was read: the caller must decide"
    offsets.forget(TP, log_gone=True)
    first = offsets.track(TP, 0)
    assert first is not None
    assert offsets.position(TP) == 0
    # The old log's records finish later; their positions must not reach the new log.
    for slot in old:
        assert slot is not None
        OffsetTracker.complete(slot)
        assert slot.owner.log_gone
    assert offsets.commit_positions() == {TP: 0}
    second = offsets.track(TP, 1)
    assert second is not None
    OffsetTracker.complete(first)
    OffsetTracker.complete(second)
    assert offsets.commit_positions() == {TP: 2}


def test_a_forgotten_partition_starts_from_the_next_offset_read() -> None:
    offsets = OffsetTracker()
    slot = offsets.track(TP, 50)
    assert slot is not None
    offsets.forget(TP)
    OffsetTracker.complete(slot)
    assert offsets.commit_positions() == {}
    assert offsets.track(TP, 0) is not None
    assert offsets.position(TP) == 0
