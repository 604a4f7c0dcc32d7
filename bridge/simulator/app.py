"""The simulator's HTTP surface: an aiohttp application that answers like Talon.One.

Owns routing (on the raw path, so ``%2F`` inside a session id never splits it), the
request pipeline and the ``/_sim/*`` admin endpoints. State lives in `SimState`, faults
in `FaultInjector`, effects in `RuleEngine`; this module only sequences them::

    auth -> injected fault -> Idempotency-Key -> validation -> busy gate (409)
         -> simulated latency (gate held) -> apply -> release -> respond

Only request counts are logged, never request or response bodies.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import unquote

import orjson
from aiohttp import web

from bridge.simulator import collector
from bridge.simulator.faults import FAULT_KINDS, FaultConfig, FaultConfigError, FaultInjector
from bridge.simulator.rules import RuleConfig, RuleEngine
from bridge.simulator.state import (
    IDEMPOTENCY_MAX_KEYS,
    JOURNAL_LIMIT,
    MAX_IDEMPOTENCY_KEY,
    RequestMeta,
    SimState,
)
from bridge.simulator.validation import (
    ApiFailure,
    api_error,
    invalid,
    validate_event,
    validate_return,
    validate_update,
)

__all__ = [
    "EVENT_ID_HEADER",
    "IDEMPOTENCY_HEADER",
    "REPLAYED_HEADER",
    "HoldHook",
    "Simulator",
    "build_app",
]

log = logging.getLogger(__name__)

EVENT_ID_HEADER: Final = "X-Talon-Bridge-Event-Id"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"

HoldHook = Callable[[str, str], Awaitable[None]]

_JSON: Final = "application/json"
_MAX_BODY: Final = 16 * 1024 * 1024
_BOOL: Final = {
    # Go's strconv.ParseBool, which Talon.One's query parsing follows.
    **dict.fromkeys(("1", "t", "T", "true", "TRUE", "True"), True),
    **dict.fromkeys(("0", "f", "F", "false", "FALSE", "False"), False),
}


def _dump(obj: Any) -> bytes:
    return orjson.dumps(obj)


_UNAUTHORIZED: Final = _dump({"message": "Unauthorized - Invalid API key", "StatusCode": 401})
_CONFLICT: Final = {
    "session": _dump(
        {
            "message": "Too many requests are updating this session at the same time",
            "errors": [],
            "StatusCode": 409,
        }
    ),
    "profile": _dump(
        {
            "message": "Too many requests are updating this profile at the same time",
            "errors": [],
            "StatusCode": 409,
        }
    ),
    "idempotency": _dump(
        {
            "message": "A request with this Idempotency-Key is still being processed",
            "errors": [],
            "StatusCode": 409,
        }
    ),
}
_MISMATCH: Final = _dump(
    {
        "message": "The Idempotency-Key was already used with a different request",
        "errors": [
            api_error(
                "Idempotency key reused",
                "the stored request for this key has another method, path, query or body",
                parameter=IDEMPOTENCY_HEADER,
            )
        ],
        "StatusCode": 422,
    }
)
_FAULT_BODIES: Final = {
    "429": (429, _dump({"message": "Too many requests", "StatusCode": 429})),
    "rate_limit": (429, _dump({"message": "Too many requests", "StatusCode": 429})),
    "500": (500, _dump({"message": "Internal server error", "StatusCode": 500})),
    "fail_session": (500, _dump({"message": "Internal server error", "StatusCode": 500})),
    "502": (502, _dump({"message": "Bad gateway", "StatusCode": 502})),
    "503": (503, _dump({"message": "Service unavailable", "StatusCode": 503})),
    "outage": (503, _dump({"message": "Service unavailable", "StatusCode": 503})),
    "auth_failure": (401, _UNAUTHORIZED),
}
_GATEWAY_TIMEOUT: Final = _dump({"message": "Gateway timeout", "StatusCode": 504})
_NOT_FOUND: Final = _dump({"message": "Not found", "StatusCode": 404})
_NOT_ALLOWED: Final = _dump({"message": "Method not allowed", "StatusCode": 405})


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    if status == 204:
        return web.Response(status=204, headers=headers)
    return web.Response(status=status, body=body, content_type=_JSON, headers=headers)


class _Route:
    """A resolved Integration API route: operation name, session id, method check."""

    __slots__ = ("operation", "session_id")

    def __init__(self, operation: str, session_id: str | None) -> None:
        self.operation = operation
        self.session_id = session_id


def _resolve(method: str, path: str) -> _Route | int:
    """Route on the raw path; returns the route or the error status (404 / 405)."""
    if path == "/v2/events":
        return _Route("event", None) if method == "POST" else 405
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "v2" or parts[2] != "customer_sessions" or not parts[3]:
        return 404
    session_id = unquote(parts[3])
    if len(parts) == 4:
        if method == "PUT":
            return _Route("update", session_id)
        return _Route("get", session_id) if method == "GET" else 405
    if len(parts) == 5 and parts[4] == "returns":
        return _Route("return", session_id) if method == "POST" else 405
    return 404


class RetryWatch:
    """When each request answered 429 or 503 may come back (its Retry-After), to count the
    ones that come back early. A request is known by the bridge's event id, else by its
    Idempotency-Key; requests with neither are not followed."""

    _LIMIT: Final = 100_000

    def __init__(self) -> None:
        self._due: dict[str, float] = {}

    @staticmethod
    def _identity(headers: Any) -> str | None:
        found = headers.get(EVENT_ID_HEADER) or headers.get(IDEMPOTENCY_HEADER)
        return str(found) if found else None

    def expect(self, headers: Any, due: float) -> None:
        key = self._identity(headers)
        if key is None:
            return
        if len(self._due) >= self._LIMIT:
            self._due.pop(next(iter(self._due)))  # the oldest: a request never retried
        self._due[key] = due

    def check(self, headers: Any) -> float | None:
        """The Retry-After deadline of this request's last rejection, if it had one."""
        if not self._due:
            return None
        key = self._identity(headers)
        return None if key is None else self._due.pop(key, None)


class Simulator:
    """One simulated Talon.One Application: state, rules, faults and the request pipeline."""

    def __init__(
        self,
        api_key: str,
        *,
        faults: FaultConfig | None = None,
        seed: int | None = None,
        rules: RuleConfig | None = None,
        journal_limit: int = JOURNAL_LIMIT,
        idempotency_max_keys: int = IDEMPOTENCY_MAX_KEYS,
    ) -> None:
        self._auth = f"ApiKey-v1 {api_key}"
        self._initial_faults = faults or FaultConfig()
        self._initial_seed = seed
        self.faults = FaultInjector(self._initial_faults, seed)
        self.state = SimState(
            RuleEngine(rules),
            journal_limit=journal_limit,
            idempotency_max_keys=idempotency_max_keys,
        )
        # Awaited while a request holds its session or profile: lets a caller freeze a
        # request mid-flight and observe what concurrent requests get.
        self.hold: HoldHook | None = None
        self._retries = RetryWatch()
        self._stopping: asyncio.Event | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def _stop_event(self) -> asyncio.Event:
        if self._stopping is None:
            self._stopping = asyncio.Event()
        return self._stopping

    def close(self) -> None:
        """Release every hanging request (called on shutdown)."""
        self._stop_event().set()

    def reset(self) -> None:
        """Forget all state and counters; faults and the RNG go back to the start-up ones."""
        self.state.reset()
        self._retries = RetryWatch()
        self.faults.configure(self._initial_faults)
        self.faults.reseed(self._initial_seed)

    # -- entry point ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]
        if path.startswith("/v2/"):
            return await self._api(request, path)
        if path.startswith("/_sim/"):
            return await self._admin(request, path)
        return _response(404, _NOT_FOUND)

    def _reply(
        self, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.state.counters.statuses[status] += 1
        return _response(status, body, headers)

    def _failure(self, exc: ApiFailure) -> web.Response:
        return self._reply(exc.status, _dump(exc.body))

    # -- Integration API --------------------------------------------------------------------

    async def _api(self, request: web.Request, path: str) -> web.StreamResponse:
        route = _resolve(request.method, path)
        if isinstance(route, int):
            return self._reply(route, _NOT_FOUND if route == 404 else _NOT_ALLOWED)
        counters = self.state.counters
        counters.requests += 1
        counters.op_requests[route.operation] += 1
        arrival = self.state.next_arrival()
        if request.headers.get("Authorization") != self._auth:
            return self._reply(401, _UNAUTHORIZED)
        retry = self._retries.check(request.headers)
        if retry is not None and retry > time.monotonic():
            counters.early_retries += 1
        fault = self.faults.decide(route.session_id)
        if fault is not None and fault != "lost_response":
            counters.faults[fault] += 1
            return await self._inject(request, fault)
        if route.operation == "get":
            return await self._get(route)
        try:
            return await self._mutate(request, route, arrival, lost=fault is not None)
        except ApiFailure as exc:
            return self._failure(exc)

    async def _get(self, route: _Route) -> web.Response:
        await self._latency()
        assert route.session_id is not None  # noqa: S101 - "get" routes always carry an id
        try:
            body = self.state.get_session(route.session_id)
        except ApiFailure as exc:
            return self._failure(exc)
        return self._reply(200, _dump(body))

    async def _latency(self) -> None:
        delay = self.faults.latency_s()
        if delay > 0:
            await asyncio.sleep(delay)

    def _flags(self, request: web.Request, operation: str) -> tuple[bool, bool]:
        """Parse ``dry`` (all endpoints) and ``silent`` (events); 400 on bad values."""
        query = request.query
        raw_dry = query.get("dry")
        dry = _BOOL.get(raw_dry) if raw_dry is not None else False
        errors: list[dict[str, Any]] = []
        if dry is None:
            errors.append(api_error("Invalid value", "dry must be true or false", parameter="dry"))
        silent = True
        if operation == "event":
            raw_silent = query.get("silent", "yes")
            if raw_silent not in ("yes", "no"):
                errors.append(
                    api_error("Invalid value", "silent must be yes or no", parameter="silent")
                )
            silent = raw_silent != "no"
        if "now" in query and not dry:
            errors.append(api_error("Invalid value", "now requires dry=true", parameter="now"))
        if errors:
            raise invalid(errors, with_status=operation == "event")
        return bool(dry), silent

    async def _mutate(
        self, request: web.Request, route: _Route, arrival: int, *, lost: bool
    ) -> web.StreamResponse:
        dry, silent = self._flags(request, route.operation)
        raw = await request.read()
        digest = hashlib.sha256(raw).hexdigest()
        key = request.headers.get(IDEMPOTENCY_HEADER)
        state = self.state
        if key is not None:
            if not key or len(key) > MAX_IDEMPOTENCY_KEY:
                raise invalid(
                    [
                        api_error(
                            "Invalid value",
                            "Idempotency-Key must have 1 to 255 characters",
                            parameter=IDEMPOTENCY_HEADER,
                        )
                    ],
                    with_status=route.operation == "event",
                )
            found = state.idempotency.begin(key, f"{request.method} {request.raw_path} {digest}")
            if found.outcome != "new":
                state.counters.keys_reused += 1
            if found.outcome == "replay":
                state.counters.duplicates_suppressed += 1
                return self._reply(found.status, found.body, {REPLAYED_HEADER: "true"})
            if found.outcome == "in_flight":
                state.counters.conflicts["idempotency"] += 1
                state.counters.op_conflicts[route.operation] += 1
                return self._reply(409, _CONFLICT["idempotency"])
            if found.outcome == "mismatch":
                state.counters.idempotency_mismatches += 1
                return self._reply(422, _MISMATCH)
        try:
            status, body = await self._apply(request, route, raw, digest, arrival, dry, silent, key)
        except BaseException:
            if key is not None:
                state.idempotency.abandon(key)
            raise
        if key is not None:
            if 200 <= status < 300:
                state.idempotency.complete(key, status, body)
            else:
                state.idempotency.abandon(key)
        if lost:
            state.counters.faults["lost_response"] += 1
            await self._hang(request)
        return self._reply(status, body)

    def _parse(self, raw: bytes, operation: str) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            error = api_error(
                "Malformed JSON", f"the request body is not valid JSON: {exc}", pointer=""
            )
            raise invalid([error], with_status=operation == "event") from exc

    async def _apply(
        self,
        request: web.Request,
        route: _Route,
        raw: bytes,
        digest: str,
        arrival: int,
        dry: bool,
        silent: bool,
        key: str | None,
    ) -> tuple[int, bytes]:
        """Validate, take the busy gate, wait out the latency, apply; (status, body)."""
        state = self.state
        body = self._parse(raw, route.operation)
        rejects = self.faults.rejects_attribute
        if route.operation == "update":
            cs, content = validate_update(body, rejects)
            gate, gate_key = "session", route.session_id
        elif route.operation == "return":
            items, content = validate_return(body)
            gate, gate_key = "session", route.session_id
        else:
            event, content = validate_event(body, rejects)
            gate, gate_key = "profile", event["profileId"]
        assert gate_key is not None  # noqa: S101 - session routes always carry an id
        if not state.try_acquire(gate, gate_key):
            state.counters.op_conflicts[route.operation] += 1
            return 409, _CONFLICT[gate]
        try:
            meta = RequestMeta(
                event_id=request.headers.get(EVENT_ID_HEADER),
                idempotency_key=key,
                body_sha256=digest,
                arrival=arrival,
                acquired_ns=time.monotonic_ns(),
            )
            await self._latency()
            if self.hold is not None:
                await self.hold(gate, gate_key)
            try:
                if route.operation == "update":
                    result = state.update_session(gate_key, cs, content, dry=dry, meta=meta)
                elif route.operation == "return":
                    result = state.return_items(gate_key, items, content, dry=dry, meta=meta)
                else:
                    result = state.track_event(event, content, dry=dry, meta=meta)
            except ApiFailure as exc:
                return exc.status, _dump(exc.body)
        finally:
            state.release(gate, gate_key)
        if route.operation == "event" and silent:
            return 204, b""
        return 200, _dump(result)

    # -- injected faults ----------------------------------------------------------------------

    async def _inject(self, request: web.Request, fault: str) -> web.StreamResponse:
        if fault == "hang":
            await self._hang(request)
            return self._reply(504, _GATEWAY_TIMEOUT)
        if fault == "reset":
            _reset_connection(request)
            # Nothing can be written any more; aiohttp drops a response on a closed transport.
            return web.Response(status=500)
        status, body = _FAULT_BODIES[fault]
        headers = None
        if status in (429, 503):
            retry_after = self.faults.retry_after_s(fault)
            headers = {"Retry-After": str(retry_after)}
            self._retries.expect(request.headers, time.monotonic() + retry_after)
        return self._reply(status, body, headers)

    async def _hang(self, request: web.Request) -> None:
        """Hold the answer for hang_s, or until the client goes away when hang_s is null."""
        stopping = self._stop_event()
        hang_s = self.faults.config.hang_s
        if hang_s is not None:
            try:
                await asyncio.wait_for(stopping.wait(), hang_s)
            except TimeoutError:
                pass
            return
        while not stopping.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            try:
                await asyncio.wait_for(stopping.wait(), 0.5)
            except TimeoutError:
                continue

    # -- admin ------------------------------------------------------------------------------

    async def _admin(self, request: web.Request, path: str) -> web.Response:
        method = request.method
        name = path.removeprefix("/_sim/").rstrip("/")
        if name == "health" and method == "GET":
            return _response(200, b'{"status":"ok"}')
        if name == "stats" and method == "GET":
            return _response(200, _dump(self.stats()))
        if name == "journal" and method == "GET":
            return _response(200, _dump(self._journal(request)))
        if name == "reset" and method == "POST":
            self.reset()
            freed = collector.collect_all()
            log.info("simulator state reset", extra={"objects_collected": freed})
            return _response(200, b'{"status":"reset"}')
        if name == "faults":
            return await self._faults_endpoint(request)
        return _response(404, _NOT_FOUND)

    def stats(self) -> dict[str, Any]:
        """The ``/_sim/stats`` document."""
        out = self.state.counters.snapshot(FAULT_KINDS)
        out["sessions"] = len(self.state.sessions)
        out["profiles"] = len(self.state.profiles)
        out["in_flight"] = self.state.in_flight
        out["idempotency_keys"] = len(self.state.idempotency)
        out["idempotency_keys_evicted"] = self.state.idempotency.evicted
        out["journal_entries"] = len(self.state.journal)
        out["journal_entries_dropped"] = self.state.journal.dropped
        return out

    def _journal(self, request: web.Request) -> dict[str, Any]:
        query = request.query
        if "session" in query:
            sid = query["session"]
            return {"session": sid, "entries": self.state.journal.entries("session", sid)}
        if "profile" in query:
            pid = query["profile"]
            return {"profile": pid, "entries": self.state.journal.entries("profile", pid)}
        return self.state.journal.dump()

    async def _faults_endpoint(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return _response(200, _dump(self._faults_doc()))
        if request.method not in ("PUT", "PATCH"):
            return _response(405, _NOT_ALLOWED)
        try:
            changes = orjson.loads(await request.read() or b"{}")
            if not isinstance(changes, dict):
                raise FaultConfigError("the fault configuration must be a JSON object")
            seed = changes.pop("seed", self.faults.seed)
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
                raise FaultConfigError("seed must be an integer or null")
            base = self.faults.config if request.method == "PATCH" else FaultConfig()
            config = base.merged(changes)
        except (orjson.JSONDecodeError, FaultConfigError) as exc:
            return _response(400, _dump({"message": str(exc), "StatusCode": 400}))
        self.faults.configure(config)
        if seed != self.faults.seed or request.method == "PUT":
            self.faults.reseed(seed)
        log.info("fault configuration changed: %s", sorted(changes))
        return _response(200, _dump(self._faults_doc()))

    def _faults_doc(self) -> dict[str, Any]:
        doc = self.faults.config.to_json()
        doc["seed"] = self.faults.seed
        return doc


def _reset_connection(request: web.Request) -> None:
    """Close the client's connection with a TCP RST, as a crashed proxy would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 turns close() into an RST instead of an orderly FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def build_app(sim: Simulator) -> web.Application:
    """The aiohttp application serving `sim` on every path."""
    app = web.Application(client_max_size=_MAX_BODY)
    # One catch-all route: routing happens on the raw path inside the simulator.
    app.router.add_route("*", "/{tail:.*}", sim.handle)

    async def _on_shutdown(_: web.Application) -> None:
        sim.close()

    app.on_shutdown.append(_on_shutdown)
    return app
