"""Extra listeners for the local broker, next to its plaintext one: `SecureListener` (SASL_SSL:
SCRAM users created when the storage is formatted, PEM key and trust stores) and `OidcListener`
(SASL/OAUTHBEARER tokens validated against an identity provider's JWKS)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = ["Listener", "OidcListener", "SecureListener"]


class Listener(Protocol):
    """An extra listener: its name (also its `listener.name.<name>.` prefix), security protocol,
    broker properties, storage-format arguments and JVM options."""

    @property
    def name(self) -> str: ...

    @property
    def protocol(self) -> str: ...

    def properties(self) -> dict[str, str]: ...

    def format_args(self) -> list[str]: ...

    def jvm_args(self) -> list[str]: ...


@dataclass(frozen=True)
class SecureListener:
    """A SASL_SSL listener: SCRAM-SHA-512 users over TLS, client certificates required."""

    name = "SASL_SSL"
    protocol = "SASL_SSL"
    keystore: Path  # PEM: the broker's private key (unencrypted PKCS#8) and certificate chain
    truststore: Path  # PEM: the CA that client certificates are checked against
    scram_users: Mapping[str, str] = field(default_factory=dict)  # name -> password
    mechanism: str = "SCRAM-SHA-512"

    def properties(self) -> dict[str, str]:
        prefix = "listener.name.sasl_ssl."
        return {
            "sasl.enabled.mechanisms": self.mechanism,
            f"{prefix}{self.mechanism.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            f"{prefix}ssl.keystore.type": "PEM",
            f"{prefix}ssl.keystore.location": str(self.keystore),
            f"{prefix}ssl.truststore.type": "PEM",
            f"{prefix}ssl.truststore.location": str(self.truststore),
            f"{prefix}ssl.client.auth": "required",
        }

    def format_args(self) -> list[str]:
        args: list[str] = []
        for name, password in self.scram_users.items():
            args += ["--add-scram", f"{self.mechanism}=[name={name},password={password}]"]
        return args

    def jvm_args(self) -> list[str]:
        return []


@dataclass(frozen=True)
class OidcListener:
    """A SASL_PLAINTEXT listener taking OAUTHBEARER tokens, checked against a JWKS endpoint."""

    name = "OIDC"
    protocol = "SASL_PLAINTEXT"
    jwks_url: str
    audience: str = "kafka"

    def properties(self) -> dict[str, str]:
        prefix = "listener.name.oidc."
        return {
            f"{prefix}sasl.enabled.mechanisms": "OAUTHBEARER",
            f"{prefix}oauthbearer.sasl.jaas.config": (
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;"
            ),
            f"{prefix}oauthbearer.sasl.server.callback.handler.class": (
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
            ),
            "sasl.oauthbearer.jwks.endpoint.url": self.jwks_url,
            "sasl.oauthbearer.expected.audience": self.audience,
        }

    def format_args(self) -> list[str]:
        return []

    def jvm_args(self) -> list[str]:
        # The broker fetches only URLs it is told to trust.
        return [f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={self.jwks_url}"]
