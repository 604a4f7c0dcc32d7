"""A local Talon.One Integration API simulator: the oracle for ordering and fault tests.

`Simulator` is the in-process server object, `build_app` wraps it in an aiohttp
application, and `bridge.simulator.process.SimulatorProcess` runs it as a subprocess.
See docs/simulator.md for the HTTP surface.
"""

from __future__ import annotations

from bridge.simulator.app import (
    EVENT_ID_HEADER,
    IDEMPOTENCY_HEADER,
    REPLAYED_HEADER,
    Simulator,
    build_app,
)
from bridge.simulator.faults import FaultConfig, FaultInjector
from bridge.simulator.rules import RuleConfig, RuleEngine

__all__ = [
    "EVENT_ID_HEADER",
    "IDEMPOTENCY_HEADER",
    "REPLAYED_HEADER",
    "FaultConfig",
    "FaultInjector",
    "RuleConfig",
    "RuleEngine",
    "Simulator",
    "build_app",
]
