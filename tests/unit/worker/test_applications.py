"""Several Talon.One applications in one pipeline: routing, and one application's closed
gate holding only its own records (no server, no intake pause)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import SecretStr

from bridge.applications import Application as Configured
from bridge.applications import ApplicationsTable
from bridge.dlq import H_APPLICATION, H_REASON, H_STAGE, header
from bridge.errors import ServerError
from bridge.metrics import Metrics
from bridge.talon import TalonClient
from bridge.talon.transports.mock import MockTransport
from bridge.worker.handlers import Handlers
from bridge.worker.pipeline import Pipeline
from tests.unit.worker.test_pipeline import CODEC, PART, FakeOutput, Talon, _record, _settings


def _table(default: str | None = None) -> ApplicationsTable:
    return ApplicationsTable(
        applications=tuple(
            Configured(name=n, base_url=f"https://{n}.test", api_key=SecretStr(n), topics=t)
            for n, t in (("de", ("in",)), ("fr", ()))
        ),
        default=default,
    )


class Rig:
    """A pipeline serving `de` (topic `in`) and `fr` (by header), each its own Talon."""

    def __init__(self, servers: int = 2, **settings: Any) -> None:
        self.talons = {"de": Talon(), "fr": Talon()}
        self.clients = {
            n: TalonClient(f"https://{n}.test", n, transport=MockTransport(t))
            for n, t in self.talons.items()
        }
        self.metrics = Metrics()
        self.settings = _settings(applications_file=_table(), **settings)
        self.pipeline = Pipeline(
            self.settings,
            codec=CODEC,
            handlers={n: Handlers(c) for n, c in self.clients.items()},
            metrics=self.metrics,
        )
        self.output = FakeOutput(self.pipeline)
        self.pipeline.output = self.output
        self.pipeline.assigned.add(PART)
        self._servers = [asyncio.create_task(self.pipeline.serve()) for _ in range(servers)]

    async def until(self, done: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.001)

    def finished(self) -> int:
        return self.pipeline.offsets.position(PART) or 0

    def dlq(self) -> list[Any]:
        return [h for _, _, h in self.output.on(self.settings.dlq_topic)]

    async def close(self) -> None:
        for task in self._servers:
            task.cancel()
        await asyncio.gather(*self._servers, return_exceptions=True)
        for client in self.clients.values():
            await client.aclose()


def _to(app: str | None, offset: int, session: str, event: str) -> Any:
    headers = None if app is None else [("talon-application", app.encode())]
    return _record(offset, session, event, headers=headers)


async def test_a_header_beats_the_topic() -> None:
    rig = Rig()
    rig.pipeline.on_batch([_to(None, 0, "s-1", "e-0"), _to("fr", 1, "s-2", "e-1")])
    await rig.until(lambda: rig.finished() == 2)
    assert rig.talons["de"].applied == {"s-1": ["e-0"]}
    assert rig.talons["fr"].applied == {"s-2": ["e-1"]}
    await rig.close()


async def test_an_unknown_application_is_dead_lettered_in_its_place() -> None:
    rig = Rig(on_poison="skip")
    rig.pipeline.on_batch(
        [_to(None, 0, "s-1", "e-0"), _to("it", 1, "s-1", "e-1"), _to(None, 2, "s-1", "e-2")]
    )
    await rig.until(lambda: rig.finished() == 3)
    assert rig.talons["de"].applied == {"s-1": ["e-0", "e-2"]}
    [letter] = rig.dlq()
    assert header(letter, H_STAGE) == "route"
    assert header(letter, H_REASON) == "unroutable"
    assert "'it'" in (header(letter, "__connect.errors.exception.message") or "")
    assert header(letter, H_APPLICATION) is None, "it went to no application"
    sample = rig.metrics.registry.get_sample_value
    assert sample("bridge_dead_letters_total", {"reason": "unroutable", "application": ""}) == 1
    await rig.close()


async def test_a_dead_letter_names_its_application() -> None:
    rig = Rig(on_poison="skip")
    rig.talons["fr"].script["s-1"] = [400]
    rig.pipeline.on_batch([_to("fr", 0, "s-1", "e-0")])
    await rig.until(lambda: rig.finished() == 1)
    [letter] = rig.dlq()
    assert header(letter, H_APPLICATION) == "fr"
    sample = rig.metrics.registry.get_sample_value
    assert sample("bridge_dead_letters_total", {"reason": "permanent", "application": "fr"}) == 1
    await rig.close()


async def test_a_rejected_key_holds_only_its_applications_records() -> None:
    # Two servers, many fr records: were held records to occupy servers, de would stall.
    rig = Rig(servers=2)
    fr = rig.talons["fr"]
    fr.script.update({f"f-{i}": [401] * 3 for i in range(6)})
    batch = [_to("fr", i, f"f-{i % 6}", f"fr-{i}") for i in range(12)]
    batch += [_to(None, 12 + i, f"d-{i % 4}", f"de-{i}") for i in range(20)]
    rig.pipeline.on_batch(batch)
    app = rig.pipeline.applications["fr"]
    await rig.until(lambda: app.gate.auth_rejected)
    await rig.until(lambda: sum(map(len, rig.talons["de"].applied.values())) == 20)
    assert not rig.pipeline.all_closed, "de is open: intake goes on"
    assert rig.pipeline.auth_rejected
    sample = rig.metrics.registry.get_sample_value
    assert sample("bridge_api_auth_ok", {"application": "fr"}) == 0
    assert sample("bridge_api_auth_ok", {"application": "de"}) == 1
    # Probes go on with backoff; the key is accepted again after three refusals per session.
    await rig.until(lambda: rig.finished() == 32)
    assert rig.dlq() == [], "a rejected key dead-letters nothing"
    for i in range(6):
        assert fr.applied[f"f-{i}"] == [f"fr-{j}" for j in range(i, 12, 6)], "session order"
    assert fr.overlaps == 0
    assert sample("bridge_api_auth_ok", {"application": "fr"}) == 1
    await rig.close()


async def test_intake_pauses_only_when_every_application_is_closed() -> None:
    rig = Rig()
    de, fr = rig.pipeline.applications["de"], rig.pipeline.applications["fr"]
    down = ServerError("down", status=503)
    fr.gatekeeper.close("outage", down)
    assert not rig.pipeline.all_closed
    de.gatekeeper.close("outage", down)
    assert rig.pipeline.all_closed
    await rig.until(lambda: not rig.pipeline.all_closed)  # reopened to probe
    await rig.close()
