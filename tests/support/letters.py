"""Dead letters as the worker writes them, and what a plan makes of them, for the replay tests."""

from __future__ import annotations

from bridge.dlq import DeadLetter, dead_letter_headers
from bridge.replay.plan import Plan, Policy, plan
from bridge.replay.records import DeadLetterRecord
from bridge.replay.selection import Selection

DLQ = "talon.commands.dlq"
IN = "talon.commands"
T0 = 1_800_000_000_000


def letter(
    offset: int,
    session: str | None = "s1",
    *,
    partition: int = 0,
    reason: str = "permanent",
    source: tuple[str, int, int] | None = None,
    behind: DeadLetterRecord | None = None,
    status: int | None = 400,
    error_class: str = "PermanentApiError",
    ts: int | None = None,
    command_type: str = "update_customer_session",
    extra: list[tuple[str, bytes]] | None = None,
    original_headers: bool = True,
    chain: tuple[int, str] | None = None,
    application: str | None = None,
) -> DeadLetterRecord:
    """A dead letter as the worker writes it; `behind` makes it a parked record."""
    topic, part, off = source or (IN, partition, 1000 + offset)
    if behind is not None:
        reason, status, error_class = "parked", None, "SessionParked"
    hs = dead_letter_headers(
        [("trace", b"t-%d" % offset), *(extra or [])],
        DeadLetter(
            "parked" if behind else "api",
            error_class,
            reason,
            "failed",
            http_status=status,
            parked_behind=behind.original if behind else None,
            chain_position=chain[0] if chain else None,
            chain_token=chain[1] if chain else None,
        ),
        topic=topic,
        partition=part,
        offset=off,
        timestamp_ms=T0,
        group="g",
        version="0",
        application=application,
    )
    if not original_headers:
        hs = [(k, v) for k, v in hs if not k.startswith("__connect.errors.")]
    return DeadLetterRecord.build(
        topic=DLQ,
        partition=partition,
        offset=offset,
        timestamp_ms=T0 + offset * 1000 if ts is None else ts,
        key=session.encode() if session is not None else None,
        value=b"v%d" % offset,
        headers=hs,
        command_type=command_type,
        event_id=f"e{offset}",
    )


def positions(p: Plan, action: str | None = None) -> list[tuple[int, int]]:
    return [i.record.position for i in p.items if action is None or i.action == action]


def select(records: list[DeadLetterRecord], **filters: object) -> list[int]:
    chosen = plan(records, Selection(**filters), Policy())  # type: ignore[arg-type]
    return [i.record.offset for i in chosen.items]
