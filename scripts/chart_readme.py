"""Generate the parameter table of the Helm chart's README from `## @param` lines in values.yaml.

Each documented key carries a comment line `## @param dotted.key Description`; `## @section
Title` starts a new table. The table replaces everything between the README's
`<!-- parameters:start -->` and `<!-- parameters:end -->` markers.

    python scripts/chart_readme.py            # rewrite deploy/helm/talon-bridge/README.md
    python scripts/chart_readme.py --check    # exit 1 if the README is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "talon-bridge"
START, END = "<!-- parameters:start -->", "<!-- parameters:end -->"
_PARAM = re.compile(r"^\s*## @param (\S+) (.+?)\s*$")
_SECTION = re.compile(r"^\s*## @section (.+?)\s*$")


@dataclass(frozen=True)
class Param:
    key: str
    description: str
    section: str


def params(values_text: str) -> list[Param]:
    """Documented keys, in file order."""
    out: list[Param] = []
    section = "Parameters"
    for line in values_text.splitlines():
        if m := _SECTION.match(line):
            section = m.group(1)
        elif m := _PARAM.match(line):
            out.append(Param(m.group(1), m.group(2), section))
    return out


def lookup(values: dict[str, Any], key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        node = node[part]
    return node


def undocumented(values: dict[str, Any], documented: set[str], prefix: str = "") -> list[str]:
    """Keys neither documented themselves nor fully covered by documented children."""
    missing: list[str] = []
    for name, value in values.items():
        key = f"{prefix}{name}"
        if key in documented:
            continue
        if isinstance(value, dict) and value:
            missing.extend(undocumented(value, documented, key + "."))
        else:
            missing.append(key)
    return missing


def _cell(value: Any) -> str:
    text = json.dumps(value, separators=(", ", ": "))
    return "`" + text.replace("|", "\\|") + "`"


def table(values_text: str) -> str:
    values = yaml.safe_load(values_text)
    lines: list[str] = []
    section = None
    for p in params(values_text):
        if p.section != section:
            section = p.section
            lines += ["", f"### {section}", "", "| Name | Description | Default |", "|---|---|---|"]
        description = p.description.replace("|", "\\|")
        lines.append(f"| `{p.key}` | {description} | {_cell(lookup(values, p.key))} |")
    return "\n".join(lines).strip() + "\n"


def render(readme: str, values_text: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(values_text)}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    values_text = (CHART / "values.yaml").read_text()
    readme_path = CHART / "README.md"
    readme = readme_path.read_text()
    missing = undocumented(yaml.safe_load(values_text), {p.key for p in params(values_text)})
    if missing:
        print("values.yaml keys without ## @param: " + ", ".join(missing), file=sys.stderr)
        return 1
    updated = render(readme, values_text)
    if args.check:
        if updated != readme:
            print("deploy/helm/talon-bridge/README.md is out of date", file=sys.stderr)
            return 1
        return 0
    readme_path.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
