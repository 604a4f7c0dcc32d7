"""Avro encoding and decoding of commands and effects records, in both wire formats.

Two framings are understood on every decode, whatever the configured encoding:

* Avro single-object encoding: ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint
  of the writer schema, then the Avro body. The fingerprint must belong to a bundled schema
  or to an older version of it (`schemas/avro/previous/`, or `Codec.add_writer_schema`).
* Confluent wire format: ``00``, a 4-byte big-endian Schema Registry id, then the Avro body.
  The writer schema is fetched from the registry once per id and cached. A caller on an
  event loop decodes with ``fetch=False`` and fetches a missing schema in a thread
  (`fetch_command_schema`), so a slow registry never stalls the loop.

Bytes from an older writer are resolved against the bundled schema (the reader), so fields
added since then get their defaults. Records are encoded in the configured format; for
Confluent the bundled schema is registered (or looked up) under the subject the subject name
strategy gives (``<topic>-value`` by default; see `bridge.avro.registry`).

Every way a value can fail to decode raises `bridge.errors.DecodeError` with one of these
reasons, and a message that never quotes the record's content:

=======================  =============================================================
``empty``                no value, or zero bytes
``unknown-magic``        the first bytes are neither framing
``unknown-fingerprint``  single-object fingerprint of no known writer schema
``unknown-schema-id``    the registry has no such id, or no registry is configured
``incompatible-schema``  the writer schema is not a version of the expected record
``truncated``            the bytes end before the record does
``trailing-bytes``       bytes left over after the record
``invalid``              content the schema cannot hold (bad union branch, bad UTF-8,
                         an attribute value that is not JSON, ...)
=======================  =============================================================

A registry that cannot be reached is not a property of the record: that raises
`RegistryError`, so the caller can retry instead of dead-lettering.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from io import BytesIO
from typing import TYPE_CHECKING, Any

import orjson
from fastavro import schemaless_writer

from bridge.avro import framing
from bridge.avro import reader as command_reader
from bridge.avro import writer as effects_writer
from bridge.avro.datum import Writer, parse_wire, readable_writer, unreadable
from bridge.avro.datum import read as read_datum
from bridge.avro.mapping import (
    command_from_avro,
    command_to_avro,
    effects_from_avro,
    effects_to_avro,
)
from bridge.avro.registry import new_client, subject_name
from bridge.avro.schemas import (
    COMMAND,
    EFFECTS_EMITTED,
    AvroSchema,
    SchemaSet,
    bundled_schemas,
    make_schema,
)
from bridge.commands import Command, EffectsEmitted
from bridge.errors import ConfigError, DecodeError, EncodeError, RegistryError, SchemaNotCached
from bridge.settings import ENV_PREFIX, Encoding, KafkaSettings, SubjectStrategy

if TYPE_CHECKING:
    from bridge.kafka.registry_client import SchemaRegistryClient

__all__ = ["Codec", "EncodeError", "RegistryError", "SchemaNotCached"]

# An id the registry did not know is asked about again only after this long, so a burst of
# records with a bad id does not become a burst of registry calls.
_MISSING_ID_TTL_S = 30.0
_MISSING_ID_MAX = 1024


@dataclass(slots=True)
class _Record:
    """Everything the codec keeps for one record type (Command or EffectsEmitted)."""

    current: AvroSchema
    wire: dict[str, Any]
    same: Writer
    by_fingerprint: dict[bytes, Writer] = field(default_factory=dict)
    by_schema_id: dict[int, Writer] = field(default_factory=dict)
    prefix_by_topic: dict[str, bytes] = field(default_factory=dict)


class Codec:
    """Encodes and decodes `Command` and `EffectsEmitted` records.

    Args:
        encoding: Framing for encoded records: ``single-object`` or ``confluent``.
        registry: The Schema Registry client; the caller keeps ownership of it
            (`from_settings` makes one the codec closes).
        auto_register: For ``confluent``, register the bundled schema under its subject on
            first use; when false it must already be registered.
        schemas: Schemas to use instead of the bundled ones.
        subject_strategy: How ``confluent`` subjects are named: ``topic``
            (``<topic>-value``), ``record`` (the record's full name) or ``topic-record``.

    Raises:
        ConfigError: ``confluent`` encoding without a registry.
    """

    def __init__(
        self,
        encoding: Encoding = "single-object",
        *,
        registry: SchemaRegistryClient | None = None,
        auto_register: bool = True,
        schemas: SchemaSet | None = None,
        subject_strategy: SubjectStrategy = "topic",
    ) -> None:
        if encoding not in ("single-object", "confluent"):
            raise ConfigError(f"{ENV_PREFIX}ENCODING", f"unknown encoding {encoding!r}")
        self._owns_registry = False
        if encoding == "confluent" and registry is None:
            raise ConfigError(
                f"{ENV_PREFIX}SCHEMA_REGISTRY_URL", "is required when the encoding is confluent"
            )
        self._encoding: Encoding = encoding
        self._registry = registry
        self._auto_register = auto_register
        self._subject_strategy: SubjectStrategy = subject_strategy
        self._missing_ids: dict[int, float] = {}
        schemas = bundled_schemas() if schemas is None else schemas
        self._command = self._record(schemas.get(COMMAND))
        self._effects = self._record(schemas.get(EFFECTS_EMITTED))
        # The hand-written reader and writer only for the exact schemas they follow.
        self._read_command = (
            partial(command_reader.read, carts=command_reader.Carts())
            if self._command.current.fingerprint == command_reader.FINGERPRINT
            else None
        )
        self._write_effects = (
            effects_writer.write
            if self._effects.current.fingerprint == effects_writer.FINGERPRINT
            else None
        )
        for older in schemas.previous:
            self.add_writer_schema(older.definition)

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> Codec:
        """A codec for `settings.encoding`, with the registry the settings describe (its
        URL, timeout, credentials and CA bundle) and their subject name strategy."""
        registry = new_client(settings) if settings.schema_registry_url else None
        codec = cls(
            settings.encoding,
            registry=registry,
            subject_strategy=settings.schema_registry_subject_strategy,
        )
        codec._owns_registry = registry is not None
        return codec

    @property
    def encoding(self) -> Encoding:
        """The framing used by the encode methods."""
        return self._encoding

    def close(self) -> None:
        """Close the registry client if this codec created it."""
        if self._owns_registry and self._registry is not None:
            self._registry.close()

    def add_writer_schema(self, definition: Mapping[str, Any] | str) -> int:
        """Accept single-object records written with an older version of a bundled schema.

        Args:
            definition: The older schema, as JSON text or decoded JSON.

        Returns:
            Its CRC-64-AVRO fingerprint.

        Raises:
            ValueError: Not a valid schema, or not a version of a bundled record.
        """
        schema = make_schema(definition)
        for record in (self._command, self._effects):
            if record.current.full_name == schema.full_name:
                record.by_fingerprint[schema.fingerprint_bytes] = self._writer(record, schema)
                return schema.fingerprint
        raise ValueError(f"{schema.full_name} is not a bundled record")

    def subject(self, name: str, topic: str) -> str:
        """The registry subject of bundled schema `name` on `topic`, by the subject name
        strategy."""
        record = self._command if name == self._command.current.name else self._effects
        return subject_name(self._subject_strategy, topic, record.current.full_name)

    def registered_id(self, name: str, topic: str) -> int | None:
        """The registry id of bundled schema `name` under its subject on `topic`, registering
        nothing.

        Returns None when the subject does not hold that schema.

        Raises:
            RegistryError: No registry is configured, or it failed the request.
        """
        from bridge.kafka.registry_client import Schema

        if self._registry is None:
            raise RegistryError("no Schema Registry is configured")
        record = self._command if name == self._command.current.name else self._effects
        subject = self.subject(name, topic)
        try:
            found = self._registry.lookup_schema(subject, Schema(record.current.to_json(), "AVRO"))
        except Exception as exc:
            error = _registry_failure(subject, exc)
            if error.status == 404:
                return None
            raise error from exc
        return found.schema_id

    # --- commands ---------------------------------------------------------------------------

    def decode_command(self, data: bytes | None, *, fetch: bool = True) -> Command:
        """Decode a command value in either wire format.

        Args:
            data: The record's value.
            fetch: Fetch a writer schema the codec has not cached yet from the registry (a
                blocking HTTP call); when false, raise `SchemaNotCached` instead.

        Raises:
            DecodeError: The value is not a command this codec can read.
            RegistryError: The writer schema had to be fetched and the registry failed.
            SchemaNotCached: `fetch` is false and the writer schema is not cached.
        """
        try:
            return self._decode_command(data, fetch)
        except (DecodeError, RegistryError):
            raise
        except Exception as exc:
            raise unreadable(self._command.current.name, exc) from exc

    def _decode_command(self, data: bytes | None, fetch: bool) -> Command:
        writer, offset = self._locate(self._command, data, fetch=fetch)
        assert data is not None  # noqa: S101 - _locate refuses empty values
        if writer is self._command.same and self._read_command is not None:
            try:
                return self._read_command(data, offset)
            except command_reader.Unreadable:
                pass  # fastavro reads it again and names what is wrong
        r = read_datum(self._command.current.name, data, offset, writer)
        try:
            return command_from_avro(r)
        except orjson.JSONDecodeError as exc:
            raise DecodeError("invalid", "an attribute value is not a JSON document") from exc

    def fetch_command_schema(self, data: bytes | None) -> None:
        """Fetch and cache the writer schema a command value names, if it is not cached.

        Blocks on the registry for up to its timeout: call it from a thread.

        Raises:
            DecodeError: The framing is bad, or the registry has no usable schema for it.
            RegistryError: The registry failed.
        """
        self._locate(self._command, data)

    def prepare_effects(self, topic: str) -> None:
        """Register (or look up) the effects schema for `topic` now, so that encoding
        effects for it never waits on the registry. Blocks: call it from a thread.

        Raises:
            RegistryError: The schema could not be registered or looked up.
        """
        self._prefix(self._effects, topic)

    def encode_command(self, cmd: Command, topic: str) -> bytes:
        """Encode a command for `topic` in the configured format.

        Raises:
            EncodeError: A value does not fit the schema.
            RegistryError: The schema could not be registered or looked up.
        """
        try:
            datum = command_to_avro(cmd)
        except TypeError as exc:  # orjson: a value that has no JSON form
            raise EncodeError(f"Command {cmd.event_id}: attribute value: {exc}") from exc
        return self._encode(self._command, datum, topic)

    # --- effects ----------------------------------------------------------------------------

    def decode_effects(self, data: bytes | None) -> EffectsEmitted:
        """Decode an effects record in either wire format.

        Raises:
            DecodeError: The value is not an effects record this codec can read.
            RegistryError: The writer schema had to be fetched and the registry failed.
        """
        try:
            return effects_from_avro(self._decode(self._effects, data))
        except (DecodeError, RegistryError):
            raise
        except Exception as exc:
            raise unreadable(self._effects.current.name, exc) from exc

    def encode_effects(self, rec: EffectsEmitted, topic: str) -> bytes:
        """Encode an effects record for `topic` in the configured format.

        Raises:
            EncodeError: A value does not fit the schema.
            RegistryError: The schema could not be registered or looked up.
        """
        if self._write_effects is None:
            return self._encode(self._effects, effects_to_avro(rec), topic)
        try:
            body = self._write_effects(rec)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise EncodeError(f"EffectsEmitted does not fit its schema: {exc}") from exc
        return self._prefix(self._effects, topic) + body

    # --- framing ----------------------------------------------------------------------------

    def _record(self, current: AvroSchema) -> _Record:
        wire = parse_wire(current.definition)
        same = Writer(wire, None)
        record = _Record(current=current, wire=wire, same=same)
        record.by_fingerprint[current.fingerprint_bytes] = same
        return record

    @staticmethod
    def _writer(record: _Record, schema: AvroSchema) -> Writer:
        if schema.fingerprint == record.current.fingerprint:
            return record.same
        return Writer(parse_wire(schema.definition), record.wire)

    def _decode(self, record: _Record, data: bytes | None) -> dict[str, Any]:
        writer, offset = self._locate(record, data)
        assert data is not None  # noqa: S101 - _locate refuses empty values
        return read_datum(record.current.name, data, offset, writer)

    def _locate(
        self, record: _Record, data: bytes | None, *, fetch: bool = True
    ) -> tuple[Writer, int]:
        """The writer schema of `data`, from its framing, and where its datum starts."""
        name = record.current.name
        key, offset = framing.header(name, data)
        if isinstance(key, bytes):
            found = record.by_fingerprint.get(key)
            if found is None:
                raise DecodeError(
                    "unknown-fingerprint",
                    f"no known {name} schema has fingerprint "
                    f"0x{int.from_bytes(key, 'little'):016x}",
                )
            return found, offset
        cached = record.by_schema_id.get(key)
        if cached is None and not fetch and self._registry is not None:
            raise SchemaNotCached(key)
        return (cached if cached is not None else self._fetch_writer(record, key)), offset

    def _fetch_writer(self, record: _Record, schema_id: int) -> Writer:
        name = record.current.name
        if self._registry is None:
            raise DecodeError(
                "unknown-schema-id",
                f"{name} has Confluent framing (schema id {schema_id}) but no registry is set",
            )
        missing_until = self._missing_ids.get(schema_id)
        if missing_until is not None and time.monotonic() < missing_until:
            raise DecodeError("unknown-schema-id", f"schema id {schema_id} is not in the registry")
        try:
            registered = self._registry.get_schema(schema_id)
        except Exception as exc:
            error = _registry_failure(f"fetching schema id {schema_id} failed", exc)
            if error.status != 404:
                raise error from exc
            if len(self._missing_ids) >= _MISSING_ID_MAX:
                self._missing_ids.clear()
            self._missing_ids[schema_id] = time.monotonic() + _MISSING_ID_TTL_S
            raise DecodeError(
                "unknown-schema-id", f"schema id {schema_id} is not in the registry"
            ) from exc
        schema = readable_writer(
            schema_id,
            registered.schema_type,
            bool(registered.references),
            registered.schema_str,
            record.current.full_name,
        )
        writer = self._writer(record, schema)
        record.by_schema_id[schema_id] = writer
        return writer

    def _prefix(self, record: _Record, topic: str) -> bytes:
        if self._encoding == "single-object":
            return framing.single_object_prefix(record.current.fingerprint_bytes)
        found = record.prefix_by_topic.get(topic)
        return found if found is not None else self._register(record, topic)

    def _encode(self, record: _Record, datum: dict[str, Any], topic: str) -> bytes:
        out = BytesIO()
        out.write(self._prefix(record, topic))
        try:
            schemaless_writer(out, record.wire, datum)
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
            raise EncodeError(f"{record.current.name} does not fit its schema: {exc}") from exc
        return out.getvalue()

    def _register(self, record: _Record, topic: str) -> bytes:
        from bridge.kafka.registry_client import Schema

        assert self._registry is not None  # noqa: S101 - guaranteed by __init__ for confluent
        subject = subject_name(self._subject_strategy, topic, record.current.full_name)
        schema = Schema(record.current.to_json(), "AVRO")
        try:
            if self._auto_register:
                schema_id = self._registry.register_schema(subject, schema)
            else:
                found = self._registry.lookup_schema(subject, schema).schema_id
                if found is None:
                    raise RegistryError(f"{subject}: the registry returned no schema id")
                schema_id = found
        except RegistryError:
            raise
        except Exception as exc:
            raise _registry_failure(subject, exc) from exc
        prefix = framing.confluent_prefix(schema_id)
        record.prefix_by_topic[topic] = prefix
        # The id names our own schema: records written with it decode without a fetch.
        record.by_schema_id[schema_id] = record.same
        return prefix


def _registry_failure(what: str, exc: Exception) -> RegistryError:
    """The RegistryError for a registry call that failed with `exc`."""
    from bridge.kafka.registry_client import SchemaRegistryError

    if isinstance(exc, SchemaRegistryError):
        return RegistryError(f"{what}: {exc}", status=exc.http_status_code)
    # A transport failure of the registry's HTTP client.
    return RegistryError(f"{what}: {exc!r}")
