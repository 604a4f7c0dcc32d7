"""Everything the simulator remembers, and the rules for changing it.

Owns request validation, customer sessions and profiles, the session state machine, the
per-session and per-profile journals, the Idempotency-Key store, the per-key busy gate and
the counters behind ``/_sim/stats``. Pure Python with no HTTP and no event loop: the web
layer calls one method per request and turns `ApiFailure` into an error response.

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

__all__ = [
    "APPLICATION_ID",
    "IDEMPOTENCY_MAX_KEYS",
    "JOURNAL_LIMIT",
    "MAX_IDEMPOTENCY_KEY",
    "STATES",
    "ApiFailure",
    "Counters",
    "IdempotencyStore",
    "Journal",
    "JournalEntry",
    "Lookup",
    "Profile",
    "RequestMeta",
    "Session",
    "SimState",
    "api_error",
    "invalid",
    "rfc3339",
    "validate_event",
    "validate_return",
    "validate_update",
]

APPLICATION_ID: Final = 1
ACCOUNT_ID: Final = 1
STATES: Final = ("open", "closed", "partially_returned", "cancelled")
MAX_CART_ITEMS: Final = 1000
MAX_TOTAL_QUANTITY: Final = 10_000
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
_UPDATE_CONTENT: Final = frozenset(
    {
        "customerSession",
        "customerProfile",
        "coupons",
        "triggeredCampaigns",
        "referral",
        "loyalty",
        "event",
        "awardedGiveaways",
        "ruleFailureReasons",
        "previousReturns",
        "campaignEligibility",
    }
)
_RETURN_CONTENT: Final = frozenset(
    {
        "customerSession",
        "customerProfile",
        "coupons",
        "triggeredCampaigns",
        "referral",
        "loyalty",
        "event",
        "previousReturns",
    }
)
_EVENT_CONTENT: Final = frozenset(
    {
        "customerProfile",
        "triggeredCampaigns",
        "loyalty",
        "event",
        "awardedGiveaways",
        "ruleFailureReasons",
        "campaignEligibility",
    }
)
# Read-only cart item fields: the server computes them, whatever the client sends.
_SERVER_ITEM_FIELDS: Final = ("position", "returnedQuantity", "remainingQuantity")


def rfc3339(dt: datetime) -> str:
    """UTC timestamp with milliseconds and a ``Z`` suffix, as Talon.One sends them."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- errors ------------------------------------------------------------------------------


class ApiFailure(Exception):
    """A request the simulator answers with an error status and a JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def api_error(
    title: str, details: str, *, pointer: str | None = None, parameter: str | None = None
) -> dict[str, Any]:
    """One APIError; exactly one of `pointer` / `parameter` is set in its source."""
    source = {"parameter": parameter} if parameter is not None else {"pointer": pointer or ""}
    return {"title": title, "details": details, "source": source}


def invalid(errors: list[dict[str, Any]], *, with_status: bool = False) -> ApiFailure:
    """400 with Talon's validation message (ErrorResponse, or ErrorResponseWithStatus)."""
    body: dict[str, Any] = {"message": "The submitted data was invalid", "errors": errors}
    if with_status:
        body["StatusCode"] = 400
    return ApiFailure(400, body)


def _escape(token: str) -> str:
    # RFC 6901: '~' and '/' inside a JSON-pointer token.
    return token.replace("~", "~0").replace("/", "~1")


# -- validation --------------------------------------------------------------------------

AttributeRule = Callable[[str], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _type_error(pointer: str, expected: str) -> dict[str, Any]:
    return api_error(
        "Invalid type", f"{pointer.rsplit('/', 1)[-1]} must be {expected}", pointer=pointer
    )


def _check_str_list(
    value: Any, pointer: str, errors: list[dict[str, Any]], *, max_items: int, max_len: int = 0
) -> None:
    if not isinstance(value, list):
        errors.append(_type_error(pointer, "an array of strings"))
        return
    if len(value) > max_items:
        errors.append(
            api_error("Too many items", f"at most {max_items} item(s) allowed", pointer=pointer)
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            errors.append(_type_error(f"{pointer}/{i}", "a string"))
        elif max_len and len(item) > max_len:
            errors.append(
                api_error(
                    "Too long", f"must be at most {max_len} characters", pointer=f"{pointer}/{i}"
                )
            )


def _check_attributes(
    value: Any,
    pointer: str,
    entity: str,
    rejects: AttributeRule,
    errors: list[dict[str, Any]],
    unknown_prefix: str = "",
) -> None:
    if not isinstance(value, dict):
        errors.append(_type_error(pointer, "an object"))
        return
    for name in value:
        if rejects(name):
            errors.append(
                api_error(
                    "Unknown",
                    f'The attribute "{name}" is not defined on {entity} entities.',
                    pointer=f"{unknown_prefix}/attributes/{_escape(name)}",
                )
            )


def _check_response_content(
    value: Any, allowed: frozenset[str], errors: list[dict[str, Any]]
) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append(_type_error("/responseContent", "an array of strings"))
        return []
    for i, item in enumerate(value):
        if item not in allowed:
            errors.append(
                api_error(
                    "enum",
                    f"responseContent must be one of the following: {', '.join(sorted(allowed))}",
                    pointer=f"/responseContent/{i}",
                )
            )
    return [v for v in value if isinstance(v, str)]


def _check_cart_item(
    item: Any, base: str, rejects: AttributeRule, errors: list[dict[str, Any]]
) -> int:
    """Validate one cart item; returns its quantity (0 when invalid)."""
    if not isinstance(item, dict):
        errors.append(_type_error(base, "an object"))
        return 0
    sku = item.get("sku")
    if not isinstance(sku, str) or not sku:
        errors.append(
            api_error("Required", "sku must be a non-empty string", pointer=f"{base}/sku")
        )
    qty = item.get("quantity")
    ok_qty = isinstance(qty, int) and not isinstance(qty, bool) and qty >= 1
    if not ok_qty:
        errors.append(
            api_error(
                "Invalid value", "quantity must be an integer >= 1", pointer=f"{base}/quantity"
            )
        )
    for key in ("price", "weight", "height", "width", "length"):
        if key in item and item[key] is not None and not _is_number(item[key]):
            errors.append(_type_error(f"{base}/{key}", "a number"))
    for key in ("name", "category"):
        if key in item and item[key] is not None and not isinstance(item[key], str):
            errors.append(_type_error(f"{base}/{key}", "a string"))
    attrs = item.get("attributes")
    if attrs is not None:
        prefix = base.removeprefix("/customerSession")
        _check_attributes(attrs, f"{base}/attributes", "CartItem", rejects, errors, prefix)
    return qty if isinstance(qty, int) and ok_qty else 0


def _check_cart(value: Any, rejects: AttributeRule, errors: list[dict[str, Any]]) -> None:
    pointer = "/customerSession/cartItems"
    if not isinstance(value, list):
        errors.append(_type_error(pointer, "an array"))
        return
    if len(value) > MAX_CART_ITEMS:
        errors.append(
            api_error(
                "Too many items", f"at most {MAX_CART_ITEMS} cart items allowed", pointer=pointer
            )
        )
        return
    total = 0
    for i, item in enumerate(value):
        total += _check_cart_item(item, f"{pointer}/{i}", rejects, errors)
    if total > MAX_TOTAL_QUANTITY:
        errors.append(
            api_error(
                "Too many items",
                f"the sum of cart item quantities must not exceed {MAX_TOTAL_QUANTITY}",
                pointer=pointer,
            )
        )


def _check_additional_costs(value: Any, base: str, errors: list[dict[str, Any]]) -> None:
    if not isinstance(value, dict):
        errors.append(_type_error(base, "an object"))
        return
    for name, cost in value.items():
        pointer = f"{base}/{_escape(name)}/price"
        if not isinstance(cost, dict) or not _is_number(cost.get("price")):
            errors.append(api_error("Required", "price must be a number", pointer=pointer))


def _check_session_fields(
    cs: dict[str, Any], rejects: AttributeRule, errors: list[dict[str, Any]]
) -> None:
    base = "/customerSession"
    for key in ("profileId", "referralCode", "storeIntegrationId"):
        if key in cs and not isinstance(cs[key], str):
            errors.append(_type_error(f"{base}/{key}", "a string"))
    ref = cs.get("referralCode")
    if isinstance(ref, str) and len(ref) > 100:
        errors.append(
            api_error("Too long", "must be at most 100 characters", pointer=f"{base}/referralCode")
        )
    state = cs.get("state", "open")
    if state not in STATES:
        errors.append(
            api_error(
                "enum",
                f"state must be one of the following: {', '.join(STATES)}",
                pointer=f"{base}/state",
            )
        )
    if "couponCodes" in cs:
        _check_str_list(
            cs["couponCodes"], f"{base}/couponCodes", errors, max_items=100, max_len=100
        )
    if "identifiers" in cs:
        _check_str_list(cs["identifiers"], f"{base}/identifiers", errors, max_items=5)
    if "loyaltyCards" in cs:
        _check_str_list(cs["loyaltyCards"], f"{base}/loyaltyCards", errors, max_items=1)
    if "cartItems" in cs:
        _check_cart(cs["cartItems"], rejects, errors)
    if "additionalCosts" in cs:
        _check_additional_costs(cs["additionalCosts"], f"{base}/additionalCosts", errors)
    if "attributes" in cs:
        _check_attributes(
            cs["attributes"], f"{base}/attributes", "CustomerSession", rejects, errors
        )


def _drop_nulls(obj: dict[str, Any]) -> dict[str, Any]:
    # A JSON null means "not sent", as the SDK's own serializer leaves None fields out.
    if all(v is not None for v in obj.values()):
        return obj
    return {k: v for k, v in obj.items() if v is not None}


def _require_object(body: Any, *, with_status: bool = False) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    error = api_error("Invalid type", "the request body must be a JSON object", pointer="")
    raise invalid([error], with_status=with_status)


def validate_update(body: Any, rejects: AttributeRule) -> tuple[dict[str, Any], list[str]]:
    """Check an IntegrationRequest; returns (customerSession, responseContent)."""
    obj = _require_object(body)
    errors: list[dict[str, Any]] = []
    cs = obj.get("customerSession")
    if cs is None:
        errors.append(
            api_error("Required", "customerSession is required", pointer="/customerSession")
        )
    elif not isinstance(cs, dict):
        errors.append(_type_error("/customerSession", "an object"))
    else:
        cs = _drop_nulls(cs)
        _check_session_fields(cs, rejects, errors)
    content = _check_response_content(obj.get("responseContent"), _UPDATE_CONTENT, errors)
    if errors:
        raise invalid(errors)
    assert isinstance(cs, dict)  # noqa: S101 - guaranteed by the checks above
    return cs, content


def validate_event(body: Any, rejects: AttributeRule) -> tuple[dict[str, Any], list[str]]:
    """Check an IntegrationEventV2Request; returns (body, responseContent)."""
    obj = _drop_nulls(_require_object(body, with_status=True))
    errors: list[dict[str, Any]] = []
    etype = obj.get("type")
    if not isinstance(etype, str) or not etype:
        errors.append(api_error("Required", "type must be a non-empty string", pointer="/type"))
    pid = obj.get("profileId")
    if not isinstance(pid, str) or not pid:
        errors.append(
            api_error("Required", "profileId is required for events", pointer="/profileId")
        )
    if "attributes" in obj:
        _check_attributes(obj["attributes"], "/attributes", "Event", rejects, errors)
    if "loyaltyCards" in obj:
        _check_str_list(obj["loyaltyCards"], "/loyaltyCards", errors, max_items=1)
    store = obj.get("storeIntegrationId")
    if store is not None and (not isinstance(store, str) or not 1 <= len(store) <= 1000):
        errors.append(_type_error("/storeIntegrationId", "a string of 1 to 1000 characters"))
    content = _check_response_content(obj.get("responseContent"), _EVENT_CONTENT, errors)
    if errors:
        raise invalid(errors, with_status=True)
    return obj, content


def _check_returned_item(item: Any, base: str, errors: list[dict[str, Any]]) -> None:
    if not isinstance(item, dict):
        errors.append(_type_error(base, "an object"))
        return
    pos, sku, qty = item.get("position"), item.get("sku"), item.get("quantity")
    if pos is not None and not (_is_int(pos) and pos >= 0):
        errors.append(
            api_error(
                "Invalid value", "position must be an integer >= 0", pointer=f"{base}/position"
            )
        )
    if sku is not None and (not isinstance(sku, str) or not sku):
        errors.append(
            api_error("Invalid value", "sku must be a non-empty string", pointer=f"{base}/sku")
        )
    if pos is None and sku is None:
        errors.append(
            api_error("Required", "position or sku is required", pointer=f"{base}/position")
        )
    if not (isinstance(qty, int) and not isinstance(qty, bool) and qty >= 1):
        errors.append(
            api_error(
                "Invalid value", "quantity must be an integer >= 1", pointer=f"{base}/quantity"
            )
        )


def validate_return(body: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Check a ReturnIntegrationRequest; returns (returnedCartItems, responseContent)."""
    obj = _require_object(body)
    errors: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    ret = obj.get("return")
    if not isinstance(ret, dict):
        errors.append(api_error("Required", "return must be an object", pointer="/return"))
    else:
        raw = ret.get("returnedCartItems")
        base = "/return/returnedCartItems"
        if not isinstance(raw, list) or not raw:
            errors.append(
                api_error("Required", "returnedCartItems must be a non-empty array", pointer=base)
            )
        else:
            for i, item in enumerate(raw):
                _check_returned_item(item, f"{base}/{i}", errors)
            items = raw
    content = _check_response_content(obj.get("responseContent"), _RETURN_CONTENT, errors)
    if errors:
        raise invalid(errors)
    return items, content


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
        self.conflicts: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.op_requests: Counter[str] = Counter()
        self.op_applied: Counter[str] = Counter()
        self.op_conflicts: Counter[str] = Counter()
        self.event_ids: Counter[str] = Counter()
        self.repeated_event_ids: dict[str, int] = {}
        self.max_concurrency = 0

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
