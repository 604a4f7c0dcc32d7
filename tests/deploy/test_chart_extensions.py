"""Chart extension points: scheduling and pod metadata on every pod, extra containers and env
sources, the image registry, KEDA fallback, and the StatefulSet option."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.chart import Doc, Docs, container, find, kubeconform, one, pod_spec

pytestmark = pytest.mark.slow

Render = Callable[..., Docs]
RenderResult = Callable[..., subprocess.CompletedProcess[str]]

FULL = ("ci/full-values.yaml",)
STATEFULSET = ("ci/statefulset-values.yaml",)


def _pods(docs: Docs) -> Docs:
    return [d for d in docs if d["kind"] in {"Deployment", "StatefulSet", "Job", "Pod"}]


def _pod_metadata(doc: Doc) -> Doc:
    meta: Doc = doc["metadata"] if doc["kind"] == "Pod" else doc["spec"]["template"]["metadata"]
    return meta


def test_every_pod_schedules_on_the_tainted_pool(render: Render) -> None:
    docs = render(None, FULL)
    pods = _pods(docs)
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in pods} == {
        "worker",
        "topics",
        "replay",
        "test",
    }
    for doc in pods:
        spec = pod_spec(doc)
        assert spec["nodeSelector"] == {"pool": "integrations"}, doc["metadata"]["name"]
        assert spec["tolerations"][0]["key"] == "dedicated"
        assert "nodeAffinity" in spec["affinity"]
        assert spec["priorityClassName"] == "integrations"
        assert _pod_metadata(doc)["labels"]["cost-center"] == "cc-42"


def test_sidecar_injection_is_switched_per_pod(render: Render) -> None:
    docs = render(None, FULL)
    inject = {
        _pod_metadata(d)["labels"]["app.kubernetes.io/component"]: _pod_metadata(d)["annotations"][
            "sidecar.istio.io/inject"
        ]
        for d in _pods(docs)
    }
    assert inject == {"worker": "true", "topics": "false", "replay": "false", "test": "false"}
    # The chart's own annotations survive the merge.
    test_pod = one(docs, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    replay = _pod_metadata(one(docs, "Job", "replay"))
    assert "checksum/config" in replay["annotations"]


def test_pods_without_scheduling_values_carry_none(render: Render) -> None:
    for doc in _pods(render()):
        spec = pod_spec(doc)
        assert not {"nodeSelector", "tolerations", "affinity", "priorityClassName"} & set(spec)


def test_extra_containers_env_sources_and_registry(render: Render) -> None:
    docs = render(None, FULL)
    worker = one(docs, "Deployment")
    spec = pod_spec(worker)
    assert [c["name"] for c in spec["containers"]] == ["talon-bridge", "log-shipper"]
    assert [c["name"] for c in spec["initContainers"]] == ["wait-for-mesh"]
    image = "registry.example.com/platform/talon-bridge@sha256:" + "0123456789abcdef" * 4
    extra = {"secretRef": {"name": "talon-bridge-extra-env"}}
    for doc in [worker, *find(docs, "Job"), one(docs, "Pod")]:
        assert container(doc)["image"] == image
    for doc in [worker, *find(docs, "Job")]:
        assert extra in container(doc)["envFrom"], doc["metadata"]["name"]
    for job in find(docs, "Job"):
        assert "initContainers" not in pod_spec(job)
        assert len(pod_spec(job)["containers"]) == 1


def test_registry_with_a_tag(render: Render) -> None:
    values = {"image": {"registry": "ghcr.io/acme/", "repository": "talon-bridge", "tag": "1.2.3"}}
    assert container(one(render(values), "Deployment"))["image"] == (
        "ghcr.io/acme/talon-bridge:1.2.3"
    )


def test_keda_polling_interval_and_fallback(render: Render) -> None:
    spec = one(render(None, FULL), "ScaledObject")["spec"]
    assert spec["pollingInterval"] == 15
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 6}
    assert "fallback" not in one(render({"keda": {"enabled": True}}), "ScaledObject")["spec"]


def test_keda_fallback_needs_both_fields(render_result: RenderResult) -> None:
    result = render_result({"keda": {"enabled": True, "fallback": {"replicas": 3}}})
    assert result.returncode != 0
    assert "failureThreshold" in result.stderr


def test_statefulset_with_stable_transactional_ids(
    render: Render, render_result: RenderResult, tools: dict[str, Path]
) -> None:
    docs = render(None, STATEFULSET)
    assert not find(docs, "Deployment")
    sts = one(docs, "StatefulSet")
    assert sts["spec"]["serviceName"] == one(docs, "Service")["metadata"]["name"]
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert "strategy" not in sts["spec"]
    env = {e["name"]: e for e in container(sts)["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["BRIDGE_TRANSACTIONAL_ID"]["value"] == "talon-bridge-eos-$(POD_NAME)"
    # POD_NAME must come first for $(POD_NAME) to expand.
    names = [e["name"] for e in container(sts)["env"]]
    assert names.index("POD_NAME") < names.index("BRIDGE_TRANSACTIONAL_ID")
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    spread = pod_spec(sts)["topologySpreadConstraints"]
    assert {k for c in spread for k in c["matchLabelKeys"]} == {"controller-revision-hash"}
    rendered = render_result(None, STATEFULSET)
    result = kubeconform(tools["kubeconform"], rendered.stdout)
    assert result.returncode == 0, result.stdout + result.stderr


def test_statefulset_without_exactly_once_leaves_the_id_alone(render: Render) -> None:
    docs = render({"statefulset": {"enabled": True}, "keda": {"enabled": True}})
    env = {e["name"] for e in container(one(docs, "StatefulSet"))["env"]}
    assert "BRIDGE_TRANSACTIONAL_ID" not in env
    assert one(docs, "ScaledObject")["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    # A Deployment with exactly-once keeps the per-process default.
    deployment = one(render({"worker": {"exactlyOnce": True}}), "Deployment")
    assert "env" not in container(deployment)
