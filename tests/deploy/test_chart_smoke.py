"""The chart's command lines and configuration, run as local processes on a real broker.

`helm template` renders the chart for a local broker and the Talon.One simulator. The topics
hook Job's command creates the topics. Then the test takes the Deployment's container args,
the ConfigMap's data as environment and the mounted secret and TLS files (written where the
values put the mounts, a scratch folder), runs exactly `talon-bridge ARGS`, produces a few
hundred commands and expects their effects on the output topic; the `helm test` pod's command
(`talon-bridge doctor`) must pass against the running worker. SIGTERM must then stop the worker
within the pod's grace period.

Two more runs do the same against listeners that take only SASL/SCRAM over mutual TLS (the
credentials in separate Secrets the way Strimzi lays them out) and only SASL/OAUTHBEARER with
tokens from a local OpenID Connect provider (client credentials, the client secret from its
Secret).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from idp import Idp
from pki import Pki, issue

from bridge.avro.codec import Codec
from bridge.simulator.process import SimulatorProcess
from bridge.tools.harness import read_topic, wait_for
from bridge.tools.kafka_listeners import OidcListener, SecureListener
from bridge.tools.localkafka import LocalKafka
from bridge.tools.ports import free_port
from bridge.tools.produce import LoadSpec, generate, produce_commands
from tests.support.chart import (
    Docs,
    SecretData,
    config_data,
    container,
    mount_secret_volumes,
    one,
    pod_spec,
    rendered_secrets,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

API_KEY = "smoke-api-key-3b9e"


@pytest.fixture
def simulator() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(api_key=API_KEY, args=["--latency-ms", "2"]) as sim:
        yield sim


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return {name: entry.value for name, entry in entries.items()}


def _topics(run: str) -> dict[str, Any]:
    return {
        "input": [f"smoke-in-{run}"],
        "output": f"smoke-out-{run}",
        "dlq": f"smoke-dlq-{run}",
        "parking": f"smoke-park-{run}",
    }


def _run_release(
    docs: Docs, secrets: SecretData, bootstrap: str, port: int, tmp_path: Path
) -> None:
    """Run the topics hook's and the worker's command lines as the pods would, with their
    settings and mounted files; commands produced through `bootstrap` come back as effects."""
    entry = Path(sys.executable).parent / "talon-bridge"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    secrets = {**secrets, **rendered_secrets(docs)}
    data = config_data(docs)
    topics = {
        "input": data["BRIDGE_INPUT_TOPICS"],
        "output": data["BRIDGE_OUTPUT_TOPIC"],
        "parking": data["BRIDGE_PARKING_TOPIC"],
    }

    # The pre-install hook: `talon-bridge topics create ...` with the Job's inline settings.
    job = one(docs, "Job", "topics")
    mount_secret_volumes(job, secrets)
    job_env = {**base_env, **{e["name"]: e["value"] for e in container(job)["env"]}}
    created = subprocess.run(
        [str(entry), *container(job)["args"]],
        env=job_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.count(": created") == 4, created.stdout
    assert _topic_config(bootstrap, topics["parking"])["cleanup.policy"] == "compact"

    deployment = one(docs, "Deployment")
    args = container(deployment)["args"]
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    mount_secret_volumes(deployment, secrets)
    env = {**base_env, **data}
    assert "BRIDGE_TALON_API_KEY" not in env

    log_path = tmp_path / "worker.log"
    group = data["BRIDGE_GROUP_ID"]
    commands = list(generate(LoadSpec(sessions=60, total=300, run_id=group)))
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [str(entry), *args], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
        )
    try:

        def ready() -> bool:
            if worker.poll() is not None:
                raise AssertionError(
                    f"worker exited with {worker.returncode}:\n{log_path.read_text()[-4000:]}"
                )
            return _get(port, "/readyz") == 200

        wait_for(ready, 60, "the worker to become ready")
        assert _get(port, "/healthz") == 200

        # `helm test`: the test pod's command, with the Service address replaced by the
        # worker's own (there is no cluster DNS here).
        doctor_args = container(one(docs, "Pod", "test"))["args"]
        doctor_args[doctor_args.index("--worker-url") + 1] = f"http://127.0.0.1:{port}"
        checked = subprocess.run(
            [str(entry), *doctor_args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "0 failed" in checked.stdout, checked.stdout
        conf = {"bootstrap.servers": bootstrap}
        sent = produce_commands(
            conf, topics["input"], iter(commands), encode=Codec().encode_command
        )
        assert sent == len(commands)
        effects = read_topic(conf, topics["output"], expected=len(commands), timeout=120)
        codec = Codec()
        assert {codec.decode_effects(m.value()).event_id for m in effects} == {
            c.event_id for c in commands
        }

        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=grace)
        assert code == 0, log_path.read_text()[-4000:]
        assert time.monotonic() - started < grace
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_rendered_worker_processes_commands(
    render: Callable[..., Docs],
    kafka_bootstrap: str,
    simulator: SimulatorProcess,
    tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:8]
    port = free_port()
    values: dict[str, Any] = {
        "kafka": {
            "bootstrapServers": [kafka_bootstrap],
            "groupId": f"smoke-{run}",
            "topics": _topics(run),
        },
        "talon": {"baseUrl": simulator.base_url, "apiKey": API_KEY, "allowInsecureHttp": True},
        "worker": {
            "drainTimeout": 10,
            "commitInterval": 0.5,
            "logFormat": "json",
            "secretsDir": str(tmp_path / "secrets"),
        },
        "metrics": {"port": port},
        "topics": {"create": {"enabled": True, "partitions": 3, "replicationFactor": 1}},
    }
    _run_release(render(values), {}, kafka_bootstrap, port, tmp_path)


SCRAM_USER, SCRAM_PASSWORD = "talon-bridge", "scram-pw-5Jq8"


OIDC_CLIENT, OIDC_SECRET = "talon-bridge", "oidc-secret-Pq71"


@dataclass
class SecuredKafka:
    broker: LocalKafka
    pki: Pki
    idp: Idp


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    """A broker with a SASL_SSL listener (SCRAM-SHA-512, client certificates required) and an
    OAUTHBEARER one whose tokens come from a local identity provider."""
    folder = tmp_path_factory.mktemp("secure-kafka")
    pki = issue(SCRAM_USER)
    (folder / "broker.pem").write_bytes(pki.broker.key + pki.broker.cert)
    (folder / "ca.pem").write_bytes(pki.ca)
    users = {SCRAM_USER: SCRAM_PASSWORD}
    scram = SecureListener(folder / "broker.pem", folder / "ca.pem", users)
    with Idp(OIDC_CLIENT, OIDC_SECRET) as idp:
        oidc = OidcListener(idp.url + "/jwks")
        with LocalKafka(listeners=[scram, oidc]) as broker:
            yield SecuredKafka(broker, pki, idp)


def test_rendered_worker_with_scram_and_mutual_tls(
    render: Callable[..., Docs],
    secured_kafka: SecuredKafka,
    simulator: SimulatorProcess,
    tmp_path: Path,
) -> None:
    """Credentials laid out as Strimzi does: the KafkaUser's Secret holds only the password,
    the client certificate is in another Secret and the CA in `<cluster>-cluster-ca-cert`."""
    broker, pki = secured_kafka.broker, secured_kafka.pki
    run = uuid.uuid4().hex[:8]
    port = free_port()
    cluster: SecretData = {
        "talon-one-integration": {"api-key": API_KEY.encode()},
        "talon-bridge-scram": {"password": SCRAM_PASSWORD.encode()},
        "talon-bridge-tls-user": {"user.crt": pki.client.cert, "user.key": pki.client.key},
        "prod-cluster-ca-cert": {"ca.crt": pki.ca},
    }
    values: dict[str, Any] = {
        "kafka": {
            "bootstrapServers": [broker.bootstrap_of("SASL_SSL")],
            "groupId": f"smoke-secure-{run}",
            "topics": _topics(run),
            "sasl": {
                "enabled": True,
                "mechanism": "SCRAM-SHA-512",
                "username": SCRAM_USER,
                "existingSecret": "talon-bridge-scram",
                "passwordKey": "password",
            },
            "tls": {
                "enabled": True,
                "caSecret": "prod-cluster-ca-cert",
                "certSecret": "talon-bridge-tls-user",
                "certKey": "user.crt",
                "keyKey": "user.key",
                "mountPath": str(tmp_path / "tls"),
            },
        },
        "talon": {
            "baseUrl": simulator.base_url,
            "existingSecret": "talon-one-integration",
            "allowInsecureHttp": True,
        },
        "worker": {
            "drainTimeout": 10,
            "commitInterval": 0.5,
            "logFormat": "json",
            "secretsDir": str(tmp_path / "secrets"),
        },
        "metrics": {"port": port},
        "topics": {"create": {"enabled": True, "partitions": 3, "replicationFactor": 1}},
    }
    docs = render(values)
    conf = json.loads(config_data(docs)["BRIDGE_KAFKA_CONFIG"])
    assert conf["security.protocol"] == "SASL_SSL"
    # Commands go in and effects come out through the plaintext listener; the worker and the
    # topics Job only reach the broker through the SASL_SSL one.
    _run_release(docs, cluster, broker.bootstrap, port, tmp_path)


def test_rendered_worker_with_oidc_client_credentials(
    render: Callable[..., Docs],
    secured_kafka: SecuredKafka,
    simulator: SimulatorProcess,
    tmp_path: Path,
) -> None:
    """SASL/OAUTHBEARER: librdkafka gets tokens from the identity provider with the client
    secret mounted from its Secret; the broker takes nothing else on this listener."""
    broker, idp = secured_kafka.broker, secured_kafka.idp
    run = uuid.uuid4().hex[:8]
    port = free_port()
    cluster: SecretData = {
        "talon-one-integration": {"api-key": API_KEY.encode()},
        "kafka-oidc": {"client-secret": OIDC_SECRET.encode()},
    }
    values: dict[str, Any] = {
        "kafka": {
            "bootstrapServers": [broker.bootstrap_of("OIDC")],
            "groupId": f"smoke-oidc-{run}",
            "topics": _topics(run),
            "sasl": {
                "enabled": True,
                "mechanism": "OAUTHBEARER",
                "oauthbearer": {
                    "tokenEndpointUrl": idp.url + "/token",
                    "clientId": OIDC_CLIENT,
                    "scope": "kafka",
                    "existingSecret": "kafka-oidc",
                },
            },
        },
        "talon": {
            "baseUrl": simulator.base_url,
            "existingSecret": "talon-one-integration",
            "allowInsecureHttp": True,
        },
        "worker": {
            "drainTimeout": 10,
            "commitInterval": 0.5,
            "logFormat": "json",
            "secretsDir": str(tmp_path / "secrets"),
        },
        "metrics": {"port": port},
        "topics": {"create": {"enabled": True, "partitions": 3, "replicationFactor": 1}},
    }
    docs = render(values)
    assert OIDC_SECRET not in json.dumps(config_data(docs))
    issued = idp.issued
    _run_release(docs, cluster, broker.bootstrap, port, tmp_path)
    assert idp.issued > issued  # the topics Job, the worker and doctor each got a token
