"""Fixtures: real simulators on 127.0.0.1:<free port>, stopped at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from bridge.simulator.app import Simulator, build_app
from bridge.simulator.faults import FaultConfig
from bridge.simulator.rules import RuleConfig
from tests.support.simulator import API_KEY, Harness

Factory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_sim() -> AsyncIterator[Factory]:
    """Start simulators on free ports; every one is stopped at teardown."""
    started: list[tuple[Simulator, web.AppRunner]] = []
    http = aiohttp.ClientSession()

    async def factory(
        *,
        faults: FaultConfig | None = None,
        seed: int | None = 7,
        rules: RuleConfig | None = None,
    ) -> Harness:
        sim = Simulator(API_KEY, faults=faults, seed=seed, rules=rules)
        runner = web.AppRunner(build_app(sim), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        started.append((sim, runner))
        return Harness(sim, f"http://{host}:{port}", http)

    yield factory
    await http.close()
    for sim, runner in started:
        sim.close()
        await runner.cleanup()


@pytest.fixture
async def sim(make_sim: Factory) -> Harness:
    return await make_sim()
