"""`talon-bridge doctor` reads ACLs from a broker that enforces them.

A broker of its own (the shared one has no authorizer): the PLAINTEXT listener is for the
test's admin (a super user), the SASL/PLAIN listener for the bridge's principal, which is
granted everything the worker needs except WRITE on the output topic.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

from bridge.cli import main
from bridge.simulator.process import SimulatorProcess
from bridge.tools.localkafka import LocalKafka
from bridge.tools.ports import free_port
from tests.support.bridge import API_KEY
from tests.support.ci import IN_CI

pytestmark = pytest.mark.kafka

PASSWORD = "bridge-secret-9d2"


class _AclBroker(LocalKafka):
    """A broker with the standard authorizer and a second, SASL/PLAIN listener."""

    def __init__(self) -> None:
        super().__init__()
        self.sasl_port = free_port()

    def _write_config(self) -> Path:
        cfg = super()._write_config()
        props = dict(line.split("=", 1) for line in cfg.read_text().splitlines() if "=" in line)
        props["listeners"] += f",SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}"
        props["advertised.listeners"] += f",SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}"
        props["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        props["sasl.enabled.mechanisms"] = "PLAIN"
        props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_bridge="{PASSWORD}";'
        )
        props["authorizer.class.name"] = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        props["super.users"] = "User:ANONYMOUS"
        cfg.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return cfg


@pytest.fixture(scope="module")
def acl_broker() -> Iterator[_AclBroker]:
    broker = _AclBroker()
    try:
        broker.start()
    except Exception as exc:
        broker.close()
        if IN_CI:
            pytest.fail(f"no Kafka broker with ACLs could be started: {exc}", pytrace=False)
        pytest.skip(f"no Kafka broker with ACLs could be started: {exc}")
    try:
        yield broker
    finally:
        broker.close()


def test_missing_acl_is_named_and_granted_ones_pass(
    acl_broker: _AclBroker,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:8]
    names = {role: f"acl-{role}-{run}" for role in ("in", "out", "dlq", "park")}
    group = f"acl-group-{run}"
    admin = AdminClient({"bootstrap.servers": acl_broker.bootstrap})
    config = {"park": {"cleanup.policy": "compact"}}
    created = admin.create_topics(
        [NewTopic(n, 1, 1, config=config.get(role, {})) for role, n in names.items()]
    )
    for future in created.values():
        future.result(30)
    grants = {
        (ResourceType.TOPIC, names["in"]): ("READ", "DESCRIBE"),
        (ResourceType.TOPIC, names["out"]): ("DESCRIBE",),  # WRITE missing
        (ResourceType.TOPIC, names["dlq"]): ("WRITE",),  # READ, for replay, missing
        (ResourceType.TOPIC, names["park"]): ("READ", "WRITE"),
        (ResourceType.GROUP, group): ("READ",),
    }
    bindings = [
        AclBinding(
            kind,
            name,
            ResourcePatternType.LITERAL,
            "User:bridge",
            "*",
            AclOperation[op],
            AclPermissionType.ALLOW,
        )
        for (kind, name), ops in grants.items()
        for op in (*ops, *(("DESCRIBE_CONFIGS",) if kind == ResourceType.TOPIC else ()))
    ]
    for future in admin.create_acls(bindings).values():
        future.result(30)

    for key in list(os.environ):
        if key.startswith("BRIDGE_"):
            monkeypatch.delenv(key)
    with SimulatorProcess(api_key=API_KEY) as sim:
        env = {
            "BRIDGE_SECRETS_DIR": str(tmp_path / "no-secrets"),
            "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{acl_broker.sasl_port}",
            "BRIDGE_KAFKA_CONFIG": json.dumps(
                {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN"}
            ),
            "BRIDGE_KAFKA_SASL_USERNAME": "bridge",
            "BRIDGE_KAFKA_SASL_PASSWORD": PASSWORD,
            "BRIDGE_INPUT_TOPICS": names["in"],
            "BRIDGE_OUTPUT_TOPIC": names["out"],
            "BRIDGE_DLQ_TOPIC": names["dlq"],
            "BRIDGE_PARKING_TOPIC": names["park"],
            "BRIDGE_GROUP_ID": group,
            "BRIDGE_TALON_BASE_URL": sim.base_url,
            "BRIDGE_TALON_ALLOW_INSECURE_HTTP": "true",
            "BRIDGE_TALON_API_KEY": API_KEY,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    rows = {(r["area"], r["subject"]): r for r in report["checks"]}
    assert code == 1
    out_acl = rows["acl", f"topic {names['out']}"]
    assert out_acl["status"] == "fail"
    assert out_acl["detail"] == "missing WRITE (needs WRITE, DESCRIBE)"
    assert rows["acl", f"topic {names['dlq']}"]["status"] == "warn"
    assert (
        "READ missing, needed by `talon-bridge replay`"
        in rows["acl", f"topic {names['dlq']}"]["detail"]
    )
    for name in (names["in"], names["park"]):
        assert rows["acl", f"topic {name}"]["status"] == "ok"
    assert rows["acl", f"group {group}"]["status"] == "ok"
    assert rows["group", f"group {group}"]["status"] == "ok"
    assert rows["topic", f"parking {names['park']}"]["status"] == "ok"
    failed = [key for key, row in rows.items() if row["status"] == "fail"]
    assert failed == [("acl", f"topic {names['out']}")]
    assert PASSWORD not in json.dumps(report)

    # The same principal with a wrong password: the reason, not just "transport failure".
    monkeypatch.setenv("BRIDGE_KAFKA_SASL_PASSWORD", "not-the-password")
    assert main(["doctor", "--json", "--timeout", "5"]) == 1
    report = json.loads(capsys.readouterr().out)
    kafka = next(r for r in report["checks"] if r["area"] == "kafka")
    assert kafka["status"] == "fail"
    assert "refused the credentials" in kafka["detail"]
    assert "Invalid username or password" in kafka["detail"]
    assert "BRIDGE_KAFKA_SASL_PASSWORD" in kafka["fix"]
    assert "not-the-password" not in json.dumps(report)
