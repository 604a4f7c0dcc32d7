"""Avro schemas and the codecs of commands and effects."""
