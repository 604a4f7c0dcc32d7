"""Group requests are tried again while the coordinator moves, and only then."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from bridge.kafka import dlq_reader
from bridge.kafka.dlq_reader import with_group_retries


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dlq_reader.time, "sleep", lambda _s: None)


def _failing(codes: list[int]) -> tuple[list[int], object]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if codes:
            raise KafkaException(KafkaError(codes.pop(0)))
        return "done"

    return calls, call


def test_a_busy_coordinator_is_asked_again() -> None:
    calls, call = _failing([KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS])
    assert with_group_retries(call) == "done"  # type: ignore[arg-type]
    assert len(calls) == 3


def test_other_errors_are_raised_at_once() -> None:
    calls, call = _failing([KafkaError.GROUP_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException):
        with_group_retries(call)  # type: ignore[arg-type]
    assert len(calls) == 1
