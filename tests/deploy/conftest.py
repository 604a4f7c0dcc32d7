"""Fixtures for the deployment checks: cached tools (helm, kubeconform, ...) and rendering.

The tools are installed once into a per-user cache by `scripts/install-tools.sh` (a cold helm
build takes minutes; a warm check is instant). When they cannot be installed the tests are
skipped locally, but with `CI` set they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import CHART, ROOT, TOOLS, TOOLS_BIN, Docs
from tests.support.ci import IN_CI

# Long enough for a cold build of helm on two cores, used only while a tool is missing.
INSTALL_TIMEOUT = 1500


def _tools_missing() -> bool:
    return any(not (TOOLS_BIN / t).exists() for t in TOOLS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _tools_missing():
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents and "tools" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(INSTALL_TIMEOUT))


@pytest.fixture(scope="session")
def tools() -> dict[str, Path]:
    """Paths of the deployment tools (`TOOLS`), installing them into the cache if needed."""
    env = {**os.environ, "TALON_BRIDGE_TOOLS_BIN": str(TOOLS_BIN)}
    try:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "install-tools.sh")],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        message = f"deployment tools could not be installed: {detail}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return {t: TOOLS_BIN / t for t in TOOLS}


@pytest.fixture(scope="session")
def helm_run(tools: dict[str, Path]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run helm with arguments; the chart path is not implied."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tools["helm"]), *args], capture_output=True, text=True, timeout=60
        )

    return run


@pytest.fixture(scope="session")
def render_result(
    helm_run: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`helm template` of the chart with values files and/or a values dict."""
    folder = tmp_path_factory.mktemp("values")
    counter = iter(range(1_000_000))

    def run(
        values: dict[str, Any] | None = None,
        files: Sequence[str] = (),
        extra: Sequence[str] = (),
        chart: Path = CHART,
    ) -> subprocess.CompletedProcess[str]:
        args = ["template", "rel", str(chart), "--namespace", "bridge"]
        for f in files:
            args += ["-f", str(CHART / f)]
        if values is not None:
            path = folder / f"values-{next(counter)}.yaml"
            path.write_text(yaml.safe_dump(values))
            args += ["-f", str(path)]
        return helm_run(*args, *extra)

    return run


@pytest.fixture(scope="session")
def render(render_result: Callable[..., subprocess.CompletedProcess[str]]) -> Callable[..., Docs]:
    """Rendered manifests as parsed documents; fails the test on a render error."""
    cache: dict[str, Docs] = {}

    def run(
        values: dict[str, Any] | None = None,
        files: Sequence[str] = (),
        extra: Sequence[str] = (),
        chart: Path = CHART,
    ) -> Docs:
        key = repr((values, tuple(files), tuple(extra)))
        if chart != CHART or key not in cache:  # scratch charts change between renders
            result = render_result(values, files, extra, chart)
            assert result.returncode == 0, result.stderr
            docs = [d for d in yaml.safe_load_all(result.stdout) if d]
            if chart != CHART:
                return docs
            cache[key] = docs
        return cache[key]

    return run


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    """A scratch copy of the chart, for tests that change its files."""
    target = tmp_path / "talon-bridge"
    shutil.copytree(CHART, target)
    return target
