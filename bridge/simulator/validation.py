"""Talon.One's error bodies and the validation of the three request bodies.

Pure functions with no state: each `validate_*` returns the normalised body or raises
`ApiFailure` carrying Talon.One's 400 body with JSON pointers. The documented limits are
enforced here: 1000 cart items, a total quantity of at most 10,000, at most 5 identifiers and
at most 1 loyalty card.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "EVENT_EXISTS",
    "MAX_CART_ITEMS",
    "MAX_TOTAL_QUANTITY",
    "STATES",
    "ApiFailure",
    "AttributeRule",
    "api_error",
    "invalid",
    "validate_event",
    "validate_event_v3",
    "validate_return",
    "validate_update",
]

STATES: Final = ("open", "closed", "partially_returned", "cancelled")
MAX_CART_ITEMS: Final = 1000
MAX_TOTAL_QUANTITY: Final = 10_000
# responseContent values each endpoint accepts.
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
_UPDATE_CONTENT: Final = _RETURN_CONTENT | {
    "awardedGiveaways",
    "ruleFailureReasons",
    "campaignEligibility",
}
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


# trackEventV3's other 409: the integrationId is registered already. Talon.One publishes no
# text for it; this one says it in words the bridge recognises (`already exists`).
EVENT_EXISTS: Final[dict[str, Any]] = {
    "message": "An event with this integrationId already exists",
    "errors": [
        api_error(
            "Conflict",
            "an event with this integrationId is registered already; getEventV3 returns it",
            pointer="/integrationId",
        )
    ],
    "StatusCode": 409,
}


def validate_event_v3(body: Any, rejects: AttributeRule) -> tuple[dict[str, Any], list[str]]:
    """Check an IntegrationEventV3Request: an IntegrationEventV2Request plus its required
    `integrationId`; returns (body, responseContent)."""
    try:
        obj, content = validate_event(body, rejects)
        errors: list[dict[str, Any]] = []
    except ApiFailure as exc:
        # The body is an object here unless the first check already refused it.
        if not isinstance(body, dict):
            raise
        obj, content, errors = _drop_nulls(body), [], list(exc.body["errors"])
    iid = obj.get("integrationId")
    if not isinstance(iid, str) or not 1 <= len(iid) <= 1000:
        errors.append(
            api_error(
                "Required",
                "integrationId must be a string of 1 to 1000 characters",
                pointer="/integrationId",
            )
        )
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
