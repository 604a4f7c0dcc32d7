"""Everything that talks to Kafka through confluent-kafka."""
