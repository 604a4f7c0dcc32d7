"""How far a replay selection has got in each DLQ partition. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CommitTracker"]


@dataclass(slots=True)
class CommitTracker:
    """Per DLQ partition, the position up to which everything is handled.

    Every offset below `end` counts as handled unless it is held; the committable position
    is the lowest held offset, or `end`. A record is held from the moment it is planned to be
    sent until its send is acknowledged; a failed or unsent record stays held, so a rerun
    starts at it.
    """

    start: dict[int, int]
    end: dict[int, int]
    held: dict[int, set[int]] = field(default_factory=dict)

    def hold(self, partition: int, offset: int) -> None:
        self.held.setdefault(partition, set()).add(offset)

    def release(self, partition: int, offset: int) -> None:
        self.held.get(partition, set()).discard(offset)

    def positions(self) -> dict[int, int]:
        """Commit positions, never below where this selection started."""
        out: dict[int, int] = {}
        for p, end in self.end.items():
            held = self.held.get(p)
            pos = min(held) if held else end
            out[p] = max(pos, self.start.get(p, 0))
        return out
