"""Test kit: a thin async client for a running simulator, with one method per endpoint."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from bridge.simulator.app import Simulator

API_KEY = "test-key"


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.raw) if self.raw else None


def sid_path(session_id: str) -> str:
    """Percent-encode a session id exactly like the official SDK (safe='')."""
    return "/v2/customer_sessions/" + quote(session_id, safe="")


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class Harness:
    """A running simulator with one method per endpoint and for the admin API."""

    def __init__(self, sim: Simulator, base_url: str, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.base_url = base_url
        self.http = http

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        key: str | None = API_KEY,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Reply:
        hdrs = {"Content-Type": "application/json"}
        if key is not None:
            hdrs["Authorization"] = f"ApiKey-v1 {key}"
        hdrs.update(headers or {})
        data = raw if raw is not None else (None if body is None else orjson.dumps(body))
        # encoded=True keeps %2F inside the session id exactly as sent by the SDK.
        url = URL(self.base_url + path, encoded=True)
        kwargs: dict[str, Any] = {"data": data, "headers": hdrs}
        if timeout is not None:
            kwargs["timeout"] = timeout
        async with self.http.request(method, url, **kwargs) as resp:
            payload = await resp.read()
            reply = Reply(resp.status, resp.headers, payload)
        if payload:
            # Every body the simulator sends is JSON and says so.
            assert resp.headers["Content-Type"] == "application/json"
        return reply

    async def update(
        self,
        session_id: str,
        customer_session: dict[str, Any],
        *,
        dry: bool | None = None,
        content: list[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        body: dict[str, Any] = {"customerSession": customer_session}
        if content is not None:
            body["responseContent"] = content
        query = "" if dry is None else f"?dry={str(dry).lower()}"
        return await self.call("PUT", sid_path(session_id) + query, body, headers=headers)

    async def give_back(
        self,
        session_id: str,
        items: list[dict[str, Any]],
        *,
        dry: bool | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        query = "" if dry is None else f"?dry={str(dry).lower()}"
        body = {"return": {"returnedCartItems": items}}
        return await self.call(
            "POST", sid_path(session_id) + "/returns" + query, body, headers=headers
        )

    async def event(
        self,
        body: dict[str, Any],
        *,
        silent: str | None = None,
        dry: bool | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        params = []
        if silent is not None:
            params.append(f"silent={silent}")
        if dry is not None:
            params.append(f"dry={str(dry).lower()}")
        query = "?" + "&".join(params) if params else ""
        return await self.call("POST", "/v2/events" + query, body, headers=headers)

    async def get(self, session_id: str) -> Reply:
        return await self.call("GET", sid_path(session_id))

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        reply = await self.call(method, path, body, key=None)
        assert reply.status == 200, reply.raw
        return reply.json

    async def journal(self, session: str) -> list[dict[str, Any]]:
        doc = await self.admin("GET", f"/_sim/journal?session={quote(session, safe='')}")
        entries: list[dict[str, Any]] = doc["entries"]
        return entries

    async def stats(self) -> dict[str, Any]:
        doc: dict[str, Any] = await self.admin("GET", "/_sim/stats")
        return doc
