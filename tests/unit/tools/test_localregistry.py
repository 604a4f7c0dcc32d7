"""The local Schema Registry's provisioning, where no JVM is needed to check it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.tools import localregistry
from bridge.tools.ports import free_port


def test_without_a_jdk_or_maven_the_build_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(localregistry, "CACHE_ROOT", tmp_path)
    monkeypatch.setattr(localregistry.shutil, "which", lambda _name: None)
    with pytest.raises(RuntimeError, match=r"JDK \(java\) and Maven \(mvn\)"):
        localregistry.build_registry()


def test_status_of_a_registry_that_is_not_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(localregistry, "CACHE_ROOT", tmp_path)
    port = free_port()
    assert localregistry.main(["status", "--port", str(port)]) == 1
    assert capsys.readouterr().out.strip() == f"http://127.0.0.1:{port}/apis/ccompat/v7 stopped"
    # Stopping what is not running is fine: `down` is idempotent.
    assert localregistry.main(["down", "--port", str(port)]) == 0


def test_a_new_recipe_builds_into_a_new_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    before = localregistry._build_dir()
    monkeypatch.setattr(localregistry, "_APPLICATION_PROPERTIES", "changed=1\n")
    assert localregistry._build_dir() != before
