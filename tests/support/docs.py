"""Examples the docs show, so tests keep them working."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCERS = ROOT / "docs" / "producers.md"


def producer_examples() -> list[str]:
    """The JSON commands shown in docs/producers.md, one line each."""
    return re.findall(r"```json\n(.+?)\n```", PRODUCERS.read_text(encoding="utf-8"))
