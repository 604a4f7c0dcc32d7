"""Request and outcome counts behind ``/_sim/stats``, and the Retry-After watch."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

from bridge.simulator.wire import EVENT_ID_HEADER, IDEMPOTENCY_HEADER

__all__ = ["Counters", "RetryWatch"]


class Counters:
    """Request and outcome counts behind ``/_sim/stats``."""

    def __init__(self) -> None:
        self.requests = 0
        self.applied = 0
        self.dry = 0
        self.duplicates_suppressed = 0
        self.idempotency_mismatches = 0
        # Requests carrying an Idempotency-Key already seen (replayed, in flight or
        # mismatched): calls the client sent again.
        self.keys_reused = 0
        self.conflicts: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.op_requests: Counter[str] = Counter()
        self.op_applied: Counter[str] = Counter()
        self.op_conflicts: Counter[str] = Counter()
        self.event_ids: Counter[str] = Counter()
        self.repeated_event_ids: dict[str, int] = {}
        self.max_concurrency = 0
        self.early_retries = 0  # requests back before the Retry-After of their 429 or 503
        self.events_exist = 0  # trackEventV3 events refused as registered already (409)

    def record_event_id(self, event_id: str | None) -> None:
        if event_id is None:
            return
        seen = self.event_ids[event_id] + 1
        self.event_ids[event_id] = seen
        if seen > 1:
            self.repeated_event_ids[event_id] = seen

    def snapshot(self, fault_kinds: Iterable[str]) -> dict[str, Any]:
        ops = sorted(set(self.op_requests) | set(self.op_applied))
        return {
            "requests": self.requests,
            "applied": self.applied,
            "dry": self.dry,
            "conflicts_409": sum(self.conflicts.values()),
            "conflicts_by_kind": {
                k: self.conflicts[k] for k in ("session", "profile", "idempotency")
            },
            "duplicates_suppressed": self.duplicates_suppressed,
            "idempotency_keys_reused": self.keys_reused,
            "idempotency_mismatches_422": self.idempotency_mismatches,
            "faults_injected": {k: self.faults[k] for k in fault_kinds},
            "by_operation": {
                op: {
                    "requests": self.op_requests[op],
                    "applied": self.op_applied[op],
                    "conflicts_409": self.op_conflicts[op],
                }
                for op in ops
            },
            "responses_by_status": {str(k): v for k, v in sorted(self.statuses.items())},
            "applied_event_ids_repeated": len(self.repeated_event_ids),
            "repeated_event_ids": dict(list(self.repeated_event_ids.items())[:100]),
            "max_concurrency_per_key": self.max_concurrency,
            "early_retries": self.early_retries,
            "events_v3_already_registered": self.events_exist,
        }


class RetryWatch:
    """When each request answered 429 or 503 may come back (its Retry-After), to count the
    ones that come back early. A request is known by the bridge's event id, else by its
    Idempotency-Key; requests with neither are not followed."""

    _LIMIT: Final = 100_000

    def __init__(self) -> None:
        self._due: dict[str, float] = {}

    @staticmethod
    def _identity(headers: Any) -> str | None:
        found = headers.get(EVENT_ID_HEADER) or headers.get(IDEMPOTENCY_HEADER)
        return str(found) if found else None

    def expect(self, headers: Any, due: float) -> None:
        key = self._identity(headers)
        if key is None:
            return
        if len(self._due) >= self._LIMIT:
            self._due.pop(next(iter(self._due)))  # the oldest: a request never retried
        self._due[key] = due

    def check(self, headers: Any) -> float | None:
        """The Retry-After deadline of this request's last rejection, if it had one."""
        if not self._due:
            return None
        key = self._identity(headers)
        return None if key is None else self._due.pop(key, None)
