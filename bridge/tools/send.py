"""`talon-bridge send`: produce commands written as JSON lines, for manual fixes and scripts.

The JSON form of a command (documented in docs/producers.md) is the Avro record with its
wire field names, plus ``commandType`` to pick the payload, with attribute values as plain
JSON instead of JSON text, and with optional fields left out. Each line is checked against
the bundled `Command` schema, written as Avro and read back with the worker's codec, then
produced in the configured encoding with the session ID as the key. With ``--route-by
profile`` the partition is that of the session's customer profile (`bridge.routing`).

An invalid line is reported with its number and skipped; the others are still sent, in
order. The exit status is 1 if any line failed.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import IO, Any

import orjson
from fastavro import schemaless_writer

from bridge.avro.codec import Codec
from bridge.avro.schemas import COMMAND, get_schema
from bridge.commands import Command
from bridge.errors import BridgeError, InvalidLineError

__all__ = ["HELP", "configure", "parse_command", "run"]

HELP = "produce commands written as JSON lines (stdin or a file) as Avro, keyed by session"

# commandType -> the payload record it selects
PAYLOADS = {
    "track_event": "one.talon.bridge.TrackEvent",
    "update_customer_session": "one.talon.bridge.UpdateCustomerSession",
    "return_cart_items": "one.talon.bridge.ReturnCartItems",
    "track_event_v3": "one.talon.bridge.TrackEventV3",
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_INT_RANGE = {"int": 2**31, "long": 2**63}


def parse_command(line: str | bytes, *, now_ms: int | None = None) -> Command:
    """One command from its JSON form, read back through the worker's codec.

    Raises:
        InvalidLineError: Not JSON, or not a command the bundled schema and the codec accept.
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidLineError(f"not a JSON document ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise InvalidLineError("expected a JSON object")
    obj = dict(obj)
    kind = obj.pop("commandType", None)
    if kind not in PAYLOADS:
        raise InvalidLineError(f"commandType: expected one of {', '.join(PAYLOADS)}")
    if "occurredAt" not in obj:
        obj["occurredAt"] = int(time.time() * 1000) if now_ms is None else now_ms
    else:
        obj["occurredAt"] = _timestamp_ms(obj["occurredAt"])
    schema = get_schema(COMMAND)
    datum = _Converter(schema.parsed, PAYLOADS[kind]).value(schema.parsed, obj, "")
    out = BytesIO()
    out.write(b"\xc3\x01" + schema.fingerprint_bytes)
    try:
        schemaless_writer(out, schema.parsed, datum)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        raise InvalidLineError(f"does not fit the Command schema: {type(exc).__name__}") from None
    try:
        # Read back exactly as the worker will: what passes here, the worker accepts.
        cmd = _reader().decode_command(out.getvalue())
    except BridgeError as exc:
        raise InvalidLineError(str(exc)) from None
    # Empty IDs fit the schema but not the bridge: no idempotency key, no usable record key.
    for name, value in (("eventId", cmd.event_id), ("sessionId", cmd.session_id)):
        if not value:
            raise InvalidLineError(f"{name}: must not be empty")
    return cmd


@functools.cache
def _reader() -> Codec:
    return Codec()


def _timestamp_ms(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return int(parsed.timestamp() * 1000)
    raise InvalidLineError(
        "occurredAt: expected epoch milliseconds or an ISO 8601 time with offset"
    )


class _Converter:
    """Walks the JSON form alongside the schema, building the Avro datum."""

    def __init__(self, parsed: Mapping[str, Any], payload: str) -> None:
        self._named: Mapping[str, Any] = parsed.get("__named_schemas", {})
        self._payload = payload

    def value(self, schema: Any, value: Any, path: str) -> Any:
        if isinstance(schema, list):
            return self._union(schema, value, path)
        if isinstance(schema, str):
            if schema not in _PRIMITIVES:
                return self.value(self._named[schema], value, path)
            return _primitive(schema, value, path)
        kind = schema["type"]
        if kind == "record":
            return self._record(schema, value, path)
        if kind == "enum":
            if value not in schema["symbols"]:
                raise InvalidLineError(f"{path}: expected one of {', '.join(schema['symbols'])}")
            return value
        if kind == "array":
            if not isinstance(value, list):
                raise InvalidLineError(f"{path}: expected an array")
            return [self.value(schema["items"], v, f"{path}[{i}]") for i, v in enumerate(value)]
        if kind == "map":
            if not isinstance(value, dict):
                raise InvalidLineError(f"{path}: expected an object")
            if schema["values"] == "string":
                # Every string map of the contract holds attributes: one JSON document each.
                return {k: orjson.dumps(v).decode() for k, v in value.items()}
            return {k: self.value(schema["values"], v, f"{path}.{k}") for k, v in value.items()}
        return self.value(kind, value, path)  # a primitive with a logical type

    def _record(self, schema: Mapping[str, Any], value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise InvalidLineError(f"{path or 'line'}: expected an object")
        fields = {f["name"]: f for f in schema["fields"]}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise InvalidLineError(f"{path or 'line'}: unknown field {unknown[0]!r}")
        out: dict[str, Any] = {}
        for name, field in fields.items():
            where = f"{path}.{name}" if path else name
            if name in value:
                out[name] = self.value(field["type"], value[name], where)
            elif "default" in field:
                out[name] = field["default"]
            else:
                raise InvalidLineError(f"{where}: required")
        return out

    def _union(self, branches: list[Any], value: Any, path: str) -> Any:
        if value is None and "null" in branches:
            return None
        named = [b for b in branches if isinstance(b, dict) and b.get("type") == "record"]
        if len(named) > 1:  # the payload union: commandType chose the branch
            chosen = next(b for b in named if b["name"] == self._payload)
            return (self._payload, self._record(chosen, value, path))
        others = [b for b in branches if b != "null"]
        if len(others) != 1:
            raise InvalidLineError(f"{path}: unsupported union")
        return self.value(others[0], value, path)


def _primitive(kind: str, value: Any, path: str) -> Any:
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind in _INT_RANGE and isinstance(value, int) and not isinstance(value, bool):
        if -_INT_RANGE[kind] <= value < _INT_RANGE[kind]:
            return value
        raise InvalidLineError(f"{path}: out of range for an Avro {kind}")
    if kind in ("float", "double") and isinstance(value, int | float):
        if not isinstance(value, bool):
            return float(value)
    if kind == "null" and value is None:
        return None
    names = {"string": "a string", "boolean": "true or false", "null": "null"}
    names |= {"int": "an integer", "long": "an integer"}
    raise InvalidLineError(f"{path}: expected {names.get(kind, 'a number')}")


def read_commands(
    lines: Iterable[str], failures: list[tuple[int, str]], *, stop_on_error: bool = False
) -> Iterator[Command]:
    """The commands of `lines` (blank lines skipped); bad lines go to `failures`."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield parse_command(line)
        except InvalidLineError as exc:
            failures.append((number, str(exc)))
            if stop_on_error:
                return


# --- the subcommand ---------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", nargs="?", default="-", help="JSON lines to send (default: - for stdin)"
    )
    parser.add_argument("--topic", default=None, help="default: first of BRIDGE_INPUT_TOPICS")
    parser.add_argument("--validate", action="store_true", help="check every line and send nothing")
    parser.add_argument(
        "--stop-on-error",
        action="store_true",
        help="stop at the first invalid line (lines before it are still sent)",
    )
    from bridge.tools.produce import add_route_option

    add_route_option(parser)
    parser.epilog = (
        "The JSON form of a command is documented in docs/producers.md. Invalid lines are "
        "reported as `line N: reason` on stderr and skipped; the exit status is 1 if any failed."
    )


def run(args: argparse.Namespace) -> int:
    failures: list[tuple[int, str]] = []
    source: IO[str] = sys.stdin if args.file == "-" else Path(args.file).open(encoding="utf-8")
    try:
        commands = read_commands(source, failures, stop_on_error=args.stop_on_error)
        if args.validate:
            count = sum(1 for _ in commands)
            print(f"{count} valid command(s)")
        else:
            count, topic, unknown = _send(args.topic, commands, args.route_by)
            print(f"sent {count} command(s) to {topic}")
            if unknown:
                print(
                    f"{unknown} session(s) named no profile in their first command and were"
                    " routed by session ID",
                    file=sys.stderr,
                )
    finally:
        if source is not sys.stdin:
            source.close()
    for number, reason in failures:
        print(f"line {number}: {reason}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} line(s) failed", file=sys.stderr)
    return 1 if failures else 0


def _send(
    topic: str | None, commands: Iterator[Command], route_by: str = "session"
) -> tuple[int, str, int]:
    """How many commands were sent, where, and how many sessions had no profile to route by."""
    from bridge.environment import load, warn_unknown
    from bridge.logs import configure_logging
    from bridge.routing import ProfileRouter
    from bridge.settings import KafkaSettings
    from bridge.tools.produce import produce_commands

    settings = load(KafkaSettings)
    configure_logging(settings.log_level, settings.log_format)
    warn_unknown()
    codec = Codec.from_settings(settings)
    target = topic or settings.input_topics[0]
    router = ProfileRouter() if route_by == "profile" else None
    try:
        sent = produce_commands(
            settings.librdkafka_common(),
            target,
            commands,
            encode=codec.encode_command,
            partitioner=router.partition if router is not None else None,
        )
    finally:
        codec.close()
    return sent, target, router.unknown if router is not None else 0
