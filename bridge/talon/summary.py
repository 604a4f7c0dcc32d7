"""What the bridge republishes from a Talon.One answer, read with msgspec.

Of the three calls' answers the bridge keeps only the effects, the created coupons and
referrals, and the session's state. `IntegrationSummary` reads just those, from any of the three
answers, straight from the JSON bytes into structs: no pydantic model, no intermediate dict.
Each effect's `props` stays the JSON text it arrived as (`msgspec.Raw`), because the effects
record carries it as JSON text, so it is never parsed only to be written out again. On
simulator answers (2.3 KB, four effects) reading one takes 3.6 µs against 16 µs for the
pydantic model it replaces, and reading it and building the effects records 17 µs against 32 µs.

Like the pydantic response models it is lenient: unknown fields are skipped, and numbers and
booleans are accepted as strings (``strict=False``). A field it does read must still have its
documented type, or the answer is refused.
"""

from __future__ import annotations

import msgspec

from bridge.commands import SessionState

__all__ = [
    "EventSummary",
    "IntegrationSummary",
    "SessionSummary",
    "SummaryCoupon",
    "SummaryEffect",
    "SummaryReferral",
]

_NULL = msgspec.Raw(b"null")


class _Summary(msgspec.Struct, rename="camel", frozen=True):
    """camelCase on the wire, snake_case in Python."""


class SummaryEffect(_Summary, frozen=True):
    """One effect of a rule; `props` is its raw JSON (``null`` when absent)."""

    campaign_id: int
    ruleset_id: int
    rule_index: int
    rule_name: str
    effect_type: str
    props: msgspec.Raw = _NULL
    triggered_by_coupon: int | None = None
    triggered_for_catalog_item: int | None = None
    condition_index: int | None = None
    evaluation_group_id: int | None = msgspec.field(default=None, name="evaluationGroupID")
    evaluation_group_mode: str | None = None
    campaign_revision_id: int | None = None
    campaign_revision_version_id: int | None = None

    @property
    def props_json(self) -> str:
        """`props` as JSON text."""
        return bytes(self.props).decode()


class SummaryCoupon(_Summary, frozen=True):
    """A created coupon: its id, campaign and code."""

    id: int
    campaign_id: int
    value: str | None = None


class SummaryReferral(_Summary, frozen=True):
    """A created referral code and its advocate."""

    id: int
    campaign_id: int
    code: str
    advocate_profile_integration_id: str


class SessionSummary(_Summary, frozen=True):
    """Of a returned customer session, only its state."""

    state: SessionState | None = None


class IntegrationSummary(_Summary, frozen=True):
    """What Talon.One decided, read from any of the three answers and nothing more.

    `customer_session` is None for trackEventV2.
    """

    effects: list[SummaryEffect]
    created_coupons: list[SummaryCoupon]
    created_referrals: list[SummaryReferral]
    customer_session: SessionSummary | None = None


class EventSummary(_Summary, frozen=True):
    """Of an event getEventV3 returns, only the effects it had when it was registered."""

    effects: list[SummaryEffect]
