"""Releases: one version for the package, the chart and the image; `make release`'s artifacts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from bridge import __version__
from tests.support.chart import CHART, ROOT

pytestmark = pytest.mark.slow

RELEASE = ROOT / "scripts" / "release.py"
UV = Path(os.environ.get("UV", Path.home() / ".cache" / "talon-bridge" / "tools" / "bin" / "uv"))


def _package_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def test_one_version_everywhere() -> None:
    version = _package_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == version
    assert __version__ == version  # what `talon-bridge --version` and the worker report
    assert f"## [{version}]" in (ROOT / "CHANGELOG.md").read_text()


def _scratch_tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "deploy" / "helm").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", root)
    shutil.copy(ROOT / "CHANGELOG.md", root)
    shutil.copytree(CHART, root / "deploy" / "helm" / "talon-bridge")
    return root


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("Chart.yaml", "appVersion: ", "appVersion: 9.9.9 #"), "appVersion is '9.9.9'"),
        (("Chart.yaml", "\nversion: ", "\nversion: 0.0.1 #"), "version is '0.0.1'"),
        (("CHANGELOG.md", "", ""), None),  # unchanged: agrees
        (("CHANGELOG.md", "## [0.", "## [v0."), "no `## ["),
    ],
)
def test_release_refuses_versions_that_disagree(
    tmp_path: Path, edit: tuple[str, str, str], message: str | None
) -> None:
    root = _scratch_tree(tmp_path)
    name, old, new = edit
    path = {
        "Chart.yaml": root / "deploy" / "helm" / "talon-bridge" / "Chart.yaml",
        "CHANGELOG.md": root / "CHANGELOG.md",
    }[name]
    path.write_text(path.read_text().replace(old, new))
    result = subprocess.run(
        [sys.executable, str(RELEASE), "--root", str(root), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if message is None:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == _package_version()
    else:
        assert result.returncode == 1
        assert message in result.stderr


def test_release_artifacts_carry_the_version(tools: dict[str, Path], tmp_path: Path) -> None:
    """The pieces of `make release`, into a scratch folder."""
    if not UV.exists():
        pytest.skip(f"uv not found at {UV} (`make venv` installs it)")
    out = tmp_path / "release"
    result = subprocess.run(
        [
            sys.executable,
            str(RELEASE),
            "--out",
            str(out),
            "--uv",
            str(UV),
            "--helm",
            str(tools["helm"]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    v = _package_version()
    wheel = out / f"talon_bridge-{v}-py3-none-any.whl"
    sdist = out / f"talon_bridge-{v}.tar.gz"
    chart = out / f"talon-bridge-{v}.tgz"
    recipe = out / "docker-bake.json"
    assert result.stdout.split() == [str(p) for p in (wheel, sdist, chart, recipe)] + [
        str(out / "SHA256SUMS")
    ]

    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(f"talon_bridge-{v}.dist-info/METADATA").decode()
    assert f"\nVersion: {v}\n" in metadata

    with tarfile.open(sdist) as t:
        names = set(t.getnames())
    # The sdist is the image's build context: the recipe needs these in it.
    for needed in ("Dockerfile", "uv.lock", "pyproject.toml", "bridge/__init__.py"):
        assert f"talon_bridge-{v}/{needed}" in names

    with tarfile.open(chart) as t:
        names = set(t.getnames())
        packaged = yaml.safe_load(t.extractfile("talon-bridge/Chart.yaml").read())  # type: ignore[union-attr]
    assert packaged["version"] == packaged["appVersion"] == v
    assert {"talon-bridge/README.md", "talon-bridge/values.schema.json"} <= names
    assert not any(n.startswith("talon-bridge/ci/") for n in names)

    target = json.loads(recipe.read_text())["target"]["talon-bridge"]
    assert target["args"]["VERSION"] == v
    assert target["context"] == f"talon_bridge-{v}"
    assert re.fullmatch(r"python:[^@]+@sha256:[0-9a-f]{64}", target["args"]["PYTHON_IMAGE"])
    assert target["tags"] == [f"${{REGISTRY}}/talon-bridge:{v}"]

    sums = (out / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split()[1] for line in sums) == sorted(
        p.name for p in (wheel, sdist, chart, recipe)
    )
