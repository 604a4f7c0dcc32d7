"""Shared helpers of the deployment tests: paths, tool locations, manifest lookups."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "talon-bridge"
SCHEMAS = ROOT / "deploy" / "k8s-schemas"
KUBERNETES_VERSION = "1.34.4"
TOOLS = ("helm", "kubeconform", "hadolint", "readme-generator")
TOOLS_BIN = Path(
    os.environ.get("TALON_BRIDGE_TOOLS_BIN", Path.home() / ".cache" / "talon-bridge" / "bin")
)

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
    """The chart's own container: the first (sidecars from values come after it)."""
    first: Doc = pod_spec(doc)["containers"][0]
    return first


def config_data(docs: Docs) -> dict[str, str]:
    """The BRIDGE_* data of the ConfigMap the worker's environment comes from."""
    refs = container(one(docs, "Deployment"))["envFrom"]
    name = refs[0]["configMapRef"]["name"]
    (config_map,) = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"] == name]
    data: dict[str, str] = config_map["data"]
    return data


def kubeconform(binary: Path, manifests: str) -> subprocess.CompletedProcess[str]:
    """`kubeconform -strict` of rendered manifests against the vendored schemas and CRDs."""
    return subprocess.run(
        [
            str(binary),
            "-strict",
            "-summary",
            "-kubernetes-version",
            KUBERNETES_VERSION,
            "-schema-location",
            str(SCHEMAS)
            + "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}"
            + "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
            "-schema-location",
            str(SCHEMAS) + "/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
            "-",
        ],
        input=manifests,
        capture_output=True,
        text=True,
        timeout=60,
    )


SecretData = dict[str, dict[str, bytes]]  # Secret name -> key -> value


def rendered_secrets(docs: Docs) -> SecretData:
    """The data of the Secrets the chart renders itself, decoded."""
    return {
        s["metadata"]["name"]: {k: base64.b64decode(v) for k, v in s.get("data", {}).items()}
        for s in find(docs, "Secret")
    }


def mount_secret_volumes(workload: Doc, secrets: SecretData) -> dict[str, bytes]:
    """Write the container's secret and projected volumes where they are mounted, as the
    kubelet would; the chart's mount paths must be writable (values pointing at a scratch
    folder). Returns the written files by path."""
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    written: dict[str, bytes] = {}
    for mount in container(workload).get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "projected" in volume:
            sources = [s["secret"] for s in volume["projected"]["sources"]]
        elif "secret" in volume:
            sources = [{"name": volume["secret"]["secretName"], **volume["secret"]}]
        else:
            continue
        folder = Path(mount["mountPath"])
        folder.mkdir(parents=True, exist_ok=True)
        for source in sources:
            for item in source["items"]:
                path = folder / item["path"]
                path.write_bytes(secrets[source["name"]][item["key"]])
                path.chmod(0o440)
                written[str(path)] = path.read_bytes()
    return written
