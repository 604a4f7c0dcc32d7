"""A worker's environment for settings tests: the machine's BRIDGE_* variables removed."""

from __future__ import annotations

import os

import pytest

__all__ = ["MINIMAL", "clean_environment"]

# The settings a worker cannot start without.
MINIMAL = {
    "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "BRIDGE_TALON_BASE_URL": "https://acme.talon.one/",
    "BRIDGE_TALON_API_KEY": "secret-key-123",
}


def clean_environment(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str] | None = None
) -> pytest.MonkeyPatch:
    """No BRIDGE_* variable from the machine running the tests; then `values` (default
    `MINIMAL`)."""
    for key in list(os.environ):
        if key.startswith("BRIDGE_"):
            monkeypatch.delenv(key)
    for key, value in (MINIMAL if values is None else values).items():
        monkeypatch.setenv(key, value)
    return monkeypatch
