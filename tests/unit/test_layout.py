"""The package's shape: confluent-kafka stays behind bridge/kafka/, and modules stay small.

Both allowlists name what is still out of shape; they should only shrink. A module that
comes into shape must leave its list, so the lists never hide a regression.
"""

from __future__ import annotations

import ast
from pathlib import Path

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"
MAX_LINES = 450

# Modules outside bridge/kafka/ that still import confluent_kafka.
CONFLUENT_OUTSIDE_KAFKA: set[str] = set()

# Modules still longer than MAX_LINES.
TOO_LONG = {
    "bridge/worker/pipeline.py",
}


def _modules() -> dict[str, Path]:
    root = BRIDGE.parent
    return {path.relative_to(root).as_posix(): path for path in sorted(BRIDGE.rglob("*.py"))}


def _imports_confluent(path: Path) -> bool:
    # Every import counts, also those inside functions or under TYPE_CHECKING.
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name.split(".")[0] == "confluent_kafka" for name in names):
            return True
    return False


def test_confluent_kafka_is_imported_only_under_bridge_kafka() -> None:
    importing = {
        name
        for name, path in _modules().items()
        if not name.startswith("bridge/kafka/") and _imports_confluent(path)
    }
    assert importing - CONFLUENT_OUTSIDE_KAFKA == set(), "import it through bridge/kafka/"
    assert CONFLUENT_OUTSIDE_KAFKA - importing == set(), "no longer imports it: unlist it"


def test_modules_stay_under_the_line_budget() -> None:
    lengths = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in _modules().items()
    }
    too_long = {name for name, lines in lengths.items() if lines > MAX_LINES}
    assert too_long - TOO_LONG == set(), f"split modules over {MAX_LINES} lines"
    assert TOO_LONG - too_long == set(), f"within {MAX_LINES} lines now: unlist them"


def test_tests_share_helpers_through_tests_support() -> None:
    # A conftest holds fixtures; what tests share as code lives in tests/support/.
    tests = BRIDGE.parent / "tests"
    importing = set()
    for path in tests.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and "conftest" in (node.module or "").split("."):
                importing.add(path.relative_to(tests).as_posix())
    assert importing == set(), "import shared helpers from tests/support/"
