"""Free ports for the processes the tools start: outside the kernel's ephemeral range."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bridge.tools import ports


def test_ports_come_from_below_the_ephemeral_range_and_are_bindable() -> None:
    first = ports._first_ephemeral()
    if first - ports._LOWEST < 1_000:
        pytest.skip("no room below this kernel's ephemeral range")
    for _ in range(20):
        port = ports.free_port()
        assert ports._LOWEST <= port < first
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_taken_port_is_never_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        monkeypatch.setattr(ports, "_LOWEST", busy)
        monkeypatch.setattr(ports, "_first_ephemeral", lambda: busy + 1_000)
        picks = {ports.free_port() for _ in range(50)}
    assert busy not in picks


def test_without_a_readable_range_the_kernel_picks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ports, "_EPHEMERAL_RANGE", tmp_path / "missing")
    port = ports.free_port()
    assert 0 < port < 65_536
