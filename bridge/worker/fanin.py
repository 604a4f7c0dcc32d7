"""One endpoint for the worker processes of a pod: /metrics merged, /readyz and /healthz joined.

Each worker process serves its own endpoint on a local port; the supervisor serves
`BRIDGE_METRICS_PORT` and asks them when it is asked. Every series gets a `worker` label (the
process's index), so each keeps its own meaning: counters, histograms and the gauges read at
scrape time stay per process, and dashboards and alerts aggregate `by (pod)` anyway. The
supervisor's own `process_*` series carry `worker="supervisor"`, so a pod's sum is the CPU and
memory of the whole pod.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from bridge.worker.health import endpoint_runner

__all__ = ["SUPERVISOR", "FanIn", "merge_expositions", "render"]

log = logging.getLogger(__name__)

SUPERVISOR = "supervisor"
LABEL = "worker"
# Below the chart's probe timeouts (2 s), so a slow process reads as failing, not the probe.
PROBE_TIMEOUT_S = 1.5
# Below the ServiceMonitor's scrape timeout (10 s by default).
SCRAPE_TIMEOUT_S = 5.0


def merge_expositions(expositions: Mapping[str, str]) -> list[Metric]:
    """Families of several text expositions as one list, each sample labelled with its source.

    Families of the same name (the `process_*` ones of every process) become one family.
    """
    families: dict[str, Metric] = {}
    for source, text in expositions.items():
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
            merged.samples.extend(
                sample._replace(labels={**sample.labels, LABEL: source})
                for sample in family.samples
            )
    return list(families.values())


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render(families: list[Metric]) -> bytes:
    """The text exposition of `families`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


class FanIn:
    """Serves the pod's endpoint on a socket bound beforehand, from the processes' endpoints.

    `ports` are the worker processes' endpoints (index = worker label); `own` holds the
    supervisor's own metrics; `failed` says a process has died (the pod is going down).
    """

    def __init__(
        self,
        ports: Sequence[int],
        *,
        own: CollectorRegistry,
        failed: Callable[[], bool],
        stopping: Callable[[], bool],
    ) -> None:
        self._ports = list(ports)
        self._own = own
        self._failed = failed
        self._stopping = stopping
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def _get(self, port: int, path: str, timeout: float) -> tuple[int, bytes]:
        if self._http is None:
            return 0, b""
        try:
            async with self._http.get(
                f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            return 0, b""

    async def _all(self, path: str, timeout: float) -> list[tuple[int, bytes]]:
        return await asyncio.gather(*(self._get(port, path, timeout) for port in self._ports))

    async def _metrics(self, _: web.Request) -> web.Response:
        answers = await self._all("/metrics", SCRAPE_TIMEOUT_S)
        expositions = {SUPERVISOR: generate_latest(self._own).decode()}
        for index, (status, body) in enumerate(answers):
            if status == 200:
                expositions[str(index)] = body.decode()
            else:
                log.warning("a worker process did not answer a scrape", extra={LABEL: index})
        body = render(merge_expositions(expositions))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _probe(self, path: str, key: str, refuse: bool) -> web.Response:
        answers = await self._all(path, PROBE_TIMEOUT_S)
        each = [status == 200 for status, _ in answers]
        ok = not refuse and all(each)
        return web.json_response({key: ok, "workers": each}, status=200 if ok else 503)

    async def _healthz(self, _: web.Request) -> web.Response:
        return await self._probe("/healthz", "alive", self._failed())

    async def _readyz(self, _: web.Request) -> web.Response:
        return await self._probe("/readyz", "ready", self._failed() or self._stopping())

    async def start(self, sock: socket.socket) -> None:
        self._http = aiohttp.ClientSession()
        self._runner = await endpoint_runner(self._metrics, self._healthz, self._readyz)
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None
