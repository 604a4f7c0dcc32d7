"""Everything the simulator remembers, and the rules for changing it.

Owns customer sessions and profiles, the session state machine, the
per-session and per-profile journals, the Idempotency-Key store, the per-key busy gate and
the counters behind ``/_sim/stats``. Pure Python with no HTTP and no event loop: the web
layer calls one method per request and turns `ApiFailure` into an error response. Request
bodies are checked by `bridge.simulator.validation` first.

State machine (updateCustomerSessionV2 unless noted)::

    (new) --> open | closed
    open --> open | closed | cancelled
    closed --> cancelled
    closed --> partially_returned          returnCartItems only
    partially_returned --> cancelled
    partially_returned --> partially_returned   returnCartItems only

Any other requested transition is a 400 ErrorResponse whose error points at
``/customerSession/state``.
"""

from __future__ import annotations

import copy
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from bridge.simulator.rules import Effect, Ledger, ReturnedUnits, RuleEngine, cart_total, money
from bridge.simulator.validation import ApiFailure, api_error, invalid

__all__ = [
    "APPLICATION_ID",
    "IDEMPOTENCY_MAX_KEYS",
    "JOURNAL_LIMIT",
    "MAX_IDEMPOTENCY_KEY",
    "Counters",
    "IdempotencyStore",
    "Journal",
    "JournalEntry",
    "Lookup",
    "Profile",
    "RequestMeta",
    "Session",
    "SimState",
    "rfc3339",
]

APPLICATION_ID: Final = 1
ACCOUNT_ID: Final = 1
MAX_IDEMPOTENCY_KEY: Final = 255
IDEMPOTENCY_TTL_S: Final = 24 * 3600.0
# Memory bounds for long benchmark runs (roughly 0.5 KB per journal entry, 2 KB per key).
JOURNAL_LIMIT: Final = 1_000_000
IDEMPOTENCY_MAX_KEYS: Final = 200_000

_ALLOWED: Final[dict[str, frozenset[str]]] = {
    "open": frozenset({"open", "closed", "cancelled"}),
    "closed": frozenset({"cancelled"}),
    "partially_returned": frozenset({"cancelled"}),
    "cancelled": frozenset(),
}
_RETURNABLE: Final = frozenset({"closed", "partially_returned"})
# Read-only cart item fields: the server computes them, whatever the client sends.
_SERVER_ITEM_FIELDS: Final = ("position", "returnedQuantity", "remainingQuantity")


def rfc3339(dt: datetime) -> str:
    """UTC timestamp with milliseconds and a ``Z`` suffix, as Talon.One sends them."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- entities ----------------------------------------------------------------------------


@dataclass(slots=True)
class Session:
    """One customer session, keyed by its integration id."""

    internal_id: int
    integration_id: str
    created: str
    updated: str
    profile_id: str
    state: str
    first_session: bool
    update_count: int
    cart_items: list[dict[str, Any]] = field(default_factory=list)
    coupon_codes: list[str] = field(default_factory=list)
    referral_code: str | None = None
    loyalty_cards: list[str] = field(default_factory=list)
    identifiers: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    additional_costs: dict[str, Any] = field(default_factory=dict)
    store_integration_id: str | None = None
    cart_item_total: float = 0.0
    additional_cost_total: float = 0.0
    item_additional_cost_total: float = 0.0
    effects: list[Effect] = field(default_factory=list)
    ledger: Ledger | None = None
    returns: list[dict[str, Any]] = field(default_factory=list)
    counted_as_closed: bool = False

    def copy(self) -> Session:
        """A shallow copy (cheaper than dataclasses.replace on the hot path)."""
        return Session(
            internal_id=self.internal_id,
            integration_id=self.integration_id,
            created=self.created,
            updated=self.updated,
            profile_id=self.profile_id,
            state=self.state,
            first_session=self.first_session,
            update_count=self.update_count,
            cart_items=self.cart_items,
            coupon_codes=self.coupon_codes,
            referral_code=self.referral_code,
            loyalty_cards=self.loyalty_cards,
            identifiers=self.identifiers,
            attributes=self.attributes,
            additional_costs=self.additional_costs,
            store_integration_id=self.store_integration_id,
            cart_item_total=self.cart_item_total,
            additional_cost_total=self.additional_cost_total,
            item_additional_cost_total=self.item_additional_cost_total,
            effects=self.effects,
            ledger=self.ledger,
            returns=self.returns,
            counted_as_closed=self.counted_as_closed,
        )

    def touched(self, now: str) -> Session:
        """A copy one update later."""
        out = self.copy()
        out.updated = now
        out.update_count += 1
        return out

    def render(self) -> dict[str, Any]:
        """The CustomerSessionV2 JSON object."""
        out: dict[str, Any] = {
            "id": self.internal_id,
            "created": self.created,
            "integrationId": self.integration_id,
            "applicationId": APPLICATION_ID,
            "profileId": self.profile_id,
            "couponCodes": self.coupon_codes,
            "loyaltyCards": self.loyalty_cards,
            "state": self.state,
            "cartItems": self.cart_items,
            "additionalCosts": self.additional_costs,
            "identifiers": self.identifiers,
            "attributes": self.attributes,
            "firstSession": self.first_session,
            "updateCount": self.update_count,
            "total": money(
                self.cart_item_total + self.additional_cost_total + self.item_additional_cost_total
            ),
            "cartItemTotal": money(self.cart_item_total),
            "additionalCostTotal": money(self.additional_cost_total),
            "cartItemAdditionalCostTotal": money(self.item_additional_cost_total),
            "updated": self.updated,
        }
        if self.referral_code:
            out["referralCode"] = self.referral_code
        if self.store_integration_id:
            out["storeIntegrationId"] = self.store_integration_id
        return out


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


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Identity of one request, recorded in the journal when it is applied."""

    event_id: str | None = None
    idempotency_key: str | None = None
    body_sha256: str = ""
    arrival: int = 0
    acquired_ns: int = 0


# -- idempotency -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lookup:
    """Outcome of `IdempotencyStore.begin`: ``new``, ``replay``, ``in_flight`` or ``mismatch``."""

    outcome: str
    status: int = 0
    body: bytes = b""


@dataclass(slots=True)
class _Stored:
    fingerprint: str
    status: int
    body: bytes
    expires_at: float


class IdempotencyStore:
    """Responses stored by Idempotency-Key for 24 h; in-flight keys are tracked separately."""

    def __init__(
        self,
        ttl_s: float = IDEMPOTENCY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = IDEMPOTENCY_MAX_KEYS,
    ) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._max_keys = max_keys
        self.evicted = 0
        # Insertion order == expiry order because the TTL is constant.
        self._done: OrderedDict[str, _Stored] = OrderedDict()
        self._in_flight: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._done)

    def begin(self, key: str, fingerprint: str) -> Lookup:
        """Reserve `key` for a new request, or say why it cannot be processed as new."""
        pending = self._in_flight.get(key)
        if pending is not None:
            return Lookup("mismatch" if pending != fingerprint else "in_flight")
        stored = self._done.get(key)
        if stored is not None and stored.expires_at > self._clock():
            if stored.fingerprint != fingerprint:
                return Lookup("mismatch")
            return Lookup("replay", stored.status, stored.body)
        self._in_flight[key] = fingerprint
        return Lookup("new")

    def complete(self, key: str, status: int, body: bytes) -> None:
        """Store the response of a reserved key (only successful outcomes are kept)."""
        fingerprint = self._in_flight.pop(key, None)
        if fingerprint is None:
            return
        now = self._clock()
        self._done.pop(key, None)
        self._done[key] = _Stored(fingerprint, status, body, now + self._ttl)
        while self._done:
            first = next(iter(self._done.values()))
            if first.expires_at > now and len(self._done) <= self._max_keys:
                break
            if first.expires_at > now:
                # Evicted before its 24 h: a later retry with this key is applied afresh.
                self.evicted += 1
            self._done.popitem(last=False)

    def abandon(self, key: str) -> None:
        """Free a reserved key without storing anything (errors may be retried with it)."""
        self._in_flight.pop(key, None)

    def clear(self) -> None:
        self._done.clear()
        self._in_flight.clear()


# -- counters ----------------------------------------------------------------------------


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
        }


# -- journal ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One applied request, in the order it was applied to its session or profile."""

    seq: int
    operation: str
    meta: RequestMeta
    applied_ns: int
    time: str
    effect_types: tuple[str, ...]
    state_before: str | None = None
    state: str | None = None
    update_count: int | None = None
    event_type: str | None = None
    talon_event_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "eventId": self.meta.event_id,
            "idempotencyKey": self.meta.idempotency_key,
            "operation": self.operation,
        }
        if self.operation == "event":
            out["eventType"] = self.event_type
            out["talonEventId"] = self.talon_event_id
        else:
            out["stateBefore"] = self.state_before
            out["state"] = self.state
            out["updateCount"] = self.update_count
        out["effectTypes"] = list(self.effect_types)
        out["bodySha256"] = self.meta.body_sha256
        out["arrival"] = self.meta.arrival
        out["acquiredNs"] = self.meta.acquired_ns
        out["appliedNs"] = self.applied_ns
        out["time"] = self.time
        return out


class Journal:
    """Per-session and per-profile journals, holding at most `limit` entries in total.

    Past the limit the oldest entries are dropped (sequence numbers keep counting, so a
    journal that lost its head starts above 1); `dropped` says how many.
    """

    def __init__(self, limit: int = JOURNAL_LIMIT) -> None:
        self.limit = limit
        self._books: dict[str, dict[str, deque[JournalEntry]]] = {"session": {}, "profile": {}}
        self._seq: Counter[tuple[str, str]] = Counter()
        self._order: deque[tuple[str, str]] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._order)

    def next_seq(self, kind: str, key: str) -> int:
        self._seq[(kind, key)] += 1
        return self._seq[(kind, key)]

    def append(self, kind: str, key: str, entry: JournalEntry) -> None:
        self._books[kind].setdefault(key, deque()).append(entry)
        self._order.append((kind, key))
        while len(self._order) > self.limit:
            old_kind, old_key = self._order.popleft()
            book = self._books[old_kind]
            entries = book[old_key]
            entries.popleft()
            if not entries:
                del book[old_key]
            self.dropped += 1

    def entries(self, kind: str, key: str) -> list[dict[str, Any]]:
        return [e.to_json() for e in self._books[kind].get(key, ())]

    def dump(self) -> dict[str, Any]:
        return {
            f"{kind}s": {key: [e.to_json() for e in entries] for key, entries in book.items()}
            for kind, book in self._books.items()
        }


# -- the state ---------------------------------------------------------------------------


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
        self._busy: set[tuple[str, str]] = set()
        self._inside: Counter[tuple[str, str]] = Counter()
        self._ids: Counter[str] = Counter()
        self.arrivals = 0

    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def next_arrival(self) -> int:
        self.arrivals += 1
        return self.arrivals

    # -- busy gate: Talon's "avoid parallel requests" rule ----------------------------------

    def try_acquire(self, kind: str, key: str) -> bool:
        """Take the busy flag of a session or profile; False if a request already holds it."""
        token = (kind, key)
        if token in self._busy:
            self.counters.conflicts[kind] += 1
            return False
        self._busy.add(token)
        # Counted separately from the gate, so a broken gate shows up as concurrency > 1.
        self._inside[token] += 1
        self.counters.max_concurrency = max(self.counters.max_concurrency, self._inside[token])
        return True

    def release(self, kind: str, key: str) -> None:
        token = (kind, key)
        self._busy.discard(token)
        left = self._inside[token] - 1
        if left > 0:
            self._inside[token] = left
        else:
            self._inside.pop(token, None)

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    # -- journal ----------------------------------------------------------------------------

    def _record(
        self,
        kind: str,
        key: str,
        meta: RequestMeta,
        operation: str,
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
        _check_transition(before, requested)
        if current is None:
            session = self._new_session(session_id, cs, now, dry=dry)
        elif before == "open":
            session = _merge(current, cs, now)
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
        return _merge(blank, cs, now)

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
        if current.state not in _RETURNABLE:
            raise invalid(
                [
                    api_error(
                        "Invalid state transition",
                        "cart items can only be returned from a closed or partially_returned "
                        f"session; this session is {current.state}",
                        parameter="customerSessionId",
                    )
                ]
            )
        resolved = _resolve_returns(current.cart_items, items)
        now = rfc3339(self._now())
        session = current.touched(now)
        session.cart_items = [dict(i) for i in current.cart_items]
        session.state = "partially_returned"
        session.returns = list(current.returns)
        if dry:
            session.ledger = copy.deepcopy(current.ledger)
        units: list[ReturnedUnits] = []
        for pos, qty in resolved:
            line = session.cart_items[pos]
            units.append(
                ReturnedUnits(pos, line["returnedQuantity"], qty, float(line.get("price") or 0))
            )
            line["returnedQuantity"] += qty
            line["remainingQuantity"] -= qty
        ledger = session.ledger
        effects = self.rules.return_rollbacks(ledger, units) if ledger is not None else []
        session.effects = ledger.remaining_effects() if ledger is not None else []
        record = self._return_record(session, resolved, now, dry=dry)
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

    def _return_record(
        self, session: Session, resolved: list[tuple[int, int]], now: str, *, dry: bool
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self._ids["return"] + 1,
            "created": now,
            "applicationId": APPLICATION_ID,
            "accountId": ACCOUNT_ID,
            "returnedCartItems": [
                {"position": pos, "quantity": qty, "sku": session.cart_items[pos]["sku"]}
                for pos, qty in resolved
            ],
            "eventId": self._ids["event"] + 1,
            "sessionId": session.internal_id,
            "sessionIntegrationId": session.integration_id,
        }
        if not dry:
            self._next_id("return")
            self._next_id("event")
        profile = self.profiles.get(session.profile_id)
        if profile is not None:
            record["profileId"] = profile.internal_id
            record["profileIntegrationId"] = profile.integration_id
        return record

    # -- trackEventV2 ----------------------------------------------------------------------

    def track_event(
        self, event: dict[str, Any], content: list[str], *, dry: bool, meta: RequestMeta
    ) -> dict[str, Any]:
        """Record a custom event on its profile; returns the TrackEventV2Response body."""
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
        if not dry:
            self._next_id("event")
            profile.last_activity = now
            profile.events += 1
            self._record(
                "profile",
                profile_id,
                meta,
                "event",
                now,
                effects,
                event_type=event_type,
                talon_event_id=record["id"],
            )
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


def _check_transition(before: str | None, requested: str) -> None:
    if before is None:
        if requested in ("open", "closed"):
            return
        raise _transition_error(
            "Invalid state transition",
            f"a customer session can only be created as open or closed, not {requested}",
        )
    if requested in _ALLOWED[before]:
        return
    if requested == before:
        raise _transition_error(
            "Session cannot be modified",
            f"the customer session is {before} and cannot be modified anymore",
        )
    hint = ""
    if requested == "partially_returned":
        hint = "; use returnCartItems"
    elif before == "closed" and requested == "open":
        hint = "; use reopenCustomerSession"
    raise _transition_error(
        "Invalid state transition",
        f"cannot change the state of a customer session from {before} to {requested}{hint}",
    )


def _transition_error(title: str, details: str) -> ApiFailure:
    return invalid([api_error(title, details, pointer="/customerSession/state")])


def _normalise_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for pos, item in enumerate(items):
        line = {k: v for k, v in item.items() if k not in _SERVER_ITEM_FIELDS}
        line["position"] = pos
        line["returnedQuantity"] = 0
        line["remainingQuantity"] = item["quantity"]
        out.append(line)
    return out


def _sum_costs(costs: dict[str, Any]) -> float:
    return float(sum(c["price"] for c in costs.values()))


def _merge(base: Session, cs: dict[str, Any], now: str) -> Session:
    """A new Session: `base` plus the fields present in the request (PUT that builds up)."""
    s = base.touched(now)
    if "profileId" in cs:
        s.profile_id = cs["profileId"] or ""
    if "storeIntegrationId" in cs:
        s.store_integration_id = cs["storeIntegrationId"] or None
    if "couponCodes" in cs:
        s.coupon_codes = list(cs["couponCodes"])
    if "referralCode" in cs:
        s.referral_code = cs["referralCode"] or None
    if "loyaltyCards" in cs:
        s.loyalty_cards = list(cs["loyaltyCards"])
    if "identifiers" in cs:
        s.identifiers = list(cs["identifiers"])
    if "attributes" in cs:
        s.attributes = {**base.attributes, **cs["attributes"]}
    if "additionalCosts" in cs:
        s.additional_costs = dict(cs["additionalCosts"])
        s.additional_cost_total = _sum_costs(s.additional_costs)
    if "cartItems" in cs:
        # Items sent on an update replace the stored list wholesale.
        s.cart_items = _normalise_items(cs["cartItems"])
        s.cart_item_total = cart_total(s.cart_items)
        s.item_additional_cost_total = sum(
            _sum_costs(i["additionalCosts"]) * i["quantity"]
            for i in s.cart_items
            if isinstance(i.get("additionalCosts"), dict)
        )
    return s


def _locate(
    cart: list[dict[str, Any]], item: dict[str, Any], taken: Counter[int], base: str
) -> int | dict[str, Any]:
    """The cart position a returned item refers to, or the APIError saying why not."""
    qty: int = item["quantity"]
    pos: int | None = item.get("position")
    sku = item.get("sku")
    if pos is None:
        for p, line in enumerate(cart):
            if line["sku"] == sku and line["remainingQuantity"] - taken[p] >= qty:
                return p
        return api_error(
            "Not found", f"no cart item with sku {sku!r} has enough units", pointer=f"{base}/sku"
        )
    if pos >= len(cart):
        return api_error(
            "Not found",
            f"the session has no cart item at position {pos}",
            pointer=f"{base}/position",
        )
    if sku is not None and cart[pos]["sku"] != sku:
        return api_error(
            "Invalid value",
            f"the cart item at position {pos} has another sku",
            pointer=f"{base}/sku",
        )
    remaining = cart[pos]["remainingQuantity"] - taken[pos]
    if qty > remaining:
        return api_error(
            "Invalid value",
            f"cannot return {qty} unit(s) of position {pos}; {remaining} remaining",
            pointer=f"{base}/quantity",
        )
    return pos


def _resolve_returns(
    cart: list[dict[str, Any]], items: list[dict[str, Any]]
) -> list[tuple[int, int]]:
    """Map returned items to (position, quantity); 400 on unknown lines or over-returns."""
    errors: list[dict[str, Any]] = []
    taken: Counter[int] = Counter()
    resolved: list[tuple[int, int]] = []
    for i, item in enumerate(items):
        found = _locate(cart, item, taken, f"/return/returnedCartItems/{i}")
        if isinstance(found, dict):
            errors.append(found)
            continue
        taken[found] += item["quantity"]
        resolved.append((found, item["quantity"]))
    if errors:
        raise invalid(errors)
    return resolved
