"""The simulator's collector settings: small young collections, survivors frozen.

Each case runs in a fresh interpreter: freezing the test process's heap would change how
every later test is collected.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(body: str) -> None:
    script = "import gc\nfrom bridge.simulator import collector\n" + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_install_sets_small_young_collections_and_freezes_what_exists() -> None:
    _run(
        """
        before = gc.get_freeze_count()
        collector.install()
        assert gc.get_threshold()[0] == collector.YOUNG_THRESHOLD
        assert gc.get_freeze_count() > before
        """
    )


def test_long_lived_objects_are_frozen_after_a_middle_collection() -> None:
    _run(
        """
        collector.install()
        frozen = gc.get_freeze_count()
        store = [{"entry": [i]} for i in range(10_000)]  # a growing store, like the journal
        gc.collect(1)
        assert gc.get_freeze_count() >= frozen + 10_000
        assert gc.get_count()[1] == 0  # nothing left for the next middle collection
        """
    )


def test_collect_all_reclaims_a_cycle_frozen_while_alive() -> None:
    _run(
        """
        import weakref

        class Node:
            pass

        collector.install()
        a, b = Node(), Node()
        a.peer, b.peer = b, a
        alive = weakref.ref(a)
        gc.collect(1)  # the cycle is alive here, so it is frozen
        del a, b
        gc.collect()
        assert alive() is not None  # frozen: a full collection does not see it
        collector.collect_all()
        assert alive() is None
        """
    )


def test_collect_all_does_nothing_unless_installed() -> None:
    _run(
        """
        collector.collect_all()
        assert gc.get_freeze_count() == 0
        """
    )
