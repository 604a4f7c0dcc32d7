"""confluent-kafka's error types, for the commands that must catch what the Kafka clients raise.

Code outside bridge/kafka/ catches them through these names instead of importing confluent_kafka
(`KafkaError` is what an exception and a delivery report carry).
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

__all__ = ["KafkaError", "KafkaException"]
