"""The simulator's deterministic rule engine: which effects a session or an event produces.

Five fixed campaigns stand in for a real Talon.One Application, so every effect the bridge
sees is predictable from the request alone:

========  =====================================  ==========================================
campaign  rule                                   effects
========  =====================================  ==========================================
101       coupon codes                           ``acceptCoupon`` + ``setDiscount`` for codes
                                                 starting with an accepted prefix (``SAVE``,
                                                 ``XMAS``), ``rejectCoupon`` otherwise
102       cart subtotal >= threshold (100)       ``setDiscount`` "10% off over 100"
103       items of category ``shoes`` or SKU     ``setDiscountPerItem`` per unit
          prefix ``SHOE``
104       closing a session that has a profile   ``addLoyaltyPoints``, 1 point per currency unit
105       configured event types                 ``customEffect``
========  =====================================  ==========================================

Closing a session records a `Ledger` of what was granted; returns and cancellations turn
the ledger into ``rollbackDiscount`` / ``rollbackCoupon`` / ``rollbackAddedLoyaltyPoints``.
Everything here is pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

import math
import re
import uuid
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CAMPAIGN_COUPON",
    "CAMPAIGN_CUSTOM",
    "CAMPAIGN_LOYALTY",
    "CAMPAIGN_PER_ITEM",
    "CAMPAIGN_THRESHOLD",
    "Effect",
    "Ledger",
    "ReturnedUnits",
    "RuleConfig",
    "RuleEngine",
    "cart_total",
    "money",
]

Effect = dict[str, Any]

CAMPAIGN_COUPON = 101
CAMPAIGN_THRESHOLD = 102
CAMPAIGN_PER_ITEM = 103
CAMPAIGN_LOYALTY = 104
CAMPAIGN_CUSTOM = 105

# A fixed namespace keeps transactionUUIDs identical across runs for the same session.
_UUID_NAMESPACE = uuid.UUID("6f1b3a52-2f0e-4c59-9a43-5b8d7c1e0a11")
_PERCENT_RE = re.compile(r"(\d{1,2})\D*$")


def money(value: float) -> float | int:
    """Round to cents; integral amounts become ints so totals read naturally in JSON."""
    rounded = round(float(value), 2)
    return int(rounded) if rounded.is_integer() else rounded


def _stable_id(text: str) -> int:
    # crc32 is stable across processes (unlike hash()) and fits Talon's positive int ids.
    return zlib.crc32(text.encode()) % 1_000_000 + 1


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """Tunable parameters of the five campaigns."""

    coupon_prefixes: tuple[str, ...] = ("SAVE", "XMAS")
    default_coupon_percent: int = 10
    threshold: float = 100.0
    threshold_percent: int = 10
    per_item_categories: tuple[str, ...] = ("shoes",)
    per_item_sku_prefixes: tuple[str, ...] = ("SHOE",)
    per_item_discount: float = 5.0
    loyalty_program_id: int = 1
    points_per_unit: int = 1
    event_effect_types: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class _Rule:
    campaign_id: int
    ruleset_id: int
    rule_index: int
    rule_name: str

    def effect(
        self, effect_type: str, props: dict[str, Any], coupon_id: int | None = None
    ) -> Effect:
        eff: Effect = {
            "campaignId": self.campaign_id,
            "rulesetId": self.ruleset_id,
            "ruleIndex": self.rule_index,
            "ruleName": self.rule_name,
            "effectType": effect_type,
            "props": props,
        }
        if coupon_id is not None:
            eff["triggeredByCoupon"] = coupon_id
        return eff


_COUPON_RULE = _Rule(CAMPAIGN_COUPON, 201, 0, "Coupon discount")
_LOYALTY_RULE = _Rule(CAMPAIGN_LOYALTY, 204, 0, "1 point per unit spent")


@dataclass(slots=True)
class _SessionDiscount:
    rule: _Rule
    name: str
    value: float
    remaining: float
    coupon_id: int | None


@dataclass(slots=True)
class _Points:
    program_id: int
    value: int
    remaining: int
    recipient: str
    transaction_uuid: str
    rollbacks: int = 0


@dataclass(slots=True)
class Ledger:
    """What a closed session was granted, so returns and cancellation can roll it back."""

    cart_item_total: float
    coupons: list[tuple[str, int]] = field(default_factory=list)
    session_discounts: list[_SessionDiscount] = field(default_factory=list)
    unit_discounts: dict[tuple[int, int], tuple[_Rule, str, float]] = field(default_factory=dict)
    points: _Points | None = None
    returned_value: float = 0.0

    def remaining_effects(self) -> list[Effect]:
        """The grants still in force, in the shape of the effects that granted them."""
        out: list[Effect] = []
        for code, coupon_id in self.coupons:
            out.append(_COUPON_RULE.effect("acceptCoupon", {"value": code}, coupon_id))
        for d in self.session_discounts:
            props = {"name": d.name, "value": money(d.remaining), "scope": "sessionTotal"}
            out.append(d.rule.effect("setDiscount", props, d.coupon_id))
        for (pos, sub), (rule, name, value) in self.unit_discounts.items():
            props = {"name": name, "value": value, "position": pos, "subPosition": sub}
            out.append(rule.effect("setDiscountPerItem", props))
        return out


@dataclass(frozen=True, slots=True)
class ReturnedUnits:
    """Units being returned from one cart line: sub-positions ``first .. first + count - 1``."""

    position: int
    first_sub_position: int
    count: int
    unit_price: float


class RuleEngine:
    """Evaluates the fixed campaigns; one instance serves the whole simulator."""

    def __init__(self, config: RuleConfig | None = None) -> None:
        self.config = config or RuleConfig()
        c = self.config
        self._threshold_rule = _Rule(
            CAMPAIGN_THRESHOLD, 202, 0, f"{c.threshold_percent}% off over {money(c.threshold)}"
        )
        self._per_item_rule = _Rule(
            CAMPAIGN_PER_ITEM, 203, 0, f"{money(c.per_item_discount)} off shoes"
        )
        self._categories = frozenset(x.lower() for x in c.per_item_categories)

    # -- sessions -----------------------------------------------------------------------

    def accepts_coupon(self, code: str) -> bool:
        return code.upper().startswith(self.config.coupon_prefixes)

    def coupon_percent(self, code: str) -> int:
        """``SAVE15`` → 15 %, ``XMAS-20`` → 20 %; no trailing number → the default."""
        m = _PERCENT_RE.search(code)
        pct = int(m.group(1)) if m else self.config.default_coupon_percent
        return max(1, min(pct, 50))

    def evaluate_session(
        self, cart_items: Sequence[Mapping[str, Any]], coupon_codes: Iterable[str]
    ) -> list[Effect]:
        """Effects for the current content of a session (coupons, thresholds, per-item)."""
        subtotal = cart_total(cart_items)
        effects: list[Effect] = []
        for code in coupon_codes:
            if self.accepts_coupon(code):
                coupon_id = _stable_id(code)
                pct = self.coupon_percent(code)
                effects.append(_COUPON_RULE.effect("acceptCoupon", {"value": code}, coupon_id))
                props = {
                    "name": f"Coupon {code}: {pct}% off",
                    "value": money(subtotal * pct / 100),
                    "scope": "sessionTotal",
                }
                effects.append(_COUPON_RULE.effect("setDiscount", props, coupon_id))
            else:
                props = {"value": code, "rejectionReason": "CouponNotFound"}
                effects.append(_COUPON_RULE.effect("rejectCoupon", props))
        if subtotal >= self.config.threshold:
            props = {
                "name": self._threshold_rule.rule_name,
                "value": money(subtotal * self.config.threshold_percent / 100),
                "scope": "sessionTotal",
            }
            effects.append(self._threshold_rule.effect("setDiscount", props))
        effects.extend(self._per_item_effects(cart_items))
        return effects

    def _qualifies_per_item(self, item: Mapping[str, Any]) -> bool:
        category = item.get("category")
        if isinstance(category, str) and category.lower() in self._categories:
            return True
        sku: str = item.get("sku", "")
        return sku.startswith(self.config.per_item_sku_prefixes)

    def _per_item_effects(self, cart_items: Sequence[Mapping[str, Any]]) -> list[Effect]:
        out: list[Effect] = []
        rule = self._per_item_rule
        for pos, item in enumerate(cart_items):
            if not self._qualifies_per_item(item):
                continue
            price = float(item.get("price") or 0)
            value = money(min(self.config.per_item_discount, price))
            if value <= 0:
                continue
            name = f"{rule.rule_name}#{pos}"
            for sub in range(int(item["quantity"])):
                props = {
                    "name": name,
                    "value": value,
                    "position": pos,
                    "subPosition": sub,
                    "scope": "price",
                }
                out.append(rule.effect("setDiscountPerItem", props))
        return out

    def closing_effects(
        self, session_key: str, profile_id: str, cart_item_total: float
    ) -> list[Effect]:
        """Extra effects of closing a session: loyalty points for a known profile."""
        points = math.floor(cart_item_total * self.config.points_per_unit)
        if not profile_id or points <= 0:
            return []
        props = {
            "name": _LOYALTY_RULE.rule_name,
            "programId": self.config.loyalty_program_id,
            "subLedgerId": "",
            "value": points,
            "recipientIntegrationId": profile_id,
            "transactionUUID": str(uuid.uuid5(_UUID_NAMESPACE, f"{session_key}/close")),
        }
        return [_LOYALTY_RULE.effect("addLoyaltyPoints", props)]

    def build_ledger(self, effects: Sequence[Effect], cart_item_total: float) -> Ledger:
        """Record the grants among the effects of a close, for later rollbacks."""
        ledger = Ledger(cart_item_total=cart_item_total)
        rules = {r.campaign_id: r for r in (_COUPON_RULE, self._threshold_rule, _LOYALTY_RULE)}
        for eff in effects:
            kind = eff["effectType"]
            props = eff["props"]
            if kind == "acceptCoupon":
                ledger.coupons.append((props["value"], eff["triggeredByCoupon"]))
            elif kind == "setDiscount":
                rule = rules[eff["campaignId"]]
                value = float(props["value"])
                ledger.session_discounts.append(
                    _SessionDiscount(
                        rule, props["name"], value, value, eff.get("triggeredByCoupon")
                    )
                )
            elif kind == "setDiscountPerItem":
                key = (props["position"], props["subPosition"])
                ledger.unit_discounts[key] = (self._per_item_rule, props["name"], props["value"])
            elif kind == "addLoyaltyPoints":
                ledger.points = _Points(
                    program_id=props["programId"],
                    value=props["value"],
                    remaining=props["value"],
                    recipient=props["recipientIntegrationId"],
                    transaction_uuid=props["transactionUUID"],
                )
        return ledger

    # -- rollbacks ----------------------------------------------------------------------

    def return_rollbacks(self, ledger: Ledger, returned: Sequence[ReturnedUnits]) -> list[Effect]:
        """Roll back what the returned units earned; mutates `ledger` accordingly."""
        effects: list[Effect] = []
        value = 0.0
        for units in returned:
            value += units.unit_price * units.count
            for sub in range(units.first_sub_position, units.first_sub_position + units.count):
                grant = ledger.unit_discounts.pop((units.position, sub), None)
                if grant is not None:
                    rule, name, amount = grant
                    props = {
                        "name": name,
                        "value": amount,
                        "cartItemPosition": units.position,
                        "cartItemSubPosition": sub,
                        "scope": "price",
                    }
                    effects.append(rule.effect("rollbackDiscount", props))
        ledger.returned_value += value
        everything = ledger.returned_value >= ledger.cart_item_total - 1e-9
        share = 0.0 if ledger.cart_item_total <= 0 else value / ledger.cart_item_total
        for d in ledger.session_discounts:
            amount = d.remaining if everything else min(d.remaining, round(d.value * share, 2))
            if amount > 0:
                d.remaining = round(d.remaining - amount, 2)
                props = {"name": d.name, "value": money(amount), "scope": "sessionTotal"}
                effects.append(d.rule.effect("rollbackDiscount", props, d.coupon_id))
        points = ledger.points
        if points is not None and points.remaining > 0:
            earned = math.floor(value * self.config.points_per_unit)
            amount = points.remaining if everything else min(points.remaining, earned)
            if amount > 0:
                effects.append(self._points_rollback(points, amount))
        return effects

    def cancel_rollbacks(self, ledger: Ledger) -> list[Effect]:
        """Roll back every grant still in force; empties `ledger`."""
        effects: list[Effect] = []
        for code, coupon_id in ledger.coupons:
            effects.append(_COUPON_RULE.effect("rollbackCoupon", {"value": code}, coupon_id))
        ledger.coupons.clear()
        for d in ledger.session_discounts:
            if d.remaining > 0:
                props = {"name": d.name, "value": money(d.remaining), "scope": "sessionTotal"}
                effects.append(d.rule.effect("rollbackDiscount", props, d.coupon_id))
                d.remaining = 0.0
        for (pos, sub), (rule, name, amount) in ledger.unit_discounts.items():
            props = {
                "name": name,
                "value": amount,
                "cartItemPosition": pos,
                "cartItemSubPosition": sub,
                "scope": "price",
            }
            effects.append(rule.effect("rollbackDiscount", props))
        ledger.unit_discounts.clear()
        if ledger.points is not None and ledger.points.remaining > 0:
            effects.append(self._points_rollback(ledger.points, ledger.points.remaining))
        return effects

    @staticmethod
    def _points_rollback(points: _Points, amount: int) -> Effect:
        points.remaining -= amount
        points.rollbacks += 1
        tx = uuid.uuid5(_UUID_NAMESPACE, f"{points.transaction_uuid}/rollback/{points.rollbacks}")
        props = {
            "programId": points.program_id,
            "subLedgerId": "",
            "value": amount,
            "recipientIntegrationId": points.recipient,
            "transactionUUID": str(tx),
        }
        return _LOYALTY_RULE.effect("rollbackAddedLoyaltyPoints", props)

    # -- events -------------------------------------------------------------------------

    def event_effects(
        self, event_type: str, profile_id: str, attributes: Mapping[str, Any]
    ) -> list[Effect]:
        """A ``customEffect`` for configured event types, nothing otherwise."""
        if event_type not in self.config.event_effect_types:
            return []
        rule = _Rule(CAMPAIGN_CUSTOM, 205, 0, f"Custom effect on {event_type}")
        props = {
            "effectId": _stable_id(event_type),
            "name": event_type,
            "payload": {
                "eventType": event_type,
                "profileId": profile_id,
                "attributeCount": len(attributes),
            },
        }
        return [rule.effect("customEffect", props)]


def cart_total(cart_items: Sequence[Mapping[str, Any]]) -> float:
    """Sum of price times quantity over the cart (items without a price count as 0)."""
    total = 0.0
    for item in cart_items:
        price = item.get("price")
        if price:
            total += float(price) * int(item["quantity"])
    return total
