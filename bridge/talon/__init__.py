"""Talon.One Integration API access: wire models, the answer summary, the client, transports.

The rest of the bridge imports from here; `bridge.talon.answers` is the only place where HTTP
outcomes are turned into `bridge.errors` exceptions.
"""

from __future__ import annotations

from bridge.talon.client import (
    EVENT_ID_HEADER,
    ApiResult,
    Observer,
    Operation,
    Outcome,
    TalonClient,
    idempotency_key_for,
    parse_retry_after,
)
from bridge.talon.models import (
    AdditionalCost,
    APIError,
    CartItem,
    Coupon,
    CustomerSessionV2,
    Effect,
    ErrorResponse,
    ErrorResponseWithStatus,
    ErrorSource,
    IntegrationEventV2Request,
    IntegrationRequest,
    IntegrationStateV2,
    ModelReturn,
    NewCustomerSessionV2,
    NewReturn,
    Referral,
    ReturnedCartItem,
    ReturnIntegrationRequest,
    SessionCartItem,
    SessionState,
    TrackEventV2Response,
)
from bridge.talon.summary import (
    IntegrationSummary,
    SessionSummary,
    SummaryCoupon,
    SummaryEffect,
    SummaryReferral,
)
from bridge.talon.transports import AiohttpTransport, MockTransport, ReqwestTransport

__all__ = [
    "EVENT_ID_HEADER",
    "APIError",
    "AdditionalCost",
    "AiohttpTransport",
    "ApiResult",
    "CartItem",
    "Coupon",
    "CustomerSessionV2",
    "Effect",
    "ErrorResponse",
    "ErrorResponseWithStatus",
    "ErrorSource",
    "IntegrationEventV2Request",
    "IntegrationRequest",
    "IntegrationStateV2",
    "IntegrationSummary",
    "MockTransport",
    "ModelReturn",
    "NewCustomerSessionV2",
    "NewReturn",
    "Observer",
    "Operation",
    "Outcome",
    "Referral",
    "ReqwestTransport",
    "ReturnIntegrationRequest",
    "ReturnedCartItem",
    "SessionCartItem",
    "SessionState",
    "SessionSummary",
    "SummaryCoupon",
    "SummaryEffect",
    "SummaryReferral",
    "TalonClient",
    "TrackEventV2Response",
    "idempotency_key_for",
    "parse_retry_after",
]
