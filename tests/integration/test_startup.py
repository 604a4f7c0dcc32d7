"""What the worker says when it cannot start: the brokers, a parking topic it cannot use, or a
librdkafka property its input consumer refuses."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable

import pytest

from bridge import __version__
from bridge.tools.harness import WorkerProcess

BASE = {
    "BRIDGE_TALON_BASE_URL": "https://127.0.0.1:9",
    "BRIDGE_TALON_API_KEY": "startup-key-5a1",
    "BRIDGE_INPUT_TOPICS": "startup-in",
}


def _run(env: dict[str, str]) -> tuple[int, str]:
    worker = WorkerProcess({**BASE, **env}).start(wait_ready=False)
    assert worker.proc is not None
    try:
        return worker.proc.wait(timeout=90), worker.log_text()
    finally:
        worker.kill()  # only if it is still running: it was to exit by itself


def _lines(log: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_unreachable_brokers_are_named_without_a_traceback() -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        servers = f"127.0.0.1:{closed.getsockname()[1]}"
        code, log = _run({"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": servers})
    assert code == 1, log
    assert "Traceback" not in log
    assert "parking" not in log.replace('"parking_topic"', "")
    lines = _lines(log)
    start = next(line for line in lines if line["msg"] == "worker starting")
    assert start["version"] == __version__
    assert start["brokers"] == servers
    assert start["group"] == "talon-bridge"
    assert start["topics"] == ["startup-in"]
    errors = [line["msg"] for line in lines if line["logger"] == "bridge.worker.root"]
    assert errors[-1] == (
        f"cannot reach the Kafka brokers at {servers}: {servers}/bootstrap: "
        f"Connect to ipv4#{servers} failed: Connection refused (after 0ms in state CONNECT)"
    ), log


@pytest.mark.kafka
def test_a_missing_parking_topic_is_a_configuration_error(kafka_bootstrap: str) -> None:
    missing = f"startup-park-{uuid.uuid4().hex[:8]}"
    code, log = _run(
        {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "BRIDGE_PARKING_TOPIC": missing}
    )
    assert code == 2, log
    assert "Traceback" not in log and "cannot reach" not in log
    assert (
        f"talon-bridge: configuration error: BRIDGE_PARKING_TOPIC: topic '{missing}': it does "
        "not exist; create it compacted (`talon-bridge topics create`) and let the worker read "
        "and write it, or set BRIDGE_ON_POISON=skip"
    ) in log


@pytest.mark.kafka
def test_an_uncompacted_parking_topic_is_refused(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    plain = topic_factory("startup-park", 1, {"cleanup.policy": "delete"})
    code, log = _run(
        {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "BRIDGE_PARKING_TOPIC": plain}
    )
    assert code == 2, log
    assert "Traceback" not in log
    assert (
        f"BRIDGE_PARKING_TOPIC: topic '{plain}' has cleanup.policy=delete: must be compact, "
        "or parked sessions are lost to retention"
    ) in log


@pytest.mark.kafka
def test_a_property_the_input_consumer_refuses_names_its_setting(kafka_bootstrap: str) -> None:
    code, log = _run(
        {
            "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "BRIDGE_ON_POISON": "skip",
            "BRIDGE_KAFKA_CONSUMER_CONFIG": '{"fetch.wait.max.ms": -5}',
        }
    )
    assert code == 2, log
    assert "Traceback" not in log
    assert "talon-bridge: configuration error: BRIDGE_KAFKA_CONSUMER_CONFIG: " in log, log
    assert "fetch.wait.max.ms" in log
