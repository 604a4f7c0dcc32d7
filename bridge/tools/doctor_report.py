"""`talon-bridge doctor`'s report: one row per check, and the rows as a table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Check", "Status", "render"]

Status = Literal["ok", "warn", "fail", "skipped"]


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the report: what was checked, how it went, and what to do about it."""

    area: str
    subject: str
    status: Status
    detail: str
    fix: str = ""


def render(rows: Sequence[Check]) -> str:
    """The rows as a plain-text table, then one line per fix."""
    head = ("STATUS", "AREA", "SUBJECT", "DETAIL")
    cells = [head, *((r.status.upper(), r.area, r.subject, r.detail) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = ["  ".join([*(c[i].ljust(widths[i]) for i in range(3)), c[3]]).rstrip() for c in cells]
    fixes = [f"- {r.subject}: {r.fix}" for r in rows if r.fix and r.status in ("fail", "warn")]
    if fixes:
        lines += ["", "To fix:", *fixes]
    failed = sum(r.status == "fail" for r in rows)
    skipped = sum(r.status == "skipped" for r in rows)
    lines.append("")
    lines.append(
        f"{failed} failed, {sum(r.status == 'warn' for r in rows)} warning(s), "
        f"{skipped} not checked"
    )
    return "\n".join(lines)
