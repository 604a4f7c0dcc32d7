"""Logging set-up: JSON lines by default, a human format on a terminal.

Record-related lines carry `where` (`topic[partition]@offset`) and `event_id` as structured
fields, passed with `extra=`. Nothing here ever formats a command's attribute values or the
API key; callers log identifiers and counts only.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import Any

import orjson

from bridge.types import LogFormat

__all__ = ["REPETITIVE_LOGGERS", "JsonFormatter", "RepeatFilter", "configure_logging", "where"]

_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


def where(topic: str, partition: int, offset: int) -> str:
    """The `topic[partition]@offset` fragment used on every record-related line."""
    return f"{topic}[{partition}]@{offset}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, plus any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = [
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STD_ATTRS and not k.startswith("_")
        ]
        return f"{base} {' '.join(extras)}" if extras else base


# Loggers whose lines repeat for as long as a broker or topic is down; RepeatFilter thins them.
REPETITIVE_LOGGERS = ("librdkafka", "bridge.kafka.clients.errors", "bridge.worker.root.delivery")


class RepeatFilter(logging.Filter):
    """Lets a line through once per `window` seconds; the next one says how many were held.

    librdkafka reports every failed connection attempt, several a second per client while a
    broker is down. The first line shows at once; repeats that differ only in their timings
    ("after 3ms in state CONNECT") are counted instead of written.
    """

    _TIMINGS = re.compile(r"\d+ms|\d+ identical error\(s\) suppressed")
    _MAX_KEYS = 1000

    def __init__(self, window: float = 30.0) -> None:
        super().__init__()
        self._window = window
        self._lock = threading.Lock()
        self._seen: dict[tuple[int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        key = (record.levelno, self._TIMINGS.sub("#", message))
        now = record.created
        with self._lock:
            shown, held = self._seen.get(key, (-self._window, 0))
            if now - shown < self._window:
                self._seen[key] = (shown, held + 1)
                return False
            if len(self._seen) >= self._MAX_KEYS:
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self._window}
            self._seen[key] = (now, 0)
        if held:
            record.msg, record.args = f"{message} ({held} more like it held back)", None
        return True


def configure_logging(level: str = "INFO", fmt: LogFormat = "auto") -> None:
    """Install one stderr handler on the root logger."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if use_json
        else _TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # librdkafka and aiohttp chatter stays at warnings unless asked for.
    for noisy in ("librdkafka", "aiohttp.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for repetitive in REPETITIVE_LOGGERS:
        logger = logging.getLogger(repetitive)
        logger.filters[:] = [f for f in logger.filters if not isinstance(f, RepeatFilter)]
        logger.addFilter(RepeatFilter())
