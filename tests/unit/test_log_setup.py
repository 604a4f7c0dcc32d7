"""Log set-up: librdkafka's repeated lines are held back and counted, not written each time."""

from __future__ import annotations

import logging

import pytest

from bridge.kafka.config import client_errors
from bridge.logs import REPETITIVE_LOGGERS, RepeatFilter, configure_logging

REFUSED = "FAIL [rdkafka#consumer-1]: {host}: Connect failed (after {ms}ms in state CONNECT)"


def _record(message: str, at: float, level: int = logging.ERROR) -> logging.LogRecord:
    record = logging.LogRecord("librdkafka", level, __file__, 0, message, None, None)
    record.created = at
    return record


def _shown(f: RepeatFilter, lines: list[tuple[str, float]]) -> list[str]:
    out = []
    for message, at in lines:
        record = _record(message, at)
        if f.filter(record):
            out.append(record.getMessage())
    return out


def test_repeats_within_the_window_are_counted_on_the_next_line_shown() -> None:
    f = RepeatFilter(window=30)
    a = REFUSED.format(host="10.0.0.1:9092", ms=0)
    lines = [(REFUSED.format(host="10.0.0.1:9092", ms=i % 3), float(i)) for i in range(30)]
    shown = _shown(f, [*lines, (a, 31.0)])
    assert shown == [a, f"{a} (29 more like it held back)"]


def test_different_lines_are_held_back_separately() -> None:
    f = RepeatFilter(window=30)
    one, two = (REFUSED.format(host=h, ms=0) for h in ("10.0.0.1:9092", "10.0.0.2:9092"))
    assert _shown(f, [(one, 0.0), (two, 0.5), (one, 1.0), (two, 1.5)]) == [one, two]
    warning = _record(one, 2.0, logging.WARNING)
    assert f.filter(warning), "the same text at another level is another line"


@pytest.mark.parametrize("name", REPETITIVE_LOGGERS)
def test_configuring_twice_installs_one_filter(name: str) -> None:
    logger = logging.getLogger(name)
    before = list(logger.filters)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging("INFO", "json")
        configure_logging("INFO", "json")
        assert sum(isinstance(f, RepeatFilter) for f in logger.filters) == 1
    finally:
        logger.filters[:] = before
        root.handlers[:] = handlers
        root.setLevel(level)


def test_the_client_error_callbacks_log_to_a_repetitive_logger() -> None:
    assert client_errors.name in REPETITIVE_LOGGERS
