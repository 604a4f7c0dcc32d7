"""Garbage-collector settings that keep the simulator's pauses short.

The simulator keeps a growing store of long-lived objects: journals, sessions and
idempotency answers. CPython's generational collector would scan them again and again, and
every pause reaches clients as API latency. A young collection costs time in proportion to
the objects born since the last one, so young collections run often and stay small.
Whatever survives two collections is frozen and never scanned again.
"""

from __future__ import annotations

import gc
from typing import Any

__all__ = ["YOUNG_THRESHOLD", "collect_all", "install"]

YOUNG_THRESHOLD = 1_000


def install() -> None:
    """Freeze what exists now and switch to short, frequent collections."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 2, 100)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def collect_all() -> None:
    """One full collection, frozen objects included, when no request is waiting (a reset).

    A cycle frozen while alive is only reclaimed here. Does nothing unless installed.
    """
    if _freeze_survivors not in gc.callbacks:
        return
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    # Survivors of a middle collection are long-lived: the store, not requests in flight.
    if phase == "stop" and info["generation"] >= 1:
        gc.freeze()
