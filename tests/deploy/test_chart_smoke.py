"""The chart's command lines and configuration, run as local processes on a real broker.

`helm template` renders the chart for a local broker and the Talon.One simulator. The topics
hook Job's command creates the topics. Then the test takes the Deployment's container args,
the ConfigMap's data as environment and the projected secret files (written to a folder passed
as BRIDGE_SECRETS_DIR), runs exactly `talon-bridge ARGS`, produces a few hundred commands and
expects their effects on the output topic; the `helm test` pod's command (`talon-bridge
doctor`) must pass against the running worker. SIGTERM must then stop the worker within the pod's
grace period.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chartkit import Docs, config_data, container, find, one, pod_spec
from confluent_kafka.admin import AdminClient, ConfigResource

from bridge.codec import Codec
from bridge.harness import read_topic, wait_for
from bridge.ports import free_port
from bridge.produce import LoadSpec, generate, produce_commands
from bridge.simulator.process import SimulatorProcess

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

API_KEY = "smoke-api-key-3b9e"


@pytest.fixture
def simulator() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(api_key=API_KEY, args=["--latency-ms", "2"]) as sim:
        yield sim


def _secret_files(docs: Docs, folder: Path) -> None:
    """Write the Deployment's projected secret files as the kubelet would mount them."""
    secrets = {s["metadata"]["name"]: s for s in find(docs, "Secret")}
    volumes = {v["name"]: v for v in pod_spec(one(docs, "Deployment"))["volumes"]}
    for source in volumes["secrets"]["projected"]["sources"]:
        secret = secrets[source["secret"]["name"]]
        for item in source["secret"]["items"]:
            path = folder / item["path"]
            path.write_bytes(base64.b64decode(secret["data"][item["key"]]))
            path.chmod(0o440)


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


def test_rendered_worker_processes_commands(
    render: Callable[..., Docs],
    kafka_bootstrap: str,
    simulator: SimulatorProcess,
    tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:8]
    topics = {
        "input": [f"smoke-in-{run}"],
        "output": f"smoke-out-{run}",
        "dlq": f"smoke-dlq-{run}",
        "parking": f"smoke-park-{run}",
    }
    group = f"smoke-{run}"
    port = free_port()
    values: dict[str, Any] = {
        "kafka": {"bootstrapServers": [kafka_bootstrap], "groupId": group, "topics": topics},
        "talon": {"baseUrl": simulator.base_url, "apiKey": API_KEY, "allowInsecureHttp": True},
        "worker": {"drainTimeout": 10, "commitInterval": 0.5, "logFormat": "json"},
        "metrics": {"port": port},
        "topics": {"create": {"enabled": True, "partitions": 3, "replicationFactor": 1}},
    }
    docs = render(values)
    entry = Path(sys.executable).parent / "talon-bridge"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}

    # The pre-install hook: `talon-bridge topics create ...` with the Job's inline settings.
    job = container(one(docs, "Job", "topics"))
    job_env = {**base_env, **{e["name"]: e["value"] for e in job["env"]}}
    job_env["BRIDGE_SECRETS_DIR"] = str(tmp_path / "no-secrets")
    created = subprocess.run(
        [str(entry), *job["args"]],
        env=job_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.count(": created") == 4, created.stdout
    assert _topic_config(kafka_bootstrap, topics["parking"])["cleanup.policy"] == "compact"

    deployment = one(docs, "Deployment")
    args = container(deployment)["args"]
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]

    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    _secret_files(docs, secrets_dir)
    env = {**base_env, **config_data(docs)}
    env["BRIDGE_SECRETS_DIR"] = str(secrets_dir)
    assert "BRIDGE_TALON_API_KEY" not in env

    log_path = tmp_path / "worker.log"
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
        conf = {"bootstrap.servers": kafka_bootstrap}
        sent = produce_commands(
            conf, topics["input"][0], iter(commands), encode=Codec().encode_command
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
