"""Picking a free local TCP port, for the processes the tools and tests start.

Ports come from below the kernel's ephemeral range when there is room: a port the kernel may hand
to any outgoing connection (a client's local port) can be taken between the pick and the bind.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000
_TRIES = 200
_PICK = random.SystemRandom()  # not the global generator, which tests may seed


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that was free a moment ago, outside the ephemeral range where possible."""
    first_ephemeral = _first_ephemeral()
    if first_ephemeral - _LOWEST >= 1_000:
        for _ in range(_TRIES):
            port = _PICK.randrange(_LOWEST, first_ephemeral)
            if _bindable(host, port):
                return port
    return _any_port(host)


def _first_ephemeral() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _bindable(host: str, port: int) -> bool:
    # Checked on every address: the worker's metrics endpoint listens on 0.0.0.0.
    for address in {host, "0.0.0.0"}:  # noqa: S104 - a probe, closed at once
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def _any_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
