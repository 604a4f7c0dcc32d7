"""The journal keeps the W3C trace context each applied request carried."""

from __future__ import annotations

from tests.support.simulator import Harness

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_the_journal_records_the_traceparent_of_each_request(sim: Harness) -> None:
    traced = await sim.update("s", {"profileId": "p"}, headers={"traceparent": PARENT})
    plain = await sim.update("s", {"profileId": "p", "attributes": {"a": "b"}})
    event = await sim.event(
        {"type": "checkout", "profileId": "p"}, silent="no", headers={"traceparent": PARENT}
    )
    assert traced.status == plain.status == event.status == 200
    assert [e["traceparent"] for e in await sim.journal("s")] == [PARENT, None]
    doc = await sim.admin("GET", "/_sim/journal?profile=p")
    assert [e["traceparent"] for e in doc["entries"]] == [PARENT]
