"""A git revision of the bridge installed beside the working tree, for side-by-side runs.

`install(rev)` checks the revision out into a worktree in the cache (once per commit) and
installs it into that worktree's own virtualenv with `uv sync --locked`, so the baseline runs
with the dependencies it was released with. Benchmarks then start its worker with that
interpreter (`WorkerProcess(python=...)`) on the same broker, simulator and load as the
working tree's. `encoder` writes that load with the revision's own `Command` schema: a
revision older than the current schema knows no records written with it, and would send
every one to the dead-letter topic instead of calling the API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from bridge.avro.codec import Codec
from bridge.avro.schemas import load_schemas
from bridge.commands import Command

__all__ = ["ENV", "encoder", "install"]

CACHE = Path(os.environ.get("TALON_BRIDGE_CACHE", Path.home() / ".cache" / "talon-bridge"))

# `python -m bridge` puts the working directory first on sys.path, so without this the
# baseline's interpreter would import the working tree's package instead of its own.
ENV = {"PYTHONSAFEPATH": "1"}


def _git(*args: str, cwd: Path | None = None) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _uv() -> str:
    # The Makefile installs uv into the cache; a uv on PATH does as well.
    cached = CACHE / "tools" / "bin" / "uv"
    found = str(cached) if cached.exists() else shutil.which("uv")
    if found is None:
        raise SystemExit("--baseline needs uv: run `make venv` once")
    return found


def install(rev: str) -> Path:
    """The interpreter of `rev`'s own environment, installing it first if needed."""
    root = Path(_git("rev-parse", "--show-toplevel"))
    sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}", cwd=root)
    where = CACHE / "baselines" / sha[:12]
    python = where / ".venv" / "bin" / "python"
    if not python.exists():
        if not where.exists():
            where.parent.mkdir(parents=True, exist_ok=True)
            _git("worktree", "add", "--detach", str(where), sha, cwd=root)
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        subprocess.run([_uv(), "sync", "--locked", "--quiet"], cwd=where, check=True, env=env)
    _check_imports_own(python, where)
    return python


def _check_imports_own(python: Path, where: Path) -> None:
    """Fails unless `python`, started here as the benchmarks start it, imports `where`'s code."""
    probe = "import bridge, sys; sys.stdout.write(bridge.__file__)"
    out = subprocess.run(
        [str(python), "-c", probe],
        env={**os.environ, **ENV},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if not Path(out).resolve().is_relative_to(where.resolve()):
        raise SystemExit(f"the baseline's interpreter imports {out}, not {where}")


def encoder(python: Path | None) -> Callable[[Command, str], bytes]:
    """Encodes commands for the worker that `python` runs: the working tree's (None), or an
    installed revision's, with the `Command` schema that revision bundles."""
    if python is None:
        return Codec().encode_command
    where = python.parents[2]  # <worktree>/.venv/bin/python
    return Codec(schemas=load_schemas(where / "schemas" / "avro")).encode_command
