"""Fixtures of the command tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.environment import clean_environment


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No BRIDGE_* variable and no secrets folder from the machine running the tests."""
    return clean_environment(monkeypatch, {"BRIDGE_SECRETS_DIR": str(tmp_path / "no-secrets")})
