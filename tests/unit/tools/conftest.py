"""Fixtures of the command tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No BRIDGE_* variable and no secrets folder from the machine running the tests."""
    for key in list(os.environ):
        if key.startswith("BRIDGE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BRIDGE_SECRETS_DIR", str(tmp_path / "no-secrets"))
    return monkeypatch
