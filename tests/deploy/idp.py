"""A minimal OpenID Connect identity provider for tests: a JWKS endpoint and a token endpoint
that grants client credentials, issuing RS256-signed JWTs."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class Idp:
    """Grants tokens to one client (HTTP basic auth, `grant_type=client_credentials`)."""

    def __init__(self, client_id: str, client_secret: str, audience: str = "kafka") -> None:
        self.client_id, self.client_secret, self.audience = client_id, client_secret, audience
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex[:8]
        self.issued = 0
        self.refused = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def jwks(self) -> dict[str, Any]:
        n = self.key.public_key().public_numbers()
        key = {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256"}
        return {"keys": [{**key, "n": _uint(n.n), "e": _uint(n.e)}]}

    def token(self) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        claims = {
            "sub": self.client_id,
            "iss": self.url,
            "aud": self.audience,
            "iat": now,
            "exp": now + 3600,
            "scope": "kafka",
        }
        signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        signature = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing + "." + _b64(signature)

    def _granted(self, authorization: str, form: str) -> bool:
        credentials = f"{self.client_id}:{self.client_secret}".encode()
        expected = "Basic " + base64.b64encode(credentials).decode()
        return authorization == expected and "grant_type=client_credentials" in form

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path == "/jwks":
                    self._send(200, idp.jwks())
                else:
                    self._send(404, {})

            def do_POST(self) -> None:
                form = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                if self.path != "/token" or not idp._granted(
                    self.headers.get("Authorization", ""), form
                ):
                    idp.refused += 1
                    self._send(401, {"error": "invalid_client"})
                    return
                idp.issued += 1
                body = {"access_token": idp.token(), "token_type": "bearer", "expires_in": 3600}
                self._send(200, body)

        return Handler

    def __enter__(self) -> Idp:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
