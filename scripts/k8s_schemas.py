"""Generate the kubeconform JSON schemas vendored under deploy/k8s-schemas/.

kubeconform validates each manifest against a JSON schema per kind. Here they are derived, the
way kubeconform's `openapi2jsonschema` does it, from sources fetched through the Go module proxy
(the only source of upstream files this build relies on):

* Kubernetes core kinds: the OpenAPI v2 document `api/openapi-spec/swagger.json` of the
  `k8s.io/kubernetes` module. Every `$ref` is inlined ("standalone") and every object with
  declared properties gets `additionalProperties: false` ("strict").
* Custom resources: the `openAPIV3Schema` of each served version of a CRD YAML shipped in the
  prometheus-operator and KEDA modules, made strict the same way (except where the CRD keeps
  unknown fields).

Usage (downloads the modules into the Go module cache when missing)::

    python scripts/k8s_schemas.py            # regenerate deploy/k8s-schemas/
    python scripts/k8s_schemas.py --check    # exit 1 if the vendored files differ
    python scripts/k8s_schemas.py --check --offline   # the same from the Go module cache only

Layout, matching the `-schema-location` templates the tests pass to kubeconform::

    deploy/k8s-schemas/<k8s version>-standalone-strict/<kind>-<group>-<version>.json
    deploy/k8s-schemas/crds/<group>/<kind>_<version>.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "deploy" / "k8s-schemas"

KUBERNETES_MODULE = "k8s.io/kubernetes"
KUBERNETES_VERSION = "v1.34.4"
SWAGGER_PATH = "api/openapi-spec/swagger.json"

# (group, version, kind) of every core kind the chart renders.
CORE_KINDS = [
    ("", "v1", "ConfigMap"),
    ("", "v1", "Pod"),
    ("", "v1", "Secret"),
    ("", "v1", "Service"),
    ("", "v1", "ServiceAccount"),
    ("apps", "v1", "Deployment"),
    ("apps", "v1", "StatefulSet"),
    ("autoscaling", "v2", "HorizontalPodAutoscaler"),
    ("batch", "v1", "Job"),
    ("networking.k8s.io", "v1", "NetworkPolicy"),
    ("policy", "v1", "PodDisruptionBudget"),
]

# module, version, CRD files inside the module
CRD_SOURCES = [
    (
        "github.com/prometheus-operator/prometheus-operator",
        "v0.85.0",
        [
            "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
            "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
        ],
    ),
    (
        "github.com/kedacore/keda/v2",
        "v2.21.0",
        [
            "config/crd/bases/keda.sh_scaledobjects.yaml",
            "config/crd/bases/keda.sh_triggerauthentications.yaml",
        ],
    ),
]

# Schema keywords whose value is a schema / a map of schemas / a list of schemas.
_SUB_SCHEMA = ("items", "additionalProperties", "not")
_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
_QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}


EXIT_UNAVAILABLE = 3


def module_dir(module: str, version: str, *, offline: bool = False) -> Path:
    """The extracted module folder in the Go module cache, downloading it unless offline."""
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    if offline:
        env["GOPROXY"] = "off"
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        env=env,
    )
    info = json.loads(out.stdout) if out.stdout.strip() else {"Error": out.stderr.strip()}
    if out.returncode != 0 or "Error" in info:
        print(f"{module}@{version}: {info.get('Error', out.stderr)}", file=sys.stderr)
        raise SystemExit(EXIT_UNAVAILABLE)
    return Path(info["Dir"])


def _strictify(schema: Any) -> Any:
    """Close every object that declares properties, recursively; drop descriptions."""
    if isinstance(schema, list):
        return [_strictify(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _strictify(sub) for name, sub in value.items()}
        elif key in _SUB_SCHEMA or key in _SCHEMA_LISTS:
            out[key] = _strictify(value)
        else:
            out[key] = value
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out and "oneOf" not in out:
        out.pop("type", None)
        out.update(copy.deepcopy(_INT_OR_STRING))
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserve = out.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def _inline(schema: Any, definitions: dict[str, Any], stack: tuple[str, ...]) -> Any:
    """Replace every `#/definitions/...` reference by the definition itself."""
    if isinstance(schema, list):
        return [_inline(s, definitions, stack) for s in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        name = ref.removeprefix("#/definitions/")
        if name in stack:  # a recursive type: accept anything below this point
            return {}
        return _inline(_definition(name, definitions), definitions, (*stack, name))
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {n: _inline(s, definitions, stack) for n, s in value.items()}
        elif key in _SUB_SCHEMA or key in _SCHEMA_LISTS:
            out[key] = _inline(value, definitions, stack)
        else:
            out[key] = value
    return out


def _definition(name: str, definitions: dict[str, Any]) -> Any:
    if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
        return copy.deepcopy(_QUANTITY)
    schema = definitions[name]
    if schema.get("format") == "int-or-string":
        return copy.deepcopy(_INT_OR_STRING)
    return schema


def _kind_suffix(group: str, version: str) -> str:
    # kubeconform's naming: the first label of the group, then the version.
    return f"-{group.split('.')[0]}-{version}" if group else f"-{version}"


def core_schemas(swagger: dict[str, Any]) -> dict[str, Any]:
    definitions = swagger["definitions"]
    by_gvk: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            by_gvk.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    out: dict[str, Any] = {}
    for group, version, kind in CORE_KINDS:
        name = by_gvk[(group, version, kind)]
        schema = _strictify(_inline(definitions[name], definitions, (name,)))
        schema["$schema"] = "http://json-schema.org/schema#"
        filename = f"{kind.lower()}{_kind_suffix(group, version)}.json"
        out[f"{KUBERNETES_VERSION}-standalone-strict/{filename}"] = schema
    return out


def crd_schemas(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = _strictify(version["schema"]["openAPIV3Schema"])
            schema["$schema"] = "http://json-schema.org/schema#"
            out[f"crds/{group}/{kind.lower()}_{version['name']}.json"] = schema
    return out


def generate(*, offline: bool = False) -> dict[str, str]:
    k8s = module_dir(KUBERNETES_MODULE, KUBERNETES_VERSION, offline=offline)
    schemas = core_schemas(json.loads((k8s / SWAGGER_PATH).read_text()))
    for module, version, files in CRD_SOURCES:
        base = module_dir(module, version, offline=offline)
        for rel in files:
            schemas.update(crd_schemas(base / rel))
    return {
        rel: json.dumps(schema, indent=1, sort_keys=True) + "\n"
        for rel, schema in sorted(schemas.items())
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument(
        "--offline",
        action="store_true",
        help=f"use the Go module cache only; exit {EXIT_UNAVAILABLE} if a module is not there",
    )
    args = parser.parse_args(argv)
    files = generate(offline=args.offline)
    if args.check:
        stale = [rel for rel, text in files.items() if _read(OUT / rel) != text]
        vendored = {str(p.relative_to(OUT)) for p in OUT.rglob("*.json")}
        stale += sorted(vendored - set(files))
        for rel in stale:
            print(f"out of date: deploy/k8s-schemas/{rel}", file=sys.stderr)
        return 1 if stale else 0
    for rel, text in files.items():
        target = OUT / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote deploy/k8s-schemas/{rel}")
    return 0


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


if __name__ == "__main__":
    sys.exit(main())
