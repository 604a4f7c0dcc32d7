"""Avro datums (as fastavro reads and writes them) to and from `Command` and `EffectsEmitted`.

Hand-written in both directions: it is the hot path, and a generic mapper would cost more than
fastavro itself. The bundled schemas' exact versions skip this module altogether
(`bridge.avro.reader`, `bridge.avro.writer`); every other writer schema comes through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bridge.avro.schemas import NAMESPACE
from bridge.commands import (
    AdditionalCost,
    CartItem,
    Command,
    CreatedCouponRecord,
    CreatedReferralRecord,
    EffectRecord,
    EffectsEmitted,
    JsonValue,
    Payload,
    ReturnCartItems,
    ReturnedCartItem,
    TrackEvent,
    TrackEventV3,
    UpdateCustomerSession,
)

__all__ = ["command_from_avro", "command_to_avro", "effects_from_avro", "effects_to_avro"]

_TRACK_EVENT = f"{NAMESPACE}.TrackEvent"
_UPDATE_SESSION = f"{NAMESPACE}.UpdateCustomerSession"
_RETURN_ITEMS = f"{NAMESPACE}.ReturnCartItems"
_TRACK_EVENT_V3 = f"{NAMESPACE}.TrackEventV3"

_loads = orjson.loads
_dumps = orjson.dumps


def _json_map_in(m: dict[str, str] | None) -> dict[str, JsonValue]:
    if not m:
        return {}
    return {k: _loads(v) for k, v in m.items()}


def _json_map_in_or_none(m: dict[str, str] | None) -> dict[str, JsonValue] | None:
    if m is None:
        return None
    return {k: _loads(v) for k, v in m.items()}


def _json_map_out(m: Mapping[str, JsonValue]) -> dict[str, str]:
    return {k: _dumps(v).decode() for k, v in m.items()}


# Nullable arrays and maps are written as ("array" | "map", value): naming the union branch
# spares fastavro a deep validation of the value against every branch, a third of write time.
def _array(v: list[Any] | None) -> tuple[str, list[Any]] | None:
    return None if v is None else ("array", v)


def _json_map(m: Mapping[str, JsonValue] | None) -> tuple[str, dict[str, str]] | None:
    return None if m is None else ("map", _json_map_out(m))


def command_from_avro(r: dict[str, Any]) -> Command:
    p = r["payload"]
    # The payload records are told apart by fields only one of them has; asking fastavro for
    # record names instead slows every union it reads.
    payload: Payload
    if "returnedCartItems" in p:
        payload = ReturnCartItems(
            [
                ReturnedCartItem(i["position"], i["quantity"], i["sku"])
                for i in p["returnedCartItems"]
            ]
        )
    elif "integrationId" in p:
        payload = TrackEventV3(
            p["type"],
            p["profileId"],
            _json_map_in(p["attributes"]),
            p["loyaltyCards"] or [],
            p["storeIntegrationId"],
            p["integrationId"],
        )
    elif "type" in p:
        payload = TrackEvent(
            p["type"],
            p["profileId"],
            _json_map_in(p["attributes"]),
            p["loyaltyCards"] or [],
            p["storeIntegrationId"],
        )
    else:
        items = p["cartItems"]
        costs = p["additionalCosts"]
        payload = UpdateCustomerSession(
            p["profileId"],
            p["state"],
            None
            if items is None
            else [
                CartItem(
                    i["sku"],
                    i["quantity"],
                    i["price"],
                    i["name"],
                    i["category"],
                    _json_map_in(i["attributes"]),
                )
                for i in items
            ],
            p["couponCodes"],
            p["referralCode"],
            p["loyaltyCards"],
            p["identifiers"],
            None if costs is None else {k: AdditionalCost(v["price"]) for k, v in costs.items()},
            _json_map_in_or_none(p["attributes"]),
            p["storeIntegrationId"],
        )
    return Command(r["eventId"], r["sessionId"], r["occurredAt"], payload, r["source"], r["dry"])


def command_to_avro(cmd: Command) -> dict[str, Any]:
    p = cmd.payload
    payload: tuple[str, dict[str, Any]]
    if isinstance(p, UpdateCustomerSession):
        items = p.cart_items
        costs = p.additional_costs
        payload = (
            _UPDATE_SESSION,
            {
                "profileId": p.profile_id,
                "state": p.state,
                "cartItems": None
                if items is None
                else (
                    "array",
                    [
                        {
                            "sku": i.sku,
                            "quantity": i.quantity,
                            "price": i.price,
                            "name": i.name,
                            "category": i.category,
                            "attributes": _json_map(i.attributes or None),
                        }
                        for i in items
                    ],
                ),
                "couponCodes": _array(p.coupon_codes),
                "referralCode": p.referral_code,
                "loyaltyCards": _array(p.loyalty_cards),
                "identifiers": _array(p.identifiers),
                "additionalCosts": None
                if costs is None
                else ("map", {k: {"price": v.price} for k, v in costs.items()}),
                "attributes": _json_map(p.attributes),
                "storeIntegrationId": p.store_integration_id,
            },
        )
    elif isinstance(p, TrackEvent | TrackEventV3):
        event: dict[str, Any] = {
            "type": p.type,
            "profileId": p.profile_id,
            "attributes": _json_map(p.attributes or None),
            "loyaltyCards": _array(p.loyalty_cards or None),
            "storeIntegrationId": p.store_integration_id,
        }
        if isinstance(p, TrackEventV3):
            event["integrationId"] = p.integration_id
            payload = (_TRACK_EVENT_V3, event)
        else:
            payload = (_TRACK_EVENT, event)
    else:
        payload = (
            _RETURN_ITEMS,
            {
                "returnedCartItems": [
                    {"position": i.position, "quantity": i.quantity, "sku": i.sku}
                    for i in p.returned_cart_items
                ]
            },
        )
    return {
        "eventId": cmd.event_id,
        "sessionId": cmd.session_id,
        "occurredAt": cmd.occurred_at_ms,
        "source": cmd.source,
        "dry": cmd.dry,
        "payload": payload,
    }


def effects_from_avro(r: dict[str, Any]) -> EffectsEmitted:
    return EffectsEmitted(
        event_id=r["eventId"],
        session_id=r["sessionId"],
        profile_id=r["profileId"],
        command_type=r["commandType"],
        source_topic=r["sourceTopic"],
        source_partition=r["sourcePartition"],
        source_offset=r["sourceOffset"],
        processed_at_ms=r["processedAt"],
        session_state=r["sessionState"],
        effects=[
            EffectRecord(
                e["campaignId"],
                e["rulesetId"],
                e["ruleIndex"],
                e["ruleName"],
                e["effectType"],
                e["props"],
                e["triggeredByCoupon"],
                e["triggeredForCatalogItem"],
                e["conditionIndex"],
                e["evaluationGroupID"],
                e["evaluationGroupMode"],
                e["campaignRevisionId"],
                e["campaignRevisionVersionId"],
            )
            for e in r["effects"]
        ],
        created_coupons=[
            CreatedCouponRecord(c["id"], c["campaignId"], c["value"]) for c in r["createdCoupons"]
        ],
        created_referrals=[
            CreatedReferralRecord(
                c["id"], c["campaignId"], c["code"], c["advocateProfileIntegrationId"]
            )
            for c in r["createdReferrals"]
        ],
        dry=r["dry"],
    )


def effects_to_avro(rec: EffectsEmitted) -> dict[str, Any]:
    return {
        "eventId": rec.event_id,
        "sessionId": rec.session_id,
        "profileId": rec.profile_id,
        "commandType": rec.command_type,
        "sourceTopic": rec.source_topic,
        "sourcePartition": rec.source_partition,
        "sourceOffset": rec.source_offset,
        "processedAt": rec.processed_at_ms,
        "sessionState": rec.session_state,
        "dry": rec.dry,
        "effects": [
            {
                "campaignId": e.campaign_id,
                "rulesetId": e.ruleset_id,
                "ruleIndex": e.rule_index,
                "ruleName": e.rule_name,
                "effectType": e.effect_type,
                "props": e.props,
                "triggeredByCoupon": e.triggered_by_coupon,
                "triggeredForCatalogItem": e.triggered_for_catalog_item,
                "conditionIndex": e.condition_index,
                "evaluationGroupID": e.evaluation_group_id,
                "evaluationGroupMode": e.evaluation_group_mode,
                "campaignRevisionId": e.campaign_revision_id,
                "campaignRevisionVersionId": e.campaign_revision_version_id,
            }
            for e in rec.effects
        ],
        "createdCoupons": [
            {"id": c.id, "campaignId": c.campaign_id, "value": c.value} for c in rec.created_coupons
        ],
        "createdReferrals": [
            {
                "id": c.id,
                "campaignId": c.campaign_id,
                "code": c.code,
                "advocateProfileIntegrationId": c.advocate_profile_integration_id,
            }
            for c in rec.created_referrals
        ],
    }
