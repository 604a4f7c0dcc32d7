"""Shared type aliases and vocabularies of the bridge."""

from __future__ import annotations

__all__ = ["TP", "Headers"]

# A topic partition, as confluent-kafka's callbacks and the offset tracker name it.
TP = tuple[str, int]

# Kafka record headers as the bridge writes and reads them.
Headers = list[tuple[str, bytes]]
