"""Which librdkafka properties the plain pass-through settings refuse.

`BRIDGE_KAFKA_CONFIG` and the producer's and consumer's own pass-throughs are plain
configuration (a ConfigMap, `repr`), so a property whose value is a credential goes in a
secret setting instead, and the static member id has a typed setting of its own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_pass_through", "is_secret_property"]

# librdkafka properties whose values are credentials (plus Java's JAAS line, which embeds them).
_SECRET_SUFFIXES = (".password", ".secret", ".passphrase", ".key.pem")
_SECRET_NAMES = frozenset({"sasl.jaas.config"})
# Secrets with a setting of their own, named without the settings' prefix.
_TYPED_SECRETS = {
    "sasl.password": "KAFKA_SASL_PASSWORD",
    "ssl.key.password": "KAFKA_SSL_KEY_PASSWORD",
    "sasl.oauthbearer.client.secret": "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
}


def is_secret_property(name: str) -> bool:
    """Whether librdkafka property `name` holds a credential (e.g. ``sasl.password``,
    ``sasl.oauthbearer.client.secret``, ``ssl.key.pem``)."""
    lowered = name.strip().lower()
    return lowered.endswith(_SECRET_SUFFIXES) or lowered in _SECRET_NAMES


def check_pass_through(value: dict[str, Any], prefix: str) -> dict[str, Any]:
    """`value`, a pass-through's properties; ValueError names a property it may not hold and
    the setting (`prefix` and its name) to use instead."""
    for name in sorted(value):
        if is_secret_property(name):
            where = prefix + _TYPED_SECRETS.get(name, "KAFKA_SECRET_CONFIG")
            raise ValueError(f"{name} is a secret: set it in {where} (a secret file) instead")
    if "group.instance.id" in value:
        raise ValueError(f"group.instance.id is set with {prefix}GROUP_INSTANCE_ID")
    return value
