"""Kafka security as clusters lay it out: each shape rendered, kubeconform-checked, and loaded.

Each shape names the Secrets a platform team already has (a Strimzi KafkaUser's, the cluster CA's,
an OIDC client's, a Confluent Cloud API key's). The test renders the chart, validates the
manifests, writes the mounted files as the kubelet would and loads the worker's settings from
them, checking the librdkafka configuration the worker ends up with.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.environment import load
from bridge.settings import ENV_PREFIX, KafkaSettings, Settings
from tests.support.chart import (
    Docs,
    SecretData,
    config_data,
    container,
    find,
    kubeconform,
    mount_secret_volumes,
    one,
    pod_spec,
    rendered_secrets,
)

pytestmark = pytest.mark.slow

Render = Callable[..., Docs]
RenderResult = Callable[..., subprocess.CompletedProcess[str]]

# What exists in the cluster before the install: Secret name -> key -> value.
CLUSTER: SecretData = {
    "talon-one-integration": {"api-key": b"tb-api-key"},
    # Strimzi: a KafkaUser with SCRAM auth holds only the password; with TLS auth, its
    # certificate; the cluster CA lives in <cluster>-cluster-ca-cert.
    "talon-bridge-scram": {"password": b"scram-pw", "sasl.jaas.config": b"..."},
    "talon-bridge-tls-user": {"user.crt": b"CERT", "user.key": b"KEY", "user.password": b"kp"},
    "prod-cluster-ca-cert": {"ca.crt": b"CA", "ca.p12": b"P12", "ca.password": b"x"},
    "kafka-oidc": {"client-secret": b"oidc-secret"},
    "confluent-cloud": {"api-secret": b"cc-secret"},
}

BASE: dict[str, Any] = {
    "talon": {"baseUrl": "https://acme.talon.one", "existingSecret": "talon-one-integration"},
}

SHAPES: dict[str, dict[str, Any]] = {
    "strimzi-scram": {
        "sasl": {
            "enabled": True,
            "mechanism": "SCRAM-SHA-512",
            "username": "talon-bridge",
            "existingSecret": "talon-bridge-scram",
            "passwordKey": "password",
        },
        "tls": {"enabled": True, "caSecret": "prod-cluster-ca-cert", "caKey": "ca.crt"},
    },
    "strimzi-mtls": {
        "tls": {
            "enabled": True,
            "caSecret": "prod-cluster-ca-cert",
            "certSecret": "talon-bridge-tls-user",
            "certKey": "user.crt",
            "keyKey": "user.key",
            "keyPasswordKey": "user.password",
        },
    },
    "oidc": {
        "sasl": {
            "enabled": True,
            "mechanism": "OAUTHBEARER",
            "oauthbearer": {
                "tokenEndpointUrl": "https://idp.example.com/oauth2/token",
                "clientId": "talon-bridge",
                "scope": "kafka",
                "extensions": "logicalCluster=lkc-abc12,identityPoolId=pool-Xy9",
                "existingSecret": "kafka-oidc",
            },
        },
        "tls": {"enabled": True, "caKey": ""},
    },
    "confluent-cloud-plain": {
        "sasl": {
            "enabled": True,
            "mechanism": "PLAIN",
            "username": "ABCDEFGH12345678",
            "existingSecret": "confluent-cloud",
            "passwordKey": "api-secret",
        },
        "tls": {"enabled": True, "caKey": ""},
    },
}

# The librdkafka properties each shape must end up with (secrets from the mounted files).
EXPECTED: dict[str, dict[str, str]] = {
    "strimzi-scram": {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "talon-bridge",
        "sasl.password": "scram-pw",
        "ssl.ca.location": "{tls}/ca.crt",
    },
    "strimzi-mtls": {
        "security.protocol": "SSL",
        "ssl.ca.location": "{tls}/ca.crt",
        "ssl.certificate.location": "{tls}/tls.crt",
        "ssl.key.location": "{tls}/tls.key",
        "ssl.key.password": "kp",
    },
    "oidc": {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.client.id": "talon-bridge",
        "sasl.oauthbearer.client.secret": "oidc-secret",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example.com/oauth2/token",
        "sasl.oauthbearer.scope": "kafka",
        "sasl.oauthbearer.extensions": "logicalCluster=lkc-abc12,identityPoolId=pool-Xy9",
    },
    "confluent-cloud-plain": {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "ABCDEFGH12345678",
        "sasl.password": "cc-secret",
    },
}


def _values(shape: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    kafka = {**SHAPES[shape]}
    if "tls" in kafka:
        kafka["tls"] = {**kafka["tls"], "mountPath": str(tmp_path / "tls")}
    return {
        **BASE,
        "kafka": kafka,
        "worker": {"secretsDir": str(tmp_path / "secrets")},
        "topics": {"create": {"enabled": True, "partitions": 12}},
        "replay": {"enabled": True},
        **extra,
    }


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_shape_passes_kubeconform(
    shape: str, render_result: RenderResult, tools: dict[str, Path], tmp_path: Path
) -> None:
    for keda in (False, True):
        values = _values(shape, tmp_path, keda={"enabled": keda})
        if keda and shape == "oidc":
            values["keda"]["authenticationRef"] = "talon-bridge-oidc"
        rendered = render_result(values)
        assert rendered.returncode == 0, rendered.stderr
        result = kubeconform(tools["kubeconform"], rendered.stdout)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("workload", ["Deployment", "topics", "replay"])
def test_shape_loads_as_the_expected_kafka_config(
    shape: str,
    workload: str,
    render: Render,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = render(_values(shape, tmp_path))
    assert not find(docs, "Secret"), "existing Secrets only: the chart creates none"
    doc = one(docs, "Deployment") if workload == "Deployment" else one(docs, "Job", workload)
    mount_secret_volumes(doc, {**CLUSTER, **rendered_secrets(docs)})
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    env = container(doc).get("env", [])
    settings = config_data(docs) if container(doc).get("envFrom") else {}
    for name, value in {**settings, **{e["name"]: e["value"] for e in env}}.items():
        monkeypatch.setenv(name, value)
    settings_class = Settings if workload == "Deployment" else KafkaSettings
    conf = load(settings_class).librdkafka_common()
    tls = str(tmp_path / "tls")
    for key, value in EXPECTED[shape].items():
        assert conf[key] == value.format(tls=tls), key
    for key in ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location"):
        if key in conf:
            assert Path(str(conf[key])).is_file(), key
        else:
            assert key not in EXPECTED[shape]


def test_secrets_never_reach_the_configmap_or_env(render: Render, tmp_path: Path) -> None:
    for shape in SHAPES:
        docs = render(_values(shape, tmp_path))
        text = json.dumps([d for d in docs if d["kind"] != "Secret"])
        for needle in ("tb-api-key", "scram-pw", "oidc-secret", "cc-secret"):
            assert needle not in text, (shape, needle)


def test_username_from_values_skips_the_secret_key(render: Render, tmp_path: Path) -> None:
    docs = render(_values("strimzi-scram", tmp_path))
    assert config_data(docs)["BRIDGE_KAFKA_SASL_USERNAME"] == "talon-bridge"
    volumes = {v["name"]: v for v in pod_spec(one(docs, "Deployment"))["volumes"]}
    items = [
        i["path"] for s in volumes["secrets"]["projected"]["sources"] for i in s["secret"]["items"]
    ]
    assert "BRIDGE_KAFKA_SASL_USERNAME" not in items
    assert "BRIDGE_KAFKA_SASL_PASSWORD" in items


def test_ca_and_client_certificate_from_separate_secrets(render: Render, tmp_path: Path) -> None:
    docs = render(_values("strimzi-mtls", tmp_path))
    volumes = {v["name"]: v for v in pod_spec(one(docs, "Deployment"))["volumes"]}
    sources = {
        s["secret"]["name"]: {i["key"]: i["path"] for i in s["secret"]["items"]}
        for s in volumes["kafka-tls"]["projected"]["sources"]
    }
    assert sources == {
        "prod-cluster-ca-cert": {"ca.crt": "ca.crt"},
        "talon-bridge-tls-user": {"user.crt": "tls.crt", "user.key": "tls.key"},
    }


def test_keda_reads_the_same_credentials(render: Render, tmp_path: Path) -> None:
    docs = render(_values("strimzi-scram", tmp_path, keda={"enabled": True}))
    auth = one(docs, "TriggerAuthentication")["spec"]
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["secretTargetRef"]}
    assert refs == {
        "password": ("talon-bridge-scram", "password"),
        "ca": ("prod-cluster-ca-cert", "ca.crt"),
    }
    # The username from values is in the ConfigMap the worker container reads.
    assert auth["env"] == [
        {
            "parameter": "username",
            "name": "BRIDGE_KAFKA_SASL_USERNAME",
            "containerName": "talon-bridge",
        }
    ]
    names = [c["name"] for c in pod_spec(one(docs, "Deployment"))["containers"]]
    assert "talon-bridge" in names


def test_keda_with_own_trigger_authentication(render: Render, tmp_path: Path) -> None:
    values = _values("oidc", tmp_path, keda={"enabled": True, "authenticationRef": "mine"})
    docs = render(values)
    assert not find(docs, "TriggerAuthentication")
    (trigger,) = one(docs, "ScaledObject")["spec"]["triggers"]
    assert trigger["authenticationRef"] == {"name": "mine"}
    assert "sasl" not in trigger["metadata"]


@pytest.mark.parametrize(
    ("kafka", "extra", "message"),
    [
        (
            {"sasl": {"enabled": True, "mechanism": "OAUTHBEARER"}},
            {},
            "tokenEndpointUrl and kafka.sasl.oauthbearer.clientId",
        ),
        (
            {
                "sasl": {
                    "enabled": True,
                    "mechanism": "OAUTHBEARER",
                    "oauthbearer": {"tokenEndpointUrl": "https://i/t", "clientId": "c"},
                }
            },
            {},
            "kafka.sasl.oauthbearer.existingSecret",
        ),
        (SHAPES["oidc"], {"keda": {"enabled": True}}, "keda.authenticationRef"),
        (
            {"tls": {"enabled": True, "caSecret": "ca", "certKey": "tls.crt"}},
            {},
            "kafka.tls.certSecret or kafka.tls.existingSecret",
        ),
        (
            {"tls": {"enabled": True, "existingSecret": "t", "certKey": "tls.crt"}},
            {},
            "certKey and kafka.tls.keyKey go together",
        ),
    ],
)
def test_inconsistent_security_values_are_refused(
    render_result: RenderResult, kafka: dict[str, Any], extra: dict[str, Any], message: str
) -> None:
    result = render_result({**BASE, "kafka": kafka, **extra})
    assert result.returncode != 0
    assert message in result.stderr


def test_inline_oidc_client_secret_in_the_chart_secrets(
    render: Render, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Development: the client secret inline lands in the chart's Secret and the hook's."""
    oauth = {**SHAPES["oidc"]["sasl"]["oauthbearer"], "clientSecret": "inline-oidc-7Yt"}
    del oauth["existingSecret"]
    values = _values("oidc", tmp_path)
    values["kafka"] = {**values["kafka"], "sasl": {**SHAPES["oidc"]["sasl"], "oauthbearer": oauth}}
    docs = render(values)
    assert "inline-oidc-7Yt" not in json.dumps([d for d in docs if d["kind"] != "Secret"])
    for doc in (one(docs, "Deployment"), one(docs, "Job", "topics")):
        written = mount_secret_volumes(doc, {**CLUSTER, **rendered_secrets(docs)})
        secret_file = str(tmp_path / "secrets" / "BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET")
        assert written[secret_file] == b"inline-oidc-7Yt"
