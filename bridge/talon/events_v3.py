"""trackEventV3 and getEventV3: the calls of events Talon.One registers once per integrationId.

A mixin of `TalonClient`, which owns the exchange (`_call`) they go through; kept apart so the
client module stays one screenful per concern. trackEventV3's 409 means either "the profile
is busy" (`ConflictError`) or "this integrationId is registered already"
(`EventExistsError`); `bridge.talon.answers` tells them apart by the body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, overload

import msgspec
from pydantic import BaseModel

from bridge.talon.addressing import EVENT_QUERY, EVENTS_V3_PATH, event_v3_path
from bridge.talon.bodies import Prepared
from bridge.talon.models import EventV3, IntegrationEventV3Request, IntegrationEventV3Response

if TYPE_CHECKING:
    from bridge.talon.answers import Operation
    from bridge.talon.client import ApiResult

__all__ = ["EventsV3"]

_M = TypeVar("_M", bound=BaseModel | msgspec.Struct)


class EventsV3:
    """The trackEventV3 and getEventV3 calls of `TalonClient`."""

    if TYPE_CHECKING:

        async def _call(
            self,
            operation: Operation,
            method: str,
            path: str,
            query: str,
            content: bytes,
            model: type[_M],
            idempotency_key: str | None,
            event_id: str | None = None,
        ) -> ApiResult[_M]: ...

    @overload
    async def track_event_v3(
        self,
        body: IntegrationEventV3Request | Prepared[IntegrationEventV3Request],
        *,
        dry: bool = False,
        idempotency_key: str | None = None,
        event_id: str | None = None,
    ) -> ApiResult[IntegrationEventV3Response]: ...

    @overload
    async def track_event_v3(
        self,
        body: IntegrationEventV3Request | Prepared[IntegrationEventV3Request],
        *,
        dry: bool = False,
        idempotency_key: str | None = None,
        event_id: str | None = None,
        model: type[_M],
    ) -> ApiResult[_M]: ...

    async def track_event_v3(
        self,
        body: IntegrationEventV3Request | Prepared[IntegrationEventV3Request],
        *,
        dry: bool = False,
        idempotency_key: str | None = None,
        event_id: str | None = None,
        model: type[Any] = IntegrationEventV3Response,
    ) -> ApiResult[Any]:
        """Register an event once per integrationId: ``POST /v3/events?silent=no``.

        Args:
            body: The event, with its `integrationId`.
            dry: Evaluate the rules without persisting anything.
            idempotency_key: Sent as ``Idempotency-Key`` (see `idempotency_key_for`).
            event_id: The command's eventId, sent as ``X-Talon-Bridge-Event-Id``.
            model: What to parse the answer into (a pydantic model or a msgspec struct).

        Raises:
            EventExistsError: An event with this integrationId is registered already.
            ApiError: Another subclass matching the outcome, see `bridge.talon.answers`.
        """
        return await self._call(
            "track_event_v3",
            "POST",
            EVENTS_V3_PATH,
            EVENT_QUERY[dry],
            body.to_json(),
            model,
            idempotency_key,
            event_id,
        )

    @overload
    async def get_event_v3(
        self, integration_id: str, *, event_id: str | None = None
    ) -> ApiResult[EventV3]: ...

    @overload
    async def get_event_v3(
        self, integration_id: str, *, event_id: str | None = None, model: type[_M]
    ) -> ApiResult[_M]: ...

    async def get_event_v3(
        self, integration_id: str, *, event_id: str | None = None, model: type[Any] = EventV3
    ) -> ApiResult[Any]:
        """The event registered under `integration_id`: ``GET /v3/events/{integrationId}``.

        Its `effects` are those Talon.One decided when it registered the event. The call
        is counted under the ``track_event_v3`` operation, whose outcome it completes.

        Raises:
            ApiError: The subclass matching the outcome (404: no such event).
        """
        return await self._call(
            "track_event_v3", "GET", event_v3_path(integration_id), "", b"", model, None, event_id
        )
