"""Shared helpers of the deployment tests: paths, tool locations, manifest lookups."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "talon-bridge"
SCHEMAS = ROOT / "deploy" / "k8s-schemas"
KUBERNETES_VERSION = "1.34.4"
TOOLS = ("helm", "kubeconform", "hadolint")
TOOLS_BIN = Path(
    os.environ.get("TALON_BRIDGE_TOOLS_BIN", Path.home() / ".cache" / "talon-bridge" / "bin")
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

Doc = dict[str, Any]
Docs = list[Doc]


def find(docs: Docs, kind: str, component: str | None = None) -> Docs:
    """Documents of one kind (optionally of one app.kubernetes.io/component)."""
    out = [d for d in docs if d.get("kind") == kind]
    if component is not None:
        out = [
            d
            for d in out
            if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        ]
    return out


def one(docs: Docs, kind: str, component: str | None = None) -> Doc:
    found = find(docs, kind, component)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(doc: Doc) -> Doc:
    """The pod spec of a Deployment, Job or Pod."""
    if doc["kind"] == "Pod":
        return doc["spec"]
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def container(doc: Doc) -> Doc:
    containers = pod_spec(doc)["containers"]
    assert len(containers) == 1
    first: Doc = containers[0]
    return first


def config_data(docs: Docs) -> dict[str, str]:
    """The BRIDGE_* data of the ConfigMap the worker's environment comes from."""
    refs = container(one(docs, "Deployment"))["envFrom"]
    name = refs[0]["configMapRef"]["name"]
    (config_map,) = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"] == name]
    data: dict[str, str] = config_map["data"]
    return data
