"""Everything the simulator remembers, and the three operations that change it.

Owns customer sessions and profiles and applies updateCustomerSessionV2, returnCartItems and
trackEventV2 to them, recording each applied request in the journal. The pieces live in their
own modules: the session state machine (`sessions`), profiles (`profiles`), the
Idempotency-Key store (`idempotency`), journals (`journal`), the busy gate (`gate`) and the
counters behind ``/_sim/stats`` (`counters`). Pure Python with no HTTP and no event loop: the
web layer calls one method per request and turns `ApiFailure` into an error response.
Request bodies are checked by `bridge.simulator.validation` first.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bridge.simulator.counters import Counters
from bridge.simulator.gate import BusyGate, KeyKind
from bridge.simulator.idempotency import IDEMPOTENCY_MAX_KEYS, IdempotencyStore
from bridge.simulator.journal import JOURNAL_LIMIT, Journal, JournalEntry, RequestMeta
from bridge.simulator.profiles import Profile
from bridge.simulator.returns import (
    check_returnable,
    resolve_returns,
    return_record,
    take_units,
)
from bridge.simulator.routing import Mutation
from bridge.simulator.rules import Effect, RuleEngine
from bridge.simulator.sessions import (
    APPLICATION_ID,
    Session,
    check_transition,
    merge,
    rfc3339,
)
from bridge.simulator.validation import EVENT_EXISTS, ApiFailure, api_error

__all__ = ["SimState"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SimState:
    """Sessions, profiles, journals, idempotency and counters of one simulator."""

    def __init__(
        self,
        rules: RuleEngine | None = None,
        *,
        now: Callable[[], datetime] = _utcnow,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        clock: Callable[[], float] = time.monotonic,
        journal_limit: int = JOURNAL_LIMIT,
        idempotency_max_keys: int = IDEMPOTENCY_MAX_KEYS,
    ) -> None:
        self.rules = rules or RuleEngine()
        self._journal_limit = journal_limit
        self._idempotency_max_keys = idempotency_max_keys
        self._now = now
        self._mono_ns = monotonic_ns
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget everything: sessions, profiles, journals, keys, busy gates and counters."""
        self.sessions: dict[str, Session] = {}
        self.profiles: dict[str, Profile] = {}
        self.journal = Journal(self._journal_limit)
        self.idempotency = IdempotencyStore(clock=self._clock, max_keys=self._idempotency_max_keys)
        self.counters = Counters()
        self.gate = BusyGate(self.counters)
        self._ids: Counter[str] = Counter()
        self.arrivals = 0
        # trackEventV3's events by integrationId: each is registered once.
        self.events_v3: dict[str, dict[str, Any]] = {}

    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def next_arrival(self) -> int:
        self.arrivals += 1
        return self.arrivals

    # -- journal ----------------------------------------------------------------------------

    def _record(
        self,
        kind: KeyKind,
        key: str,
        meta: RequestMeta,
        operation: Mutation,
        now: str,
        effects: list[Effect],
        **fields: Any,
    ) -> None:
        entry = JournalEntry(
            seq=self.journal.next_seq(kind, key),
            operation=operation,
            meta=meta,
            applied_ns=self._mono_ns(),
            time=now,
            effect_types=tuple(e["effectType"] for e in effects),
            **fields,
        )
        self.journal.append(kind, key, entry)
        self.counters.applied += 1
        self.counters.op_applied[operation] += 1
        self.counters.record_event_id(meta.event_id)

    # -- profiles ---------------------------------------------------------------------------

    def _profile(self, profile_id: str, now: str, *, create: bool) -> Profile | None:
        if not profile_id:
            return None
        profile = self.profiles.get(profile_id)
        if profile is None:
            profile = Profile(
                internal_id=self._ids["profile"] + 1,
                integration_id=profile_id,
                created=now,
                last_activity=now,
            )
            if create:
                self._next_id("profile")
                self.profiles[profile_id] = profile
        return profile

    # -- updateCustomerSessionV2 -------------------------------------------------------------

    def update_session(
        self,
        session_id: str,
        cs: dict[str, Any],
        content: list[str],
        *,
        dry: bool,
        meta: RequestMeta,
    ) -> dict[str, Any]:
        """Create or update a session; returns the IntegrationStateV2 body."""
        requested = cs.get("state", "open")
        now = rfc3339(self._now())
        current = self.sessions.get(session_id)
        before = current.state if current is not None else None
        check_transition(before, requested)
        if current is None:
            session = self._new_session(session_id, cs, now, dry=dry)
        elif before == "open":
            session = merge(current, cs, now)
            # A session may move to a profile that does not exist yet.
            self._profile(session.profile_id, now, create=not dry)
        else:
            # closed/partially_returned -> cancelled: only the state changes.
            session = current.touched(now)
            if dry and current.ledger is not None:
                session.ledger = copy.deepcopy(current.ledger)
        session.state = requested
        effects = self._effects_for(session, before, requested, dry=dry)
        if not dry:
            self.sessions[session_id] = session
            profile = self.profiles.get(session.profile_id)
            if profile is not None:
                profile.last_activity = now
            self._record(
                "session",
                session_id,
                meta,
                "update",
                now,
                effects,
                state_before=before,
                state=requested,
                update_count=session.update_count,
            )
        else:
            self.counters.dry += 1
        body: dict[str, Any] = {
            "customerSession": session.render(),
            "effects": effects,
            "createdCoupons": [],
            "createdReferrals": [],
        }
        self._extras(body, content, session.profile_id, session, effects, now)
        return body

    def _new_session(self, session_id: str, cs: dict[str, Any], now: str, *, dry: bool) -> Session:
        profile_id = cs.get("profileId") or ""
        profile = self._profile(profile_id, now, create=not dry)
        first = profile is None or profile.sessions == 0
        if profile is not None and not dry:
            profile.sessions += 1
        internal_id = self._ids["session"] + 1
        if not dry:
            self._next_id("session")
        blank = Session(
            internal_id=internal_id,
            integration_id=session_id,
            created=now,
            updated=now,
            profile_id=profile_id,
            state="open",
            first_session=first,
            update_count=0,
        )
        return merge(blank, cs, now)

    def _effects_for(
        self, session: Session, before: str | None, after: str, *, dry: bool
    ) -> list[Effect]:
        rules = self.rules
        if after == "cancelled":
            effects: list[Effect] = []
            if session.ledger is not None:
                effects = rules.cancel_rollbacks(session.ledger)
            if not dry:
                self._uncount_close(session)
            session.effects = []
            return effects
        effects = rules.evaluate_session(session.cart_items, session.coupon_codes)
        if after == "closed" and before != "closed":
            effects += rules.closing_effects(
                f"{session.integration_id}/{session.internal_id}",
                session.profile_id,
                session.cart_item_total,
            )
            session.ledger = rules.build_ledger(effects, session.cart_item_total)
            if not dry:
                self._count_close(session)
        session.effects = effects
        return effects

    def _count_close(self, session: Session) -> None:
        profile = self.profiles.get(session.profile_id)
        if profile is None:
            return
        profile.closed_sessions += 1
        profile.total_sales += session.cart_item_total
        session.counted_as_closed = True

    def _uncount_close(self, session: Session) -> None:
        profile = self.profiles.get(session.profile_id)
        if profile is None or not session.counted_as_closed:
            return
        profile.closed_sessions -= 1
        profile.total_sales -= session.cart_item_total
        session.counted_as_closed = False

    def _extras(
        self,
        body: dict[str, Any],
        content: list[str],
        profile_id: str,
        session: Session | None,
        effects: list[Effect],
        now: str,
    ) -> None:
        """Optional members of the response that `responseContent` asked for."""
        if not content:
            return
        wanted = set(content)
        if "customerProfile" in wanted:
            profile = self._profile(profile_id, now, create=False)
            if profile is not None:
                body["customerProfile"] = profile.render()
        if "loyalty" in wanted:
            body["loyalty"] = {"programs": {}}
        for key in ("coupons", "triggeredCampaigns", "ruleFailureReasons", "awardedGiveaways"):
            if key in wanted:
                body[key] = []
        if "event" in wanted and session is not None:
            body["event"] = {
                "id": self._next_id("event"),
                "created": now,
                "applicationId": APPLICATION_ID,
                "profileId": profile_id,
                "type": "talon_session_updated",
                "attributes": {},
                "sessionId": session.integration_id,
                "effects": effects,
            }
        if "previousReturns" in wanted and session is not None and "previousReturns" not in body:
            body["previousReturns"] = session.returns

    # -- returnCartItems ----------------------------------------------------------------------

    def return_items(
        self,
        session_id: str,
        items: list[dict[str, Any]],
        content: list[str],
        *,
        dry: bool,
        meta: RequestMeta,
    ) -> dict[str, Any]:
        """Return units of a closed session; returns the IntegrationStateV2 body."""
        current = self.sessions.get(session_id)
        if current is None:
            raise ApiFailure(
                404,
                {
                    "message": "Customer session not found",
                    "errors": [
                        api_error(
                            "Not found",
                            "no customer session with this integration ID",
                            parameter="customerSessionId",
                        )
                    ],
                },
            )
        check_returnable(current)
        resolved = resolve_returns(current.cart_items, items)
        now = rfc3339(self._now())
        session = current.touched(now)
        session.cart_items = [dict(i) for i in current.cart_items]
        session.state = "partially_returned"
        session.returns = list(current.returns)
        if dry:
            session.ledger = copy.deepcopy(current.ledger)
        units = take_units(session, resolved)
        ledger = session.ledger
        effects = self.rules.return_rollbacks(ledger, units) if ledger is not None else []
        session.effects = ledger.remaining_effects() if ledger is not None else []
        record = return_record(
            session,
            resolved,
            now,
            return_id=self._ids["return"] + 1,
            event_id=self._ids["event"] + 1,
            profile=self.profiles.get(session.profile_id),
        )
        if not dry:
            self._next_id("return")
            self._next_id("event")
        previous = current.returns
        if not dry:
            session.returns.append(record)
            self.sessions[session_id] = session
            self._record(
                "session",
                session_id,
                meta,
                "return",
                now,
                effects,
                state_before=current.state,
                state=session.state,
                update_count=session.update_count,
            )
        else:
            self.counters.dry += 1
        body: dict[str, Any] = {
            "customerSession": session.render(),
            "effects": effects,
            "createdCoupons": [],
            "createdReferrals": [],
            "return": record,
            "previousReturns": previous,
        }
        self._extras(body, content, session.profile_id, session, effects, now)
        return body

    # -- trackEventV2 ----------------------------------------------------------------------

    def track_event(
        self, event: dict[str, Any], content: list[str], *, dry: bool, meta: RequestMeta
    ) -> dict[str, Any]:
        """Record a custom event on its profile; returns the TrackEventV2Response body.

        An event with an `integrationId` (trackEventV3) is registered once: a second one is
        the "already exists" 409, which applies nothing.
        """
        integration_id: str | None = event.get("integrationId")
        if integration_id is not None and integration_id in self.events_v3:
            self.counters.events_exist += 1
            raise ApiFailure(409, EVENT_EXISTS)
        profile_id: str = event["profileId"]
        event_type: str = event["type"]
        attributes = event.get("attributes") or {}
        now = rfc3339(self._now())
        profile = self._profile(profile_id, now, create=not dry)
        assert profile is not None  # noqa: S101 - profileId is validated non-empty
        effects = self.rules.event_effects(event_type, profile_id, attributes)
        record: dict[str, Any] = {
            "id": self._ids["event"] + 1,
            "created": now,
            "applicationId": APPLICATION_ID,
            "profileId": profile_id,
            "type": event_type,
            "attributes": attributes,
            "effects": effects,
        }
        if event.get("storeIntegrationId"):
            record["storeIntegrationId"] = event["storeIntegrationId"]
        if integration_id is not None:
            record["integrationId"] = integration_id
        if not dry:
            self._next_id("event")
            profile.last_activity = now
            profile.events += 1
            self._record(
                "profile",
                profile_id,
                meta,
                "event" if integration_id is None else "event_v3",
                now,
                effects,
                event_type=event_type,
                talon_event_id=record["id"],
                integration_id=integration_id,
            )
            if integration_id is not None:
                self.events_v3[integration_id] = record
        else:
            self.counters.dry += 1
        body: dict[str, Any] = {
            "customerProfile": profile.render(),
            "effects": effects,
            "createdCoupons": [],
            "createdReferrals": [],
        }
        if "event" in content:
            body["event"] = record
        self._extras(body, [c for c in content if c != "event"], profile_id, None, effects, now)
        return body

    # -- reads -----------------------------------------------------------------------------

    def get_session(self, session_id: str) -> dict[str, Any]:
        """The IntegrationCustomerSessionResponse body (404 if unknown)."""
        session = self.sessions.get(session_id)
        if session is None:
            raise ApiFailure(
                404, {"message": "Customer session not found", "errors": [], "StatusCode": 404}
            )
        return {"customerSession": session.render(), "effects": session.effects}
