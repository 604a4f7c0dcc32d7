"""The worker's HTTP endpoints on `BRIDGE_METRICS_PORT`: /metrics, /healthz, /readyz.

/healthz is liveness: the process and its consumer loop are alive (never tied to the
Talon.One API, so an API outage does not restart pods). /readyz is readiness: the worker has
joined its consumer group and holds its partitions, work can flow, and the API key is accepted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["HealthServer", "endpoint_runner"]

Handler = Callable[[web.Request], Awaitable[web.Response]]


async def endpoint_runner(metrics: Handler, healthz: Handler, readyz: Handler) -> web.AppRunner:
    """The endpoint's three routes, set up and ready for a site."""
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    return runner


class HealthServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        ready: Callable[[], bool],
        alive: Callable[[], bool],
    ) -> None:
        self._registry = registry
        self._ready = ready
        self._alive = alive
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        ok = self._alive()
        return web.json_response({"alive": ok}, status=200 if ok else 503)

    async def _readyz(self, _: web.Request) -> web.Response:
        ok = self._ready()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def start(self, host: str, port: int) -> int:
        self._runner = await endpoint_runner(self._metrics, self._healthz, self._readyz)
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # noqa: SLF001 - the only way to learn an ephemeral port
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
