"""The two framings of an Avro value: what comes before the datum, and what it names.

* Avro single-object encoding: ``C3 01``, then the 8-byte little-endian CRC-64-AVRO
  fingerprint of the writer schema.
* Confluent wire format: ``00``, then a 4-byte big-endian Schema Registry id.
"""

from __future__ import annotations

from typing import Final

from bridge.errors import DecodeError

__all__ = ["confluent_prefix", "header", "single_object_prefix"]

_SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
_SINGLE_OBJECT_HEADER: Final = 10
_CONFLUENT_MAGIC: Final = 0
_CONFLUENT_HEADER: Final = 5


def header(name: str, data: bytes | None) -> tuple[bytes | int, int]:
    """How `data` names its writer schema, and where its datum starts.

    The name is the fingerprint's 8 bytes for single-object framing, or the registry id (an
    int) for Confluent framing. `name` is the record's, for messages.

    Raises:
        DecodeError: ``empty``, ``unknown-magic`` or ``truncated``.
    """
    if not data:
        raise DecodeError("empty", f"{name} value is empty")
    magic = data[0]
    if magic == _SINGLE_OBJECT_MAGIC[0]:
        if len(data) > 1 and data[1] != _SINGLE_OBJECT_MAGIC[1]:
            raise DecodeError("unknown-magic", "single-object marker is not C3 01")
        if len(data) < _SINGLE_OBJECT_HEADER:
            raise DecodeError("truncated", "shorter than a single-object header")
        return data[2:_SINGLE_OBJECT_HEADER], _SINGLE_OBJECT_HEADER
    if magic == _CONFLUENT_MAGIC:
        if len(data) < _CONFLUENT_HEADER:
            raise DecodeError("truncated", "shorter than a Confluent wire-format header")
        return int.from_bytes(data[1:_CONFLUENT_HEADER], "big"), _CONFLUENT_HEADER
    raise DecodeError(
        "unknown-magic", f"first byte 0x{magic:02x} starts neither supported wire format"
    )


def single_object_prefix(fingerprint: bytes) -> bytes:
    """The single-object header naming the schema with this 8-byte fingerprint."""
    return _SINGLE_OBJECT_MAGIC + fingerprint


def confluent_prefix(schema_id: int) -> bytes:
    """The Confluent wire-format header naming this registry id."""
    return bytes([_CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")
