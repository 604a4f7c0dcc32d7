"""Shared fixtures: a real Kafka broker, found the same way everywhere.

Order: `KAFKA_BOOTSTRAP_SERVERS` if set; else a testcontainers Kafka container when a Docker
engine answers; else a single-node KRaft broker run from Maven Central jars
(`bridge.tools.localkafka`). With `CI` set, a kafka-marked test can never be skipped: a missing
broker fails the run.

A Schema Registry likewise: `SCHEMA_REGISTRY_URL` if set, else Apicurio Registry built from
Maven Central (`bridge.tools.localregistry`), started once per test session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.tools.localkafka import LocalKafka
from bridge.tools.localregistry import LocalRegistry
from tests.support.ci import IN_CI

_skipped_kafka: list[str] = []


def _docker_kafka() -> Iterator[str] | None:
    """A testcontainers broker when a Docker engine answers, else None."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not os.path.exists(host.removeprefix("unix://")):
        return None  # no engine socket; asking the docker client would leak a socket
    try:
        import docker  # shipped with testcontainers

        client = docker.from_env(timeout=3)
    except Exception:
        return None
    try:
        client.ping()
    except Exception:
        return None
    finally:
        client.close()
    from testcontainers.kafka import KafkaContainer

    def gen() -> Iterator[str]:
        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()

    return gen()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real broker for the whole test session."""
    if env := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield env
        return
    if (containers := _docker_kafka()) is not None:
        yield from containers
        return
    try:
        broker = LocalKafka()
        broker.start()
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"no Kafka broker could be provisioned: {exc}", pytrace=False)
        pytest.skip(f"no Kafka broker available: {exc}")
    try:
        yield broker.bootstrap
    finally:
        broker.close()


@pytest.fixture(scope="session")
def schema_registry_url() -> Iterator[str]:
    """The Confluent-compatible API of a real Schema Registry for the whole test session."""
    if env := os.environ.get("SCHEMA_REGISTRY_URL"):
        yield env
        return
    registry = LocalRegistry()
    try:
        registry.start()
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"no Schema Registry could be provisioned: {exc}", pytrace=False)
        pytest.skip(f"no Schema Registry available: {exc}")
    try:
        yield registry.url
    finally:
        registry.close()


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def topic_factory(kafka_admin: AdminClient) -> Callable[..., str]:
    """Create a uniquely named topic and wait until it exists."""

    def create(prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        futures = kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(timeout=30)
        return name

    return create


@pytest.fixture
def group_id() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        # A registry is a service too: its tests stay out of the broker-free runs.
        uses_kafka = "kafka_bootstrap" in fixtures or "schema_registry_url" in fixtures
        if uses_kafka and item.get_closest_marker("kafka") is None:
            raise pytest.UsageError(
                f"{item.nodeid} uses Kafka or a Schema Registry but is not marked "
                "@pytest.mark.kafka"
            )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "kafka" in report.keywords:
        _skipped_kafka.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI and _skipped_kafka:
        print(f"\nERROR: {len(_skipped_kafka)} kafka-marked tests were skipped in CI")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
