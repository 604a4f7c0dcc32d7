"""The Helm chart: lint, schema validation of values and manifests, and what the pods look like.

Needs helm and kubeconform from the tool cache (built once from their Go modules; slow only on
the first run on a machine).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from bridge.environment import load
from bridge.metrics import Metrics
from bridge.settings import ENV_PREFIX, Settings
from tests.support.chart import (
    CHART,
    KUBERNETES_VERSION,
    ROOT,
    SCHEMAS,
    Doc,
    Docs,
    config_data,
    container,
    find,
    kubeconform,
    one,
    pod_spec,
)

pytestmark = pytest.mark.slow

Render = Callable[..., Docs]
RenderResult = Callable[..., subprocess.CompletedProcess[str]]

FAKE_API_KEY = "tb-fake-api-key-7Q2xZr9"
FAKE_SASL_PASSWORD = "tb-fake-sasl-pw-K4m8Wd"

# Values variants rendered by several tests: name -> (values files, extra values)
VARIANTS: dict[str, tuple[tuple[str, ...], dict[str, Any] | None]] = {
    "defaults": ((), None),
    "ci-default": (("ci/default-values.yaml",), None),
    "ci-full": (("ci/full-values.yaml",), None),
    "inline-secrets-hpa": (
        (),
        {
            "talon": {"baseUrl": "https://acme.talon.one", "apiKey": FAKE_API_KEY},
            "kafka": {
                "sasl": {"enabled": True, "username": "bridge", "password": FAKE_SASL_PASSWORD}
            },
            "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80},
            "networkPolicy": {"enabled": True},
            "topics": {"create": {"enabled": True, "partitions": 6}},
            "replay": {"enabled": True},
            "podDisruptionBudget": {"minAvailable": "50%"},
            "terminationGracePeriodSeconds": 90,
        },
    ),
    "several-applications": (
        (),
        {
            "talon": {
                "applications": [
                    {
                        "name": "de",
                        "baseUrl": "https://acme.europe-west1.talon.one",
                        "existingSecret": "talon-one-de",
                        "topics": ["talon.commands"],
                    },
                    {
                        "name": "fr",
                        "baseUrl": "https://acme-fr.europe-west1.talon.one",
                        "existingSecret": "talon-one-fr",
                        "existingSecretKey": "key",
                    },
                ],
                "defaultApplication": "fr",
            },
            "replay": {"enabled": True},
        },
    ),
    "registry-and-secret-config": (
        (),
        {
            "talon": {"baseUrl": "https://acme.talon.one", "apiKey": FAKE_API_KEY},
            "kafka": {
                "encoding": "confluent",
                "schemaRegistryUrl": "https://sr.example:8081",
                "schemaRegistry": {
                    "subjectStrategy": "topic-record",
                    "timeout": 3,
                    "username": "bridge",
                    "existingSecret": "sr-credentials",
                    "passwordKey": "password",
                    "caSecret": "sr-ca",
                },
                "config": {"sasl.mechanism": "OAUTHBEARER"},
                "secretConfig": {"existingSecret": "kafka-oauth"},
            },
        },
    ),
}


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, render: Render) -> Docs:
    files, values = VARIANTS[request.param]
    return render(values, files)


# --- lint and manifest schemas ------------------------------------------------------------


@pytest.mark.parametrize(
    "files",
    [(), ("ci/default-values.yaml",), ("ci/full-values.yaml",), ("ci/statefulset-values.yaml",)],
)
def test_helm_lint_strict(helm_run: RenderResult, files: tuple[str, ...]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for f in files:
        args += ["-f", str(CHART / f)]
    result = helm_run(*args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_manifests_pass_kubeconform_strict(
    name: str, render_result: RenderResult, tools: dict[str, Path]
) -> None:
    files, values = VARIANTS[name]
    rendered = render_result(values, files)
    assert rendered.returncode == 0, rendered.stderr
    result = kubeconform(tools["kubeconform"], rendered.stdout)
    # No -ignore-missing-schemas: a kind without a vendored schema is an error too.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in result.stdout


def test_kubeconform_rejects_an_unknown_field(tools: dict[str, Path], render: Render) -> None:
    deployment = one(render(), "Deployment")
    pod_spec(deployment)["containers"][0]["readOnlyRootFilesytem"] = True
    result = subprocess.run(
        [
            str(tools["kubeconform"]),
            "-strict",
            "-kubernetes-version",
            KUBERNETES_VERSION,
            "-schema-location",
            str(SCHEMAS) + "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}"
            "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
            "-",
        ],
        input=yaml.safe_dump(deployment),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "readOnlyRootFilesytem" in result.stdout


# --- values schema and template checks ----------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCont": 3}, "additional properties 'replicaCont' not allowed"),
        ({"kafka": {"bootstrapServer": ["k:9092"]}}, "'bootstrapServer' not allowed"),
        ({"replicaCount": "3"}, "/replicaCount"),
        ({"worker": {"drainTimeout": "30s"}}, "/worker/drainTimeout"),
        ({"worker": {"drainTimeout": 0}}, "/worker/drainTimeout"),
        ({"kafka": {"bootstrapServers": "k:9092"}}, "/kafka/bootstrapServers"),
        ({"kafka": {"sasl": {"mechanism": "GSSAPI"}}}, "/kafka/sasl/mechanism"),
        ({"talon": {"baseUrl": "acme.talon.one"}}, "/talon/baseUrl"),
        ({"extraConfig": {"BRIDGE_TALON_API_KEY": "x"}}, "'BRIDGE_TALON_API_KEY'"),
        ({"extraConfig": {"LOG_LEVEL": "DEBUG"}}, "'LOG_LEVEL'"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"topics": {"create": {"replicationFactor": 0}}}, "/topics/create/replicationFactor"),
    ],
)
def test_schema_rejects_bad_values(
    render_result: RenderResult, values: dict[str, Any], message: str
) -> None:
    result = render_result(values)
    assert result.returncode != 0
    assert "don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


HPA_AND_KEDA = {"autoscaling": {"enabled": True}, "keda": {"enabled": True}}


def test_hpa_and_keda_rejected_by_schema(render_result: RenderResult) -> None:
    result = render_result(HPA_AND_KEDA)
    assert result.returncode != 0
    assert "/keda/enabled" in result.stderr


def test_hpa_and_keda_rejected_by_template_without_schema(render_result: RenderResult) -> None:
    result = render_result(HPA_AND_KEDA, extra=["--skip-schema-validation"])
    assert result.returncode != 0
    assert "mutually exclusive" in result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka": {"sasl": {"enabled": True}}}, "kafka.sasl.existingSecret"),
        ({"kafka": {"tls": {"enabled": True}}}, "kafka.tls.caSecret or kafka.tls.existingSecret"),
        (
            {"topics": {"create": {"enabled": True, "partitions": 6}}, "keda": {"enabled": True}},
            "12 replicas but 6 partitions",
        ),
        (
            {"topics": {"create": {"enabled": True, "partitions": 1}}},
            "2 replicas but 1 partitions",
        ),
        ({"terminationGracePeriodSeconds": 34}, "at least worker.drainTimeout + 5 (35)"),
        (
            {"worker": {"processes": 2}, "resources": {"limits": {"memory": "1.5Gi"}}},
            'resources.limits.memory: "1.5Gi" cannot be multiplied by worker.processes',
        ),
        ({"talon": {"baseUrl": "http://acme.talon.one"}}, "talon.baseUrl is plain http"),
        ({"talon": {"baseUrl": "https://k:s@acme.talon.one"}}, "talon.baseUrl holds credentials"),
        (
            {"kafka": {"config": {"sasl.oauthbearer.client.secret": "s"}}},
            "sasl.oauthbearer.client.secret is a secret",
        ),
        ({"kafka": {"config": {"sasl.password": "s"}}}, "sasl.password is a secret"),
        ({"kafka": {"config": {"ssl.key.pem": "s"}}}, "ssl.key.pem is a secret"),
        (
            {"extraConfig": {"BRIDGE_KAFKA_CONFIG": '{"sasl.jaas.config": "s"}'}},
            "sasl.jaas.config is a secret",
        ),
        (
            {"kafka": {"schemaRegistryUrl": "https://user:pw@sr.example"}},
            "kafka.schemaRegistryUrl holds credentials",
        ),
    ],
)
def test_templates_refuse_inconsistent_values(
    render_result: RenderResult, values: dict[str, Any], message: str
) -> None:
    result = render_result(values)
    assert result.returncode != 0
    assert message in result.stderr


# --- pods -----------------------------------------------------------------------------------


def _workloads(docs: Docs) -> Docs:
    return [d for d in docs if d["kind"] in {"Deployment", "Job", "Pod"}]


def test_pods_run_non_root_with_read_only_root(variant: Docs) -> None:
    workloads = _workloads(variant)
    assert workloads
    for doc in workloads:
        spec = pod_spec(doc)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] == 10001
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        ctx = container(doc)["securityContext"]
        assert ctx["runAsNonRoot"] is True
        assert ctx["runAsUser"] == 10001
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        mounts = {m["mountPath"]: m["name"] for m in container(doc)["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the pod's scratch mount


def test_service_account_token_not_mounted(render: Render) -> None:
    account = one(render(), "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_worker_resources_and_spread_by_default(render: Render) -> None:
    deployment = one(render(), "Deployment")
    resources = container(deployment)["resources"]
    assert set(resources) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    spread = pod_spec(deployment)["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]
    assert {c["whenUnsatisfiable"] for c in spread} == {"ScheduleAnyway"}


def _health_routes() -> set[str]:
    source = (ROOT / "bridge" / "worker" / "health.py").read_text()
    return set(re.findall(r'add_get\("(/[a-z]+)"', source))


def test_probes_hit_health_endpoints_on_the_metrics_port(variant: Docs) -> None:
    assert {"/healthz", "/readyz", "/metrics"} <= _health_routes()
    deployment = one(variant, "Deployment")
    c = container(deployment)
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
    assert int(config_data(variant)["BRIDGE_METRICS_PORT"]) == port
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"]["path"] in _health_routes()
    service = one(variant, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_default_metrics_port_matches_the_worker_default(render: Render) -> None:
    c = container(one(render(), "Deployment"))
    assert c["ports"][0]["containerPort"] == Settings.model_fields["metrics_port"].default


def test_container_runs_the_worker(render: Render) -> None:
    c = container(one(render(), "Deployment"))
    assert c["args"] == ["run"]
    assert "command" not in c  # the image's ENTRYPOINT (tini -- talon-bridge) stays


@pytest.mark.parametrize(
    ("values", "grace"),
    [
        (None, 45),
        ({"worker": {"drainTimeout": 12.5}}, 28),
        ({"worker": {"drainTimeout": 120}}, 135),
        ({"terminationGracePeriodSeconds": 35}, 35),
        ({"terminationGracePeriodSeconds": 300}, 300),
    ],
)
def test_termination_grace_period_outlasts_the_drain(
    render: Render, values: dict[str, Any] | None, grace: int
) -> None:
    docs = render(values)
    spec = pod_spec(one(docs, "Deployment"))
    drain = float(config_data(docs)["BRIDGE_DRAIN_TIMEOUT"])
    assert spec["terminationGracePeriodSeconds"] == grace
    assert spec["terminationGracePeriodSeconds"] >= drain + 5


@pytest.mark.parametrize(("processes", "expected"), [(None, "1"), (4, "4")])
def test_worker_processes_set_the_process_count(
    render: Render, processes: int | None, expected: str
) -> None:
    values = None if processes is None else {"worker": {"processes": processes}}
    assert config_data(render(values))["BRIDGE_WORKERS"] == expected


def test_resources_are_per_worker_process(render: Render) -> None:
    values = {
        "worker": {"processes": 3},
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": 1, "memory": 536870912, "ephemeral-storage": "1G"},
        },
    }
    resources = container(one(render(values), "Deployment"))["resources"]
    assert resources == {
        "requests": {"cpu": "750m", "memory": "768Mi"},
        "limits": {"cpu": "3", "memory": "1610612736", "ephemeral-storage": "3G"},
    }
    values["resources"]["limits"]["cpu"] = 0.5
    limits = container(one(render(values), "Deployment"))["resources"]["limits"]
    assert limits["cpu"] == "1500m"


def test_config_change_rolls_the_pods(render: Render) -> None:
    def checksum(values: dict[str, Any] | None) -> str:
        deployment = one(render(values), "Deployment")
        annotations: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/config"]

    assert checksum(None) != checksum({"worker": {"maxInFlight": 64}})


# --- configuration and secrets ------------------------------------------------------------


def _known_variables() -> set[str]:
    return {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {"BRIDGE_SECRETS_DIR"}


def test_configmap_holds_only_known_settings(variant: Docs) -> None:
    data = config_data(variant)
    assert set(data) <= _known_variables()
    assert all(isinstance(v, str) for v in data.values())


def test_configmap_and_secret_files_load_as_settings(
    render: Render, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, values = VARIANTS["inline-secrets-hpa"]
    docs = render(values, files)
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in config_data(docs).items():
        monkeypatch.setenv(name, value)
    _write_secret_files(docs, one(docs, "Deployment"), tmp_path)
    monkeypatch.setenv("BRIDGE_SECRETS_DIR", str(tmp_path))
    settings = load(Settings)
    assert settings.talon_api_key.get_secret_value() == FAKE_API_KEY
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == FAKE_SASL_PASSWORD
    conf = settings.librdkafka_common()
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    assert conf["sasl.username"] == "bridge"
    assert settings.drain_timeout == 30


def _write_secret_files(docs: Docs, workload: Doc, folder: Path) -> dict[str, str]:
    """Materialise the workload's projected secret files as the kubelet would."""
    secrets = {s["metadata"]["name"]: s for s in find(docs, "Secret")}
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    written: dict[str, str] = {}
    for source in volumes.get("secrets", {}).get("projected", {}).get("sources", []):
        secret = secrets[source["secret"]["name"]]
        for item in source["secret"]["items"]:
            value = base64.b64decode(secret["data"][item["key"]]).decode()
            (folder / item["path"]).write_text(value)
            written[item["path"]] = value
    return written


def test_secret_files_are_named_like_settings(variant: Docs) -> None:
    for doc in _workloads(variant):
        volumes = {v["name"]: v for v in pod_spec(doc).get("volumes", [])}
        for source in volumes.get("secrets", {}).get("projected", {}).get("sources", []):
            for item in source["secret"]["items"]:
                assert item["path"] in _known_variables()


def test_api_key_and_sasl_password_only_in_secrets(render: Render) -> None:
    files, values = VARIANTS["inline-secrets-hpa"]
    docs = render(values, files)
    needles = [FAKE_API_KEY, FAKE_SASL_PASSWORD]
    needles += [base64.b64encode(n.encode()).decode() for n in needles]
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = yaml.safe_dump(doc)
        for needle in needles:
            assert needle not in text, f"{doc['kind']} {doc['metadata']['name']} leaks a secret"
    data = config_data(docs)
    assert not {k for k in data if "API_KEY" in k or "PASSWORD" in k}
    secret_values = [
        base64.b64decode(v).decode() for s in find(docs, "Secret") for v in s["data"].values()
    ]
    assert FAKE_API_KEY in secret_values


def test_existing_secrets_are_referenced_not_created(render: Render) -> None:
    docs = render(None, ("ci/full-values.yaml",))
    assert not find(docs, "Secret")
    volumes = {v["name"]: v for v in pod_spec(one(docs, "Deployment"))["volumes"]}
    sources = {
        s["secret"]["name"]: {i["key"]: i["path"] for i in s["secret"]["items"]}
        for s in volumes["secrets"]["projected"]["sources"]
    }
    assert sources["talon-one-integration"] == {"integration-api-key": "BRIDGE_TALON_API_KEY"}
    assert sources["kafka-talon-bridge"] == {
        "username": "BRIDGE_KAFKA_SASL_USERNAME",
        "password": "BRIDGE_KAFKA_SASL_PASSWORD",
    }


def test_producer_properties_reach_their_own_setting_as_strings(render: Render) -> None:
    docs = render({"kafka": {"producerConfig": {"linger.ms": 50, "message.max.bytes": 2000000}}})
    data = config_data(docs)
    assert json.loads(data["BRIDGE_KAFKA_PRODUCER_CONFIG"]) == {
        "linger.ms": "50",
        "message.max.bytes": "2000000",
    }
    assert "linger.ms" not in json.loads(data["BRIDGE_KAFKA_CONFIG"])


def test_consumer_properties_reach_their_own_setting_as_strings(render: Render) -> None:
    conf = {"fetch.wait.max.ms": 20, "fetch.min.bytes": 1048576}
    data = config_data(render({"kafka": {"consumerConfig": conf}}))
    assert json.loads(data["BRIDGE_KAFKA_CONSUMER_CONFIG"]) == {
        "fetch.wait.max.ms": "20",
        "fetch.min.bytes": "1048576",
    }
    assert "fetch.min.bytes" not in json.loads(data["BRIDGE_KAFKA_CONFIG"])
    assert json.loads(data["BRIDGE_KAFKA_PRODUCER_CONFIG"]) == {}


def test_tls_files_mounted_where_kafka_config_points(render: Render) -> None:
    docs = render(None, ("ci/full-values.yaml",))
    deployment = one(docs, "Deployment")
    conf = json.loads(config_data(docs)["BRIDGE_KAFKA_CONFIG"])
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["statistics.interval.ms"] == "15000"  # a string, never 15000.0
    mount = next(m for m in container(deployment)["volumeMounts"] if m["name"] == "kafka-tls")
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "kafka-tls")
    paths = {
        f"{mount['mountPath']}/{i['path']}"
        for source in volume["projected"]["sources"]
        for i in source["secret"]["items"]
    }
    assert {
        conf["ssl.ca.location"],
        conf["ssl.certificate.location"],
        conf["ssl.key.location"],
    } == paths


def test_helm_test_pod_runs_doctor_with_the_workers_settings(render: Render) -> None:
    docs = render({"keda": {"minReplicaCount": 1}}, ("ci/full-values.yaml",))
    worker = container(one(docs, "Deployment"))
    pod = one(docs, "Pod", "test")
    check = container(pod)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = one(docs, "Service")
    port = service["spec"]["ports"][0]["port"]
    url = f"http://{service['metadata']['name']}:{port}"
    assert check["image"] == worker["image"]
    assert check["args"] == ["doctor", "--worker-url", url]
    assert check["envFrom"] == worker["envFrom"]
    assert check["volumeMounts"] == worker["volumeMounts"]
    by_name = {v["name"]: v for v in pod_spec(one(docs, "Deployment"))["volumes"]}
    for volume in pod_spec(pod)["volumes"]:
        assert volume == by_name[volume["name"]]
    assert {"secrets", "kafka-tls"} <= {v["name"] for v in pod_spec(pod)["volumes"]}


def test_helm_test_skips_the_workers_when_keda_may_scale_to_zero(render: Render) -> None:
    values = {"keda": {"enabled": True, "minReplicaCount": 0}}
    assert container(one(render(values), "Pod", "test"))["args"] == ["doctor"]


# --- scaling ---------------------------------------------------------------------------------


def test_keda_scaled_object_and_trigger_authentication(render: Render) -> None:
    docs = render(None, ("ci/full-values.yaml",))
    assert not find(docs, "HorizontalPodAutoscaler")
    assert "replicas" not in one(docs, "Deployment")["spec"]
    scaled = one(docs, "ScaledObject")
    assert scaled["spec"]["maxReplicaCount"] == 12
    assert scaled["spec"]["minReplicaCount"] == 0
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["topic"] for t in triggers] == [
        "talon.commands",
        "talon.commands.priority",
    ]
    meta = triggers[0]["metadata"]
    assert meta["bootstrapServers"] == "kafka-0.kafka:9093,kafka-1.kafka:9093,kafka-2.kafka:9093"
    assert meta["consumerGroup"] == "talon-bridge-prod"
    assert meta["lagThreshold"] == "500"
    assert meta["activationLagThreshold"] == "10"
    assert meta["sasl"] == "scram_sha512"
    assert meta["tls"] == "enable"
    auth = one(docs, "TriggerAuthentication")
    assert triggers[0]["authenticationRef"]["name"] == auth["metadata"]["name"]
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs["username"] == ("kafka-talon-bridge", "username")
    assert refs["password"] == ("kafka-talon-bridge", "password")
    assert refs["ca"] == ("kafka-talon-bridge-tls", "ca.crt")


def test_hpa_when_autoscaling_enabled(render: Render) -> None:
    files, values = VARIANTS["inline-secrets-hpa"]
    docs = render(values, files)
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    assert not find(docs, "ScaledObject")


def test_pod_disruption_budget_on_by_default(render: Render) -> None:
    pdb = one(render(), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    deployment = one(render(), "Deployment")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


# --- labels ----------------------------------------------------------------------------------


def test_recommended_labels(variant: Docs) -> None:
    for doc in variant:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "talon-bridge"
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "talon-bridge-0.1.0"


def test_chart_label_escapes_plus(render: Render, chart_copy: Path) -> None:
    chart_yaml = chart_copy / "Chart.yaml"
    chart_yaml.write_text(
        re.sub(r"(?m)^version: .*$", "version: 0.1.0+build.7", chart_yaml.read_text())
    )
    for doc in render(None, chart=chart_copy):
        assert doc["metadata"]["labels"]["helm.sh/chart"] == "talon-bridge-0.1.0_build.7"


# --- monitoring ------------------------------------------------------------------------------


def _metric_names() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry)
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
        "gauge": ("",),
    }
    return {m.name + suffix for m in registry.collect() for suffix in suffixes.get(m.type, ("",))}


def test_prometheus_rule_alerts_use_real_metrics(render: Render) -> None:
    docs = render(None, ("ci/full-values.yaml",))
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts["BridgeNotReady"]["expr"] == "bridge_ready == 0"
    assert "increase(bridge_dead_letters_total[10m]) > 0" in alerts["BridgeDeadLetters"]["expr"]
    known = _metric_names()
    for alert in alerts.values():
        for name in re.findall(r"\bbridge_[a-z_]+", alert["expr"]):
            assert name in known, f"{alert['alert']} uses unknown metric {name}"


def test_runbook_links_are_relative_unless_a_base_url_is_given(render: Render) -> None:
    def links(values: dict[str, Any]) -> list[str]:
        rule = one(render({"prometheusRule": {"enabled": True, **values}}), "PrometheusRule")
        return [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]]

    relative = links({})
    assert relative
    assert all(link.startswith("docs/operations.md#") for link in relative)
    base = "https://git.example.com/retail/talon-bridge/blob/v1.4.0"
    assert links({"runbookBaseUrl": base + "/"}) == [f"{base}/{link}" for link in relative]


def test_alert_rules_match_the_shared_rules_file() -> None:
    shared = ROOT / "deploy" / "prometheus" / "alerts.yaml"
    if not shared.exists():
        pytest.skip("deploy/prometheus/alerts.yaml is not present")
    chart = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert chart == yaml.safe_load(shared.read_text()), (
        "deploy/helm/talon-bridge/files/alerts.yaml differs from deploy/prometheus/alerts.yaml"
    )


def test_service_monitor(render: Render) -> None:
    docs = render(None, ("ci/full-values.yaml",))
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    service = one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )


def test_dashboards_one_configmap_per_json_file(render: Render, chart_copy: Path) -> None:
    def dashboards(chart: Path) -> Docs:
        docs = render({"dashboards": {"enabled": True}}, chart=chart)
        return [
            d for d in find(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]
        ]

    for stale in (chart_copy / "dashboards").glob("*.json"):
        stale.unlink()
    assert dashboards(chart_copy) == []  # an empty folder renders nothing
    board = {"title": "Bridge", "uid": "talon-bridge", "panels": []}
    (chart_copy / "dashboards" / "bridge_overview.json").write_text(json.dumps(board))
    (chart_copy / "dashboards" / "kafka.json").write_text(json.dumps(board))
    found = dashboards(chart_copy)
    assert sorted(d["metadata"]["name"] for d in found) == [
        "rel-talon-bridge-dashboard-bridge-overview",
        "rel-talon-bridge-dashboard-kafka",
    ]
    for doc in found:
        assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
        (text,) = doc["data"].values()
        assert json.loads(text) == board


# --- jobs ------------------------------------------------------------------------------------


def test_topics_job_is_a_pre_install_hook(render: Render, tmp_path: Path) -> None:
    files, values = VARIANTS["inline-secrets-hpa"]
    docs = render(values, files)
    job = one(docs, "Job", "topics")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert container(job)["args"] == [
        "topics",
        "create",
        "--partitions",
        "6",
        "--replication-factor",
        "-1",
    ]
    # It runs before the release's ConfigMap and Secret exist: inline settings, a hook Secret.
    assert "envFrom" not in container(job)
    env = {e["name"]: e["value"] for e in container(job)["env"]}
    assert env["BRIDGE_INPUT_TOPICS"] == "talon.commands"
    assert env["BRIDGE_KAFKA_SASL_USERNAME"] == "bridge"  # not a secret: inline
    hook_secret = next(
        s for s in find(docs, "Secret") if "helm.sh/hook" in s["metadata"].get("annotations", {})
    )
    hook_weight = int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert hook_weight < int(annotations["helm.sh/hook-weight"])
    files_written = _write_secret_files(docs, job, tmp_path)
    assert files_written == {"BRIDGE_KAFKA_SASL_PASSWORD": FAKE_SASL_PASSWORD}


def test_replay_job_shares_config_and_secrets(render: Render) -> None:
    docs = render(None, ("ci/full-values.yaml",))
    job = one(docs, "Job", "replay")
    worker = one(docs, "Deployment")
    assert container(job)["args"][0] == "replay"
    assert "--yes" in container(job)["args"]
    assert container(job)["envFrom"] == container(worker)["envFrom"]
    assert pod_spec(job)["volumes"] == pod_spec(worker)["volumes"]
    assert pod_spec(job)["restartPolicy"] == "Never"


def test_replay_job_name_follows_its_arguments(render: Render) -> None:
    def name(args: list[str]) -> str:
        job = one(render({"replay": {"enabled": True, "args": args}}), "Job", "replay")
        return str(job["metadata"]["name"])

    assert name(["--dry-run"]) == name(["--dry-run"])
    assert name(["--dry-run"]) != name(["--yes"])


# --- documentation ---------------------------------------------------------------------------


def test_chart_readme_parameters_are_generated_and_current(
    tools: dict[str, Path], tmp_path: Path
) -> None:
    """readme-generator-for-helm fails on an undocumented value and rewrites stale tables."""
    readme = tmp_path / "README.md"
    shutil.copy(CHART / "README.md", readme)
    result = subprocess.run(
        [str(tools["readme-generator"]), "-v", str(CHART / "values.yaml"), "-r", str(readme)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert readme.read_text() == (CHART / "README.md").read_text(), (
        "deploy/helm/talon-bridge/README.md is out of date: run `make chart-readme`"
    )


def test_readme_generator_refuses_an_undocumented_value(
    tools: dict[str, Path], tmp_path: Path
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text((CHART / "values.yaml").read_text() + "undocumentedKey: 1\n")
    shutil.copy(CHART / "README.md", tmp_path / "README.md")
    result = subprocess.run(
        [str(tools["readme-generator"]), "-v", str(values), "-r", str(tmp_path / "README.md")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "undocumentedKey" in result.stdout + result.stderr


def test_notes_render(render: Render, chart_copy: Path) -> None:
    # helm renders NOTES.txt only on install; render the same text through `tpl` instead.
    (chart_copy / "files" / "notes.txt").write_text(
        (chart_copy / "templates" / "NOTES.txt").read_text()
    )
    (chart_copy / "templates" / "notes-check.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "files/notes.txt") . | quote }}\n'
    )

    def notes(values: dict[str, Any] | None, files: tuple[str, ...] = ()) -> str:
        docs = render(values, files, chart=chart_copy)
        cm = next(d for d in find(docs, "ConfigMap") if d["metadata"]["name"] == "notes")
        return str(cm["data"]["notes"])

    plain = notes(None)
    assert "WARNING: talon.baseUrl is not set" in plain
    assert "grace period is 45s" in plain
    full = notes(None, ("ci/full-values.yaml",))
    assert "WARNING" not in full
    assert "KEDA scales 0..12 replicas" in full


def test_registry_and_secret_config_come_from_secrets(render: Render) -> None:
    files, values = VARIANTS["registry-and-secret-config"]
    docs = render(values, files)
    data = config_data(docs)
    assert data["BRIDGE_SCHEMA_REGISTRY_URL"] == "https://sr.example:8081"
    assert data["BRIDGE_SCHEMA_REGISTRY_SUBJECT_STRATEGY"] == "topic-record"
    assert data["BRIDGE_SCHEMA_REGISTRY_TIMEOUT"] == "3"
    assert data["BRIDGE_SCHEMA_REGISTRY_USERNAME"] == "bridge"
    ca = data["BRIDGE_SCHEMA_REGISTRY_CA_LOCATION"]
    assert not any(
        name in data
        for name in (
            "BRIDGE_SCHEMA_REGISTRY_PASSWORD",
            "BRIDGE_SCHEMA_REGISTRY_BEARER_TOKEN",
            "BRIDGE_KAFKA_SECRET_CONFIG",
        )
    )
    deployment = one(docs, "Deployment")
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    files_from = {
        item["path"]: source["secret"]["name"]
        for source in volumes["secrets"]["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    assert files_from["BRIDGE_SCHEMA_REGISTRY_PASSWORD"] == "sr-credentials"
    assert files_from["BRIDGE_KAFKA_SECRET_CONFIG"] == "kafka-oauth"
    assert volumes["registry-ca"]["secret"]["secretName"] == "sr-ca"
    mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
    assert ca == f"{mounts['registry-ca']}/ca.crt"


def test_dashboards_runbook_link_points_where_the_runbook_is(render: Render) -> None:
    def runbooks(values: dict[str, Any]) -> list[str]:
        docs = render({"dashboards": {"enabled": True}, **values})
        boards = [
            json.loads(text)
            for doc in docs
            if doc["kind"] == "ConfigMap" and "-dashboard-" in doc["metadata"]["name"]
            for text in doc["data"].values()
        ]
        assert boards
        for board in boards:
            assert {link.get("url") for link in board["links"]} >= {"${runbook_url}"}
        variables = [v for b in boards for v in b["templating"]["list"]]
        return [v["query"] for v in variables if v["name"] == "runbook_url"]

    assert set(runbooks({})) == {"docs/operations.md"}
    base = "https://git.example.com/retail/talon-bridge/blob/v1.4.0"
    url = f"{base}/docs/operations.md"
    assert set(runbooks({"prometheusRule": {"runbookBaseUrl": base}})) == {url}
    other = "https://docs.example.com/talon-bridge"
    both = {"prometheusRule": {"runbookBaseUrl": base}, "dashboards": {"enabled": True}}
    both["dashboards"]["runbookBaseUrl"] = other + "/"
    assert set(runbooks(both)) == {f"{other}/docs/operations.md"}


def test_operations_doc_states_the_charts_scrape_interval() -> None:
    interval = yaml.safe_load((CHART / "values.yaml").read_text())["serviceMonitor"]["interval"]
    seconds = int(str(interval).removesuffix("s"))
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    stated = re.findall(r"every (\d+) s by default: `serviceMonitor.interval`", operations)
    assert stated == [str(seconds)]


# --- static membership ----------------------------------------------------------------------


def test_statefulset_pods_are_static_members_named_after_themselves(
    render: Render,
    render_result: RenderResult,
    tools: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {"statefulset": {"enabled": True}}
    sts = one(render(values), "StatefulSet")
    env = {e["name"]: e for e in container(sts)["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["BRIDGE_GROUP_INSTANCE_ID"]["value"] == "$(POD_NAME)"
    assert "BRIDGE_TRANSACTIONAL_ID" not in env  # only with exactly-once
    # POD_NAME must come first for $(POD_NAME) to expand.
    names = [e["name"] for e in container(sts)["env"]]
    assert names.index("POD_NAME") < names.index("BRIDGE_GROUP_INSTANCE_ID")
    # What the kubelet makes of it (a StatefulSet's pod name) is an id the worker accepts.
    pod = f"{sts['metadata']['name']}-0"
    instance_id = env["BRIDGE_GROUP_INSTANCE_ID"]["value"].replace("$(POD_NAME)", pod)
    monkeypatch.setenv("BRIDGE_GROUP_INSTANCE_ID", instance_id)
    monkeypatch.setenv("BRIDGE_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("BRIDGE_TALON_BASE_URL", "https://acme.talon.one")
    monkeypatch.setenv("BRIDGE_TALON_API_KEY", FAKE_API_KEY)
    assert load(Settings).group_instance_id == pod
    result = kubeconform(tools["kubeconform"], render_result(values).stdout)
    assert result.returncode == 0, result.stdout + result.stderr


def test_static_membership_is_off_without_a_statefulset_or_when_turned_off(
    render: Render,
) -> None:
    # A Deployment's pod names change on every rollout: an instance id would be new each time.
    assert "env" not in container(one(render(None), "Deployment"))
    off = {"statefulset": {"enabled": True, "staticMembership": False}}
    assert "env" not in container(one(render(off), "StatefulSet"))
    both = {"statefulset": {"enabled": True}, "worker": {"exactlyOnce": True}}
    env = {e["name"] for e in container(one(render(both), "StatefulSet"))["env"]}
    assert env == {"POD_NAME", "BRIDGE_TRANSACTIONAL_ID", "BRIDGE_GROUP_INSTANCE_ID"}


def test_the_pass_through_may_not_set_an_instance_id(render_result: RenderResult) -> None:
    result = render_result({"kafka": {"config": {"group.instance.id": "pod"}}})
    assert result.returncode != 0
    assert "statefulset.staticMembership" in result.stderr
