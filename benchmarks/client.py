"""Requests per second and client CPU per request of the Talon.One client against raw aiohttp.

Every client sends the same updateCustomerSessionV2 request (a realistic two-line cart) from
`--concurrency` concurrent tasks in a closed loop for `--seconds`, against a server in another
process, so the CPU figures are the client's own. Clients:

* ``ours``: `TalonClient.update_customer_session` as the bridge calls it on the reqwest
  transport (pyreqwest), building the request model's JSON and parsing the response into
  `IntegrationSummary` (effects, coupons, referrals, session state).
* ``ours-full``: the same, parsing the whole response into `IntegrationStateV2`.
* ``ours-aiohttp``: ``ours`` on `AiohttpTransport` (``http_engine="aiohttp"``).
* ``ours-httptools``: ``ours`` on `HttptoolsTransport` (``http_engine="httptools"``).
* ``raw``: a plain aiohttp session sending the same pre-serialised bytes and headers and
  reading the response bytes (no JSON work): the ceiling to compare against.
* ``transport``: `AiohttpTransport.exchange` fed the requests `TalonClient` builds, with the
  same bytes (no models): the transport alone.
* ``httpx``: `httpx.AsyncClient` with its default transport, for reference.

By default a minimal stand-in server is started per latency (see `benchmarks._common`); use
``--url`` to target an external server such as ``talon-bridge simulator`` instead.

    .venv/bin/python -m benchmarks.client --concurrency 256 --seconds 5 --latency-ms 0,20

``--loop uvloop`` runs the clients on uvloop, as the worker does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Final

import aiohttp
import httpx
import uvloop
from pydantic import BaseModel

from benchmarks._common import cart_update, start_server
from bridge import __version__
from bridge.talon import AiohttpTransport, IntegrationStateV2, IntegrationSummary, TalonClient
from bridge.talon.client import HttpEngine
from bridge.talon.transports import Request, Timeouts

CLIENTS: Final = (
    "ours",
    "ours-full",
    "ours-aiohttp",
    "ours-httptools",
    "raw",
    "transport",
    "httpx",
)
_ENGINES: Final[dict[str, HttpEngine]] = {"ours-aiohttp": "aiohttp", "ours-httptools": "httptools"}
_SESSION_PATH: Final = "/v2/customer_sessions/"
_ROW: Final = "{:>8} {:>13} {:>9} {:>10} {:>7} {:>9} {:>6}"


@dataclass(frozen=True)
class Result:
    client: str
    requests: int
    errors: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / max(self.requests, 1)


Call = Callable[[int], Awaitable[bool]]


async def _drive(call: Call, concurrency: int, seconds: float, name: str) -> Result:
    """Run `call(worker)` in `concurrency` closed loops; count successes and failures."""
    ok = errors = 0
    deadline = time.monotonic() + seconds

    async def loop(worker: int) -> None:
        nonlocal ok, errors
        while time.monotonic() < deadline:
            try:
                success = await call(worker)
            except Exception:
                success = False
            if success:
                ok += 1
            else:
                errors += 1

    gc.collect()
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(loop(worker) for worker in range(concurrency)))
    return Result(name, ok, errors, time.monotonic() - wall, time.process_time() - cpu)


def _session_id(worker: int) -> str:
    return f"bench-order-{worker}"


async def _measure(name: str, url: str, key: str, args: argparse.Namespace) -> Result:
    """Warm up, then measure one client."""
    body = cart_update()
    content = body.to_json()
    headers = {
        "Authorization": f"ApiKey-v1 {key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": f"talon-bridge/{__version__}",
    }
    urls = [f"{url}{_SESSION_PATH}{_session_id(w)}?dry=false" for w in range(args.concurrency)]
    async with contextlib.AsyncExitStack() as stack:
        call: Call
        if name.startswith("ours"):
            engine = _ENGINES.get(name, "reqwest")
            model: type[BaseModel] = (
                IntegrationStateV2 if name == "ours-full" else IntegrationSummary
            )
            client = await stack.enter_async_context(
                TalonClient(url, key, max_connections=args.concurrency, http_engine=engine)
            )

            async def call(worker: int) -> bool:
                result = await client.update_customer_session(
                    _session_id(worker), body, model=model
                )
                return result.status == 200

        elif name == "raw":
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency))
            )

            async def call(worker: int) -> bool:
                async with session.put(urls[worker], data=content, headers=headers) as response:
                    await response.read()
                    return response.status == 200

        elif name == "transport":
            transport = await stack.enter_async_context(
                AiohttpTransport(max_connections=args.concurrency)
            )
            requests = [Request("PUT", u, list(headers.items()), content, Timeouts()) for u in urls]

            async def call(worker: int) -> bool:
                answer = await transport.exchange(requests[worker])
                return answer.status == 200 and bool(answer.content)

        else:
            limits = httpx.Limits(
                max_connections=args.concurrency, max_keepalive_connections=args.concurrency
            )
            http = await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=30.0))

            async def call(worker: int) -> bool:
                response = await http.put(urls[worker], headers=headers, content=content)
                return response.status_code == 200 and bool(response.content)

        await _drive(call, args.concurrency, args.warmup, name)
        return await _drive(call, args.concurrency, args.seconds, name)


@contextlib.contextmanager
def _target(args: argparse.Namespace, latency_ms: float) -> Iterator[str]:
    if args.url:
        yield args.url.rstrip("/")
    else:
        with start_server(latency_ms) as url:
            yield url


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _report(label: str, runs: dict[str, list[Result]]) -> None:
    """One row per client: medians over the rounds, and ratios against raw aiohttp.

    `vs raw` is the median over rounds of this client's req/s divided by raw's in the same
    round (runs next to each other in time, so load from elsewhere hits both alike).
    `CPU-bound` is raw's CPU per request divided by this client's: the req/s ratio to
    expect whenever the client process, not the server, is the bottleneck.
    """
    raw = runs.get("raw")
    for name, results in runs.items():
        rate = _median([r.rate for r in results])
        cpu_ms = _median([r.cpu_ms for r in results])
        errors = sum(r.errors for r in results)
        if raw is None:
            paired = bound = "-"
        else:
            paired = f"{_median([r.rate / b.rate for r, b in zip(results, raw, strict=True)]):.0%}"
            bound = f"{_median([b.cpu_ms for b in raw]) / cpu_ms:.0%}"
        cells = (label, name, f"{rate:,.0f}", f"{cpu_ms:.3f}", paired, bound, errors)
        print(_ROW.format(*cells))
        if len(results) > 1:
            rates = ", ".join(f"{r.rate:,.0f}" for r in results)
            print(f"{'':>8} {'':>12} rounds: {rates} req/s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--latency-ms", default="0,20", help="comma-separated server delays")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are shown")
    parser.add_argument(
        "--clients",
        default="ours,ours-full,ours-aiohttp,ours-httptools,raw",
        help=f"comma-separated, from {','.join(CLIENTS)} (default: %(default)s)",
    )
    parser.add_argument("--url", help="external server base URL (then --latency-ms is a label)")
    parser.add_argument("--api-key", default="benchmark-key")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of the clients (the worker runs on uvloop)",
    )
    args = parser.parse_args()
    run = uvloop.run if args.loop == "uvloop" else asyncio.run
    clients = [name.strip() for name in args.clients.split(",") if name.strip()]
    unknown = set(clients) - set(CLIENTS)
    if unknown:
        parser.error(f"unknown clients: {', '.join(sorted(unknown))}")
    latencies = [float(value) for value in args.latency_ms.split(",")] if not args.url else [0.0]

    print(f"concurrency {args.concurrency}, {args.seconds:g} s per run, {args.repeat} round(s)")
    columns = ("latency", "client", "req/s", "CPU ms/req", "vs raw", "CPU-bound", "errors")
    print(_ROW.format(*columns))
    for latency_ms in latencies:
        label = "external" if args.url else f"{latency_ms:g} ms"
        runs: dict[str, list[Result]] = {name: [] for name in clients}
        with _target(args, latency_ms) as url:
            for _ in range(args.repeat):
                # Interleave the clients so that drifts in machine load hit them all alike.
                for name in clients:
                    runs[name].append(run(_measure(name, url, args.api_key, args)))
        _report(label, runs)


if __name__ == "__main__":
    main()
