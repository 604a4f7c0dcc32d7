"""confluent-kafka's exception, for the commands that must catch what the Kafka clients raise.

Code outside bridge/kafka/ catches it through this name instead of importing confluent_kafka.
"""

from __future__ import annotations

from confluent_kafka import KafkaException

__all__ = ["KafkaException"]
