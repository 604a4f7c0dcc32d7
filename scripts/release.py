"""Build the versioned release artifacts (`make release`).

One version, `project.version` in pyproject.toml, is the source: the chart's `version` and
`appVersion` must equal it, CHANGELOG.md must have a section for it, and the image recipe labels
the image with it. Into the output folder go:

* the wheel and the sdist (`uv build`); the sdist is the whole source tree, Dockerfile included,
  so it is also the image's build context;
* the packaged chart (`helm package`, with its README and values schema);
* `docker-bake.json`, the image build recipe: context (the unpacked sdist), build args (version,
  revision, the digest-pinned base image from the Dockerfile), tags and platforms;
* `SHA256SUMS` of all of them.

    python scripts/release.py --out dist/release --uv UV --helm HELM
    python scripts/release.py --check     # only check that the versions agree
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = Path("deploy/helm/talon-bridge")
SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")
DIGEST_PINNED = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


class ReleaseError(Exception):
    pass


def package_version(root: Path) -> str:
    with (root / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def check_versions(root: Path) -> str:
    """The one version, after checking that the chart and the changelog agree with it."""
    version = package_version(root)
    if not SEMVER.match(version):
        raise ReleaseError(f"pyproject.toml: version {version!r} is not semantic (X.Y.Z)")
    chart = yaml.safe_load((root / CHART / "Chart.yaml").read_text())
    for key in ("version", "appVersion"):
        if str(chart[key]) != version:
            raise ReleaseError(
                f"{CHART}/Chart.yaml: {key} is {chart[key]!r} but the package version is "
                f"{version!r}; set both to the package version"
            )
    changelog = (root / "CHANGELOG.md").read_text()
    if not re.search(rf"^## \[{re.escape(version)}\]", changelog, re.MULTILINE):
        raise ReleaseError(f"CHANGELOG.md has no `## [{version}]` section")
    return version


def dockerfile_args(root: Path) -> dict[str, str]:
    args = {}
    for line in (root / "Dockerfile").read_text().splitlines():
        if m := re.match(r"^ARG (\w+)=(\S+)$", line.strip()):
            args[m.group(1)] = m.group(2)
    return args


def revision(root: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def image_recipe(root: Path, version: str, source: str) -> dict[str, object]:
    base = dockerfile_args(root)["PYTHON_IMAGE"]
    if not DIGEST_PINNED.match(base):
        raise ReleaseError(f"Dockerfile: PYTHON_IMAGE {base!r} is not pinned by digest")
    return {
        "variable": {
            "REGISTRY": {"default": "registry.example.com/platform"},
            "REVISION": {"default": revision(root)},
        },
        "group": {"default": {"targets": ["talon-bridge"]}},
        "target": {
            "talon-bridge": {
                "context": f"talon_bridge-{version}",
                "dockerfile": "Dockerfile",
                "platforms": ["linux/amd64", "linux/arm64"],
                "args": {
                    "VERSION": version,
                    "REVISION": "${REVISION}",
                    "SOURCE": source,
                    "PYTHON_IMAGE": base,
                },
                "tags": [f"${{REGISTRY}}/talon-bridge:{version}"],
            }
        },
    }


def build(root: Path, out: Path, uv: str, helm: str, source: str) -> list[Path]:
    version = check_versions(root)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([uv, "build", "--quiet", "--out-dir", str(out)], cwd=root, check=True)
    subprocess.run(
        [helm, "package", str(root / CHART), "--destination", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    recipe = out / "docker-bake.json"
    recipe.write_text(json.dumps(image_recipe(root, version, source), indent=2) + "\n")
    artifacts = [
        out / f"talon_bridge-{version}-py3-none-any.whl",
        out / f"talon_bridge-{version}.tar.gz",
        out / f"talon-bridge-{version}.tgz",
        recipe,
    ]
    for path in artifacts:
        if not path.is_file():
            raise ReleaseError(f"expected artifact missing: {path}")
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in artifacts)
    (out / "SHA256SUMS").write_text(sums)
    return [*artifacts, out / "SHA256SUMS"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/release.py")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "release")
    parser.add_argument("--uv", default="uv")
    parser.add_argument("--helm", default="helm")
    parser.add_argument("--source", default="https://github.com/ORG/talon-bridge")
    parser.add_argument("--check", action="store_true", help="only check the versions agree")
    args = parser.parse_args(argv)
    try:
        if args.check:
            print(check_versions(args.root))
            return 0
        for path in build(args.root, args.out, args.uv, args.helm, args.source):
            print(path)
    except ReleaseError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
