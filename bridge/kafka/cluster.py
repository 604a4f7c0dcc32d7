"""The cluster as an admin client describes it: reachable, its topics, the consumer group."""

from __future__ import annotations

from typing import Any

from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource  # not re-exported for typing

from bridge.errors import KafkaUnreachableError
from bridge.kafka.codes import ALL_BROKERS_DOWN, AUTHENTICATION
from bridge.kafka.config import LIBRDKAFKA_LOGGER, client_errors, new_client

__all__ = ["NOT_FOUND", "REACH_TIMEOUT_S", "Cluster", "GroupWatch", "topic_unreadable"]

NOT_FOUND = "it does not exist"


def topic_unreadable(found: Any) -> str | None:
    """Why a topic's metadata (None: not listed) says it cannot be read, or None.

    Other errors (a leader being elected) pass: they are transient.
    """
    code = found.error.code() if found is not None and found.error else None
    if found is None or code == KafkaError.UNKNOWN_TOPIC_OR_PART:
        return NOT_FOUND
    if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return "the worker may not describe it"
    return None


def _unreachable(servers: str, exc: KafkaException, errors: list[KafkaError]) -> Exception:
    refused = [e for e in errors if e.code() == AUTHENTICATION]
    if refused:
        return KafkaUnreachableError(servers, refused[-1].str(), credentials_refused=True)
    reasons = [e.str() for e in errors if e.code() != ALL_BROKERS_DOWN]
    error = exc.args[0]
    fallback = error.str() if isinstance(error, KafkaError) else str(exc)
    return KafkaUnreachableError(servers, reasons[0] if reasons else fallback)


# How long a command waits at start for any broker to answer before it says it cannot reach
# them; a brief outage then ends in a restart, not in a worker that waits without saying why.
REACH_TIMEOUT_S = 10.0


class Cluster:
    """The cluster's metadata, asked once through an admin client (`admin`, `metadata`).

    Raises `KafkaUnreachableError` when no broker answers within `timeout`.
    """

    def __init__(self, conf: dict[str, Any], timeout: float = REACH_TIMEOUT_S) -> None:
        self._timeout = timeout
        # Why a connection failed (refused, unresolvable, authentication) only reaches the
        # error callback; the metadata error itself says "Broker transport failure".
        errors: list[KafkaError] = []
        self.admin = new_client(
            AdminClient, {**conf, "logger": LIBRDKAFKA_LOGGER, "error_cb": errors.append}
        )
        try:
            self.metadata = self.admin.list_topics(timeout=timeout)
        except KafkaException as exc:
            self.admin.poll(0)  # serves the error callback and hands queued lines to the logger
            raise _unreachable(str(conf["bootstrap.servers"]), exc, errors) from None
        self.admin.poll(0)

    def topic_problem(self, topic: str) -> str | None:
        """Why the worker cannot use `topic` as the cluster describes it, or None."""
        return topic_unreadable(self.metadata.topics.get(topic))

    def topic_config(self, topic: str, name: str) -> str | None:
        """One configuration value of a topic; None when the worker may not describe it."""
        return self.topic_configs([topic], name).get(topic)

    def record_limits(self, topics: list[str]) -> dict[str, int]:
        """The max.message.bytes of each of `topics` the worker may describe, in one request."""
        return {t: int(v) for t, v in self.topic_configs(topics, "max.message.bytes").items()}

    def topic_configs(self, topics: list[str], name: str) -> dict[str, str]:
        """One configuration value of each of `topics` the worker may describe, in one
        request; each topic it may not describe is logged and left out."""
        resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in dict.fromkeys(topics)]
        try:
            futures = self.admin.describe_configs(resources, request_timeout=self._timeout)
        except KafkaException as exc:
            futures = {}
            for resource in resources:
                _undescribed(resource.name, exc)
        found: dict[str, str] = {}
        for resource, future in futures.items():
            try:
                entry = future.result(self._timeout).get(name)
            except KafkaException as exc:
                _undescribed(resource.name, exc)
                continue
            if entry is not None:
                found[resource.name] = str(entry.value)
        self.admin.poll(0)  # hands its log lines over
        return found


def _undescribed(topic: str, exc: KafkaException) -> None:
    client_errors.warning("cannot describe topic %s: %s", topic, exc.args[0].str())


class GroupWatch:
    """Asks whether a consumer group is stable with a given member in it."""

    def __init__(self, conf: dict[str, Any], group: str) -> None:
        self._group = group
        self._admin = new_client(AdminClient, {**conf, "logger": LIBRDKAFKA_LOGGER})

    def stable_with(self, member_id: str) -> bool:
        """True once the group is stable and lists `member_id`; False also when not asked."""
        try:
            futures = self._admin.describe_consumer_groups([self._group])
            found = futures[self._group].result(timeout=5)
        except KafkaException as exc:
            client_errors.warning("cannot describe the consumer group: %s", exc)
            return False
        finally:
            self._admin.poll(0)  # hands its log lines over
        return found.state == ConsumerGroupState.STABLE and any(
            m.member_id == member_id for m in found.members
        )
