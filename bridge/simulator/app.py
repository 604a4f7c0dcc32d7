"""The simulator's HTTP surface: an aiohttp application that answers like Talon.One.

Owns the request pipeline and the ``/_sim/*`` admin endpoints. Routes come from
`routing` (on the raw path, so ``%2F`` inside a session id never splits it), canned bodies
from `wire`, state from `SimState`, faults from `FaultInjector`, effects from `RuleEngine`;
this module only sequences them::

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

import orjson
from aiohttp import web

from bridge.simulator import collector
from bridge.simulator.counters import RetryWatch
from bridge.simulator.faults import FAULT_KINDS, FaultConfig, FaultConfigError, FaultInjector
from bridge.simulator.gate import KeyKind
from bridge.simulator.idempotency import IDEMPOTENCY_MAX_KEYS, MAX_IDEMPOTENCY_KEY
from bridge.simulator.journal import JOURNAL_LIMIT, RequestMeta
from bridge.simulator.routing import Route, query_flags, resolve
from bridge.simulator.rules import RuleConfig, RuleEngine
from bridge.simulator.state import SimState
from bridge.simulator.validation import (
    ApiFailure,
    api_error,
    invalid,
    validate_event,
    validate_event_v3,
    validate_return,
    validate_update,
)
from bridge.simulator.wire import (
    CONFLICT,
    EVENT_ID_HEADER,
    EVENT_NOT_FOUND,
    FAULT_BODIES,
    GATEWAY_TIMEOUT,
    IDEMPOTENCY_HEADER,
    MISMATCH,
    NOT_ALLOWED,
    NOT_FOUND,
    REPLAYED_HEADER,
    UNAUTHORIZED,
    dump,
    response,
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

HoldHook = Callable[[str, str], Awaitable[None]]

_MAX_BODY: Final = 16 * 1024 * 1024


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
        if path.startswith(("/v2/", "/v3/")):
            return await self._api(request, path)
        if path.startswith("/_sim/"):
            return await self._admin(request, path)
        return response(404, NOT_FOUND)

    def _reply(
        self, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.state.counters.statuses[status] += 1
        return response(status, body, headers)

    def _failure(self, exc: ApiFailure) -> web.Response:
        return self._reply(exc.status, dump(exc.body))

    # -- Integration API --------------------------------------------------------------------

    async def _api(self, request: web.Request, path: str) -> web.StreamResponse:
        route = resolve(request.method, path)
        if isinstance(route, int):
            return self._reply(route, NOT_FOUND if route == 404 else NOT_ALLOWED)
        counters = self.state.counters
        counters.requests += 1
        counters.op_requests[route.operation] += 1
        arrival = self.state.next_arrival()
        if request.headers.get("Authorization") != self._auth:
            return self._reply(401, UNAUTHORIZED)
        retry = self._retries.check(request.headers)
        if retry is not None and retry > time.monotonic():
            counters.early_retries += 1
        fault = self.faults.decide(route.session_id)
        if fault is not None and fault != "lost_response":
            counters.faults[fault] += 1
            return await self._inject(request, fault)
        if route.operation in ("get", "get_event_v3"):
            return await self._get(route)
        try:
            return await self._mutate(request, route, arrival, lost=fault is not None)
        except ApiFailure as exc:
            return self._failure(exc)

    async def _get(self, route: Route) -> web.Response:
        await self._latency()
        assert route.session_id is not None  # noqa: S101 - "get" routes always carry an id
        if route.operation == "get_event_v3":
            event = self.state.events_v3.get(route.session_id)
            return (
                self._reply(404, EVENT_NOT_FOUND)
                if event is None
                else self._reply(200, dump(event))
            )
        try:
            body = self.state.get_session(route.session_id)
        except ApiFailure as exc:
            return self._failure(exc)
        return self._reply(200, dump(body))

    async def _latency(self) -> None:
        delay = self.faults.latency_s()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _mutate(
        self, request: web.Request, route: Route, arrival: int, *, lost: bool
    ) -> web.StreamResponse:
        dry, silent = query_flags(request.query, route.operation)
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
                    with_status=route.operation in ("event", "event_v3"),
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
                return self._reply(409, CONFLICT["idempotency"])
            if found.outcome == "mismatch":
                state.counters.idempotency_mismatches += 1
                return self._reply(422, MISMATCH)
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
            raise invalid([error], with_status=operation in ("event", "event_v3")) from exc

    async def _apply(
        self,
        request: web.Request,
        route: Route,
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
        gate: KeyKind
        if route.operation == "update":
            cs, content = validate_update(body, rejects)
            gate, gate_key = "session", route.session_id
        elif route.operation == "return":
            items, content = validate_return(body)
            gate, gate_key = "session", route.session_id
        else:
            check = validate_event if route.operation == "event" else validate_event_v3
            event, content = check(body, rejects)
            gate, gate_key = "profile", event["profileId"]
        assert gate_key is not None  # noqa: S101 - session routes always carry an id
        if not state.gate.try_acquire(gate, gate_key):
            state.counters.op_conflicts[route.operation] += 1
            return 409, CONFLICT[gate]
        try:
            meta = RequestMeta(
                event_id=request.headers.get(EVENT_ID_HEADER),
                idempotency_key=key,
                body_sha256=digest,
                arrival=arrival,
                acquired_ns=time.monotonic_ns(),
                traceparent=request.headers.get("traceparent"),
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
                return exc.status, dump(exc.body)
        finally:
            state.gate.release(gate, gate_key)
        if route.operation in ("event", "event_v3") and silent:
            return 204, b""
        return 200, dump(result)

    # -- injected faults ----------------------------------------------------------------------

    async def _inject(self, request: web.Request, fault: str) -> web.StreamResponse:
        if fault == "hang":
            await self._hang(request)
            return self._reply(504, GATEWAY_TIMEOUT)
        if fault == "reset":
            _reset_connection(request)
            # Nothing can be written any more; aiohttp drops a response on a closed transport.
            return web.Response(status=500)
        status, body = FAULT_BODIES[fault]
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
            return response(200, b'{"status":"ok"}')
        if name == "stats" and method == "GET":
            return response(200, dump(self.stats()))
        if name == "journal" and method == "GET":
            return response(200, dump(self._journal(request)))
        if name == "reset" and method == "POST":
            self.reset()
            freed = collector.collect_all()
            log.info("simulator state reset", extra={"objects_collected": freed})
            return response(200, b'{"status":"reset"}')
        if name == "faults":
            return await self._faults_endpoint(request)
        return response(404, NOT_FOUND)

    def stats(self) -> dict[str, Any]:
        """The ``/_sim/stats`` document."""
        out = self.state.counters.snapshot(FAULT_KINDS)
        out["sessions"] = len(self.state.sessions)
        out["profiles"] = len(self.state.profiles)
        out["in_flight"] = self.state.gate.in_flight
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
            return response(200, dump(self._faults_doc()))
        if request.method not in ("PUT", "PATCH"):
            return response(405, NOT_ALLOWED)
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
            return response(400, dump({"message": str(exc), "StatusCode": 400}))
        self.faults.configure(config)
        if seed != self.faults.seed or request.method == "PUT":
            self.faults.reseed(seed)
        log.info("fault configuration changed: %s", sorted(changes))
        return response(200, dump(self._faults_doc()))

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
