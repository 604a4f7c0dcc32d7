"""Records into commands, with Schema Registry lookups kept off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from bridge.avro.codec import Codec, RegistryError
from bridge.commands import Command
from bridge.errors import DecodeError
from bridge.kafka.records import InputRecord
from bridge.logs import where

__all__ = ["Decoder", "in_thread"]

# The worker's log lines keep its logger name, which log filters and alerts key on.
log = logging.getLogger("bridge.worker.root")

_T = TypeVar("_T")
# Registry calls at once; the rest of the records that wait for a schema queue behind them.
_REGISTRY_THREADS = 4


class Decoder:
    """Decodes records on the event loop; fetches missing writer schemas in threads."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        # Schema Registry calls block, so they run in threads, never on the event loop.
        self._registry_calls = asyncio.Semaphore(_REGISTRY_THREADS)

    def decode(self, rec: InputRecord) -> Command:
        """The record's command; any failure but the registry's is a `DecodeError`.

        A writer schema not cached yet raises SchemaNotCached (a RegistryError): the record is
        decoded again when it runs, after `fetch`. A record that made decoding fail in an
        unforeseen way becomes an `internal` dead letter: raised here, it would leave its
        offset tracked but never finished, and the rest of its batch unread, stalling the
        partition.
        """
        try:
            cmd = self.codec.decode_command(rec.value, fetch=False)
        except (DecodeError, RegistryError):
            raise
        except Exception as exc:
            # The record goes to the DLQ, where it can be studied; no traceback, since
            # exception messages may quote its content.
            log.error(
                "unexpected error decoding a record; dead-lettering it",
                extra={
                    "where": where(rec.topic, rec.partition, rec.offset),
                    "error_class": type(exc).__name__,
                },
            )
            raise DecodeError("internal", f"decoding failed ({type(exc).__name__})") from exc
        if rec.key is None:
            raise DecodeError("missing-key", "record has no key; expected the session ID")
        if cmd.session_id.encode() != rec.key:
            raise DecodeError("key-mismatch", "record key differs from sessionId")
        return cmd

    async def fetch(self, rec: InputRecord) -> None:
        """Fetch the record's writer schema from the registry, in a thread."""
        async with self._registry_calls:
            await in_thread(self.codec.fetch_command_schema, rec.value)


async def in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """`fn(*args)` in a daemon thread: unlike an executor's, it does not hold up the
    process's exit while a dependency that never answers keeps it busy."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[_T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="schema-registry", daemon=True).start()
    return await done
