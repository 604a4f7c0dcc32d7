"""The librdkafka error codes the bridge reacts to, named once.

librdkafka's local error codes carry a leading underscore in the Python binding; giving them
public names here keeps the `noqa` in one place.
"""

from __future__ import annotations

from confluent_kafka import KafkaError

__all__ = ["PARTITION_EOF"]

# A consumer with `enable.partition.eof` reached the end of a partition: an event, not an error.
PARTITION_EOF = KafkaError._PARTITION_EOF  # noqa: SLF001
