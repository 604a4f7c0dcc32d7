"""Customer profiles, created implicitly by the first session or event naming them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from bridge.simulator.rules import money

__all__ = ["ACCOUNT_ID", "Profile"]

ACCOUNT_ID: Final = 1


@dataclass(slots=True)
class Profile:
    """A customer profile, created implicitly by the first session or event naming it."""

    internal_id: int
    integration_id: str
    created: str
    last_activity: str
    closed_sessions: int = 0
    total_sales: float = 0.0
    sessions: int = 0
    events: int = 0

    def render(self) -> dict[str, Any]:
        """The CustomerProfile JSON object."""
        return {
            "id": self.internal_id,
            "created": self.created,
            "integrationId": self.integration_id,
            "attributes": {},
            "accountId": ACCOUNT_ID,
            "closedSessions": self.closed_sessions,
            "totalSales": money(self.total_sales),
            "lastActivity": self.last_activity,
            "sandbox": False,
        }
