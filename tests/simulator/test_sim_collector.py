"""The simulator's garbage collection: off while serving, one full pass at a reset.

Each case runs in a fresh interpreter: freezing the test process's heap, or turning its
collector off, would change how every later test is collected.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(body: str) -> None:
    script = "import gc\nfrom bridge.simulator import collector\n" + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_install_freezes_what_exists_and_turns_automatic_collection_off() -> None:
    _run(
        """
        before = gc.get_freeze_count()
        collector.install()
        assert not gc.isenabled()
        assert gc.get_freeze_count() > before
        """
    )


def test_collect_all_reclaims_cycles_and_freezes_the_rest() -> None:
    _run(
        """
        import weakref

        class Node:
            pass

        collector.install()
        a, b = Node(), Node()
        a.peer, b.peer = b, a
        alive = weakref.ref(a)
        keep = [{"entry": [i]} for i in range(1_000)]
        del a, b
        assert alive() is not None  # no automatic collection
        assert collector.collect_all() >= 2
        assert alive() is None
        assert gc.get_count()[0] == 0 and gc.get_freeze_count() > 1_000
        assert not gc.isenabled()
        """
    )


def test_collect_all_does_nothing_unless_installed() -> None:
    _run(
        """
        assert collector.collect_all() == 0
        assert gc.isenabled() and gc.get_freeze_count() == 0
        """
    )
