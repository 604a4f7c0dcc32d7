"""The vendored kubeconform schemas are what scripts/k8s_schemas.py derives from their sources."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.support.chart import ROOT

EXIT_UNAVAILABLE = 3  # scripts/k8s_schemas.py: a source module is not in the Go module cache


@pytest.mark.slow
def test_vendored_schemas_are_regenerated_from_their_modules() -> None:
    if shutil.which("go") is None:
        pytest.skip("no Go toolchain to read the source modules")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "k8s_schemas.py"), "--check", "--offline"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode == EXIT_UNAVAILABLE:
        pytest.skip(f"source modules not in the Go module cache: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
