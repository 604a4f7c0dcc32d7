"""The container image recipe: hadolint, its conventions, and its install steps run for real.

There is no container engine in the test environment, so the builder stage's `uv sync` steps
(read from the Dockerfile) are replayed into a scratch project and the resulting virtualenv is
run the way the image's ENTRYPOINT runs it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.chart import ROOT
from tests.support.ci import IN_CI

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in _instructions():
        if word == "FROM":
            current = [(word, rest)]
            stages[rest.split()[-1]] = current
        else:
            current.append((word, rest))
    return stages


@pytest.mark.slow  # the first run installs the tools
def test_hadolint_passes(tools: dict[str, Path]) -> None:
    result = subprocess.run(
        [str(tools["hadolint"]), str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_stage_conventions() -> None:
    stages = _stages()
    assert set(stages) == {"uv", "builder", "runtime"}
    builder, runtime = stages["builder"], stages["runtime"]
    # The same Python image for both, so the copied virtualenv finds its interpreter.
    assert builder[0][1].split()[0] == runtime[0][1].split()[0] == "${PYTHON_IMAGE}"
    args = dict(
        rest.split("=", 1) for word, rest in _instructions() if word == "ARG" and "=" in rest
    )
    # Pinned by digest: a rebuild of a release gets the same base (refreshed on purpose).
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", args["PYTHON_IMAGE"])
    words = [w for w, _ in runtime]
    assert ("USER", "10001:10001") in runtime
    assert ("EXPOSE", "9100") in runtime
    assert ("ENTRYPOINT", '["tini", "--", "talon-bridge"]') in runtime
    assert ("CMD", '["run"]') in runtime
    assert words.index("USER") > max(i for i, w in enumerate(words) if w in {"RUN", "COPY"})
    env = " ".join(rest for word, rest in runtime if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    installs = " ".join(rest for word, rest in runtime if word == "RUN")
    assert re.search(r"apt-get install .*tini=", installs)
    labels = " ".join(rest for word, rest in runtime if word == "LABEL")
    for key, arg in (("source", "SOURCE"), ("version", "VERSION"), ("revision", "REVISION")):
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels
    copies = [rest for word, rest in runtime if word == "COPY"]
    assert copies == ["--from=builder /app/.venv /app/.venv"]


def test_no_secrets_in_the_image_recipe() -> None:
    for word, rest in _instructions():
        if word in {"ENV", "ARG", "LABEL"}:
            assert not re.search(r"(API_KEY|PASSWORD|TOKEN|SECRET)", rest, re.IGNORECASE), rest
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p for p in lines if p and not p.startswith("#")]
    assert patterns[0] == "*", ".dockerignore starts by excluding everything"
    assert not [p for p in patterns if p.startswith(("!tests", "!.git", "!.venv", "!deploy"))]


def _uv() -> str:
    cached = Path.home() / ".cache" / "talon-bridge" / "tools" / "bin" / "uv"
    found = shutil.which("uv") or (str(cached) if cached.exists() else None)
    if found is None:
        message = "uv is not installed (make venv installs it)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def _sync_steps() -> list[list[str]]:
    steps = []
    for word, rest in _stages()["builder"]:
        if word == "RUN" and "uv sync" in rest:
            command = rest[rest.index("uv sync") :]
            steps.append(shlex.split(command))
    return steps


def _builder_copies() -> list[tuple[list[str], str]]:
    out = []
    for word, rest in _stages()["builder"]:
        if word == "COPY" and not rest.startswith("--from"):
            *sources, target = rest.split()
            out.append((sources, target))
    return out


def _snapshot(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.slow
def test_image_install_steps_produce_a_working_worker(tmp_path: Path) -> None:
    """Replays the builder's `uv sync` steps; about a minute on a cold uv cache."""
    uv = _uv()
    steps = _sync_steps()
    assert [s[:2] for s in steps] == [["uv", "sync"], ["uv", "sync"]]
    assert {"--locked", "--no-dev", "--no-install-project"} <= set(steps[0])
    assert {"--locked", "--no-dev", "--no-editable"} <= set(steps[1])
    assert all("--extra" in s and "otlp" in s for s in steps), "the image can export spans"

    src, venv = tmp_path / "src", tmp_path / "app" / ".venv"
    src.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BRIDGE_", "UV_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(
        UV_PROJECT_ENVIRONMENT=str(venv),
        UV_PYTHON=sys._base_executable,
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
    )
    # Dependencies layer: only the lock and project metadata are present (bind mounts).
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy2(ROOT / name, src / name)
    subprocess.run([uv, *steps[0][1:]], cwd=src, env=env, check=True, timeout=600)
    for sources, target in _builder_copies():
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, src / target, ignore=shutil.ignore_patterns("__pycache__"))
            elif target.endswith("/"):
                shutil.copy2(origin, src / target / origin.name)
            else:
                shutil.copy2(origin, src / target)
    subprocess.run([uv, *steps[1][1:]], cwd=src, env=env, check=True, timeout=600)
    shutil.rmtree(src)  # the runtime stage copies only the virtualenv

    run_env = {
        k: v for k, v in env.items() if not k.startswith("UV_") and not k.startswith("BRIDGE_")
    }
    run_env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        HOME=str(tmp_path / "home"),
        BRIDGE_SECRETS_DIR=str(tmp_path / "no-secrets"),
    )
    before = _snapshot(venv)
    entry = str(venv / "bin" / "talon-bridge")

    version = subprocess.run(
        [entry, "--version"], env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"talon-bridge {project['version']}"

    unconfigured = subprocess.run(
        [entry, "run"], env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert unconfigured.returncode == 2, unconfigured.stderr
    assert re.search(r"\bBRIDGE_[A-Z_]+\b", unconfigured.stderr), unconfigured.stderr

    tracing = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import bridge.tracing as t; t.from_environment()"],
        env={**run_env, "OTEL_TRACES_EXPORTER": "otlp"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tracing.returncode == 0, f"the image cannot export spans: {tracing.stderr}"

    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.util, pathlib, bridge; "
            "print(pathlib.Path(bridge.__file__).parent); "
            "print(sorted(m for m in ('pytest', 'ruff', 'mypy', 'hypothesis') "
            "if importlib.util.find_spec(m)))",
        ],
        env=run_env,
        cwd=tmp_path,  # the image's WORKDIR is /tmp: no source tree on sys.path
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    package, dev = probe.stdout.splitlines()
    assert Path(package).is_relative_to(venv), "the project must be installed, not linked"
    assert (Path(package) / "_schemas").is_dir(), "the Avro schemas ship inside the package"
    assert dev == "[]", f"dev dependencies in the image: {dev}"
    assert _snapshot(venv) == before, "running the worker wrote into the install"
