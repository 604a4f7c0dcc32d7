"""`talon-bridge replay` arguments: help, usage errors (exit 2), the selection's group name."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from bridge.cli import build_parser, main
from bridge.errors import SelectionError
from bridge.replay.cli import EXIT_USAGE, build_selection, default_group
from bridge.replay.selection import OffsetRange

FLAGS = [
    "--from",
    "--to",
    "--since",
    "--until",
    "--session",
    "--sessions-file",
    "--error-class",
    "--reason",
    "--status",
    "--command-type",
    "--header",
    "--offsets",
    "--dry-run",
    "--json",
    "--discard",
    "--yes",
    "--force",
    "--max-replays",
    "--rate",
    "--group",
]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser("replay").parse_args(["replay", *argv])


def test_help_documents_every_flag_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in FLAGS:
        assert flag in text, flag
    assert "exit status" in text and "2 usage" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--offsets", "x"], "--offsets 'x'"),
        (["--offsets", "1:9-2"], "ends before it starts"),
        (["--since", "yesterday"], "'yesterday' is neither"),
        (["--since", "1h", "--until", "2h"], "--since is later than --until"),
        (["--status", "abc"], "--status 'abc'"),
        (["--header", "novalue"], "NAME=VALUE"),
        (["--max-replays", "0"], "--max-replays"),
        (["--rate", "0"], "--rate"),
        (["--sessions-file", "/nonexistent/sessions.txt"], "--sessions-file"),
    ],
)
def test_malformed_filters_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", *argv]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "talon-bridge replay: error:" in err
    assert message in err


def test_unknown_command_type_is_an_argparse_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--command-type", "close_session"])
    assert exc.value.code == EXIT_USAGE
    assert "close_session" in capsys.readouterr().err


def test_discard_without_a_terminal_needs_yes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["replay", "--session", "s1", "--discard"]) == EXIT_USAGE
    assert "--yes" in capsys.readouterr().err


def test_sessions_file_lines(tmp_path: Path) -> None:
    f = tmp_path / "sessions.txt"
    f.write_text("# sessions to retry\ns-1\n\n  s-2  \ns-1\n", encoding="utf-8")
    selection, identity = build_selection(parse("--sessions-file", str(f), "--session", "s-3"), 0)
    assert selection.sessions == {"s-1", "s-2", "s-3"}
    assert identity["sessions"] == ["s-1", "s-2", "s-3"]
    (tmp_path / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(SelectionError, match="no session IDs"):
        build_selection(parse("--sessions-file", str(tmp_path / "empty.txt")), 0)


def test_application_reaches_the_selection_and_only_then_its_identity() -> None:
    selection, identity = build_selection(parse("--application", "fr", "--application", "de"), 0)
    assert selection.applications == {"de", "fr"}
    assert identity["applications"] == ["de", "fr"]
    _, plain = build_selection(parse("--session", "s-1"), 0)
    assert "applications" not in plain, "earlier selections keep their progress groups"


def test_every_filter_reaches_the_selection() -> None:
    args = parse(
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "1h",
        "--session",
        "a",
        "--error-class",
        "ServerError",
        "--reason",
        "retries-exhausted",
        "--status",
        "5xx",
        "--command-type",
        "track_event",
        "--header",
        "tenant=eu",
        "--offsets",
        "2:10-20",
    )
    now = 1_800_000_000_000
    s, _ = build_selection(args, now)
    assert s.since_ms == 1_767_225_600_000
    assert s.until_ms == now - 3_600_000
    assert s.sessions == {"a"}
    assert s.error_classes == {"ServerError"}
    assert s.reasons == {"retries-exhausted"}
    assert s.statuses == {"5xx"}
    assert s.command_types == {"track_event"}
    assert s.headers == (("tenant", "eu"),)
    assert s.offsets == (OffsetRange(2, 10, 20),)


def test_the_group_is_named_after_the_selection() -> None:
    def group(*argv: str, dlq: str = "dlq") -> str:
        return default_group(dlq, build_selection(parse(*argv), 0)[1])

    base = group("--reason", "permanent", "--session", "a", "--session", "b")
    assert base.startswith("talon-bridge-replay-dlq-")
    assert base == group("--session", "b", "--reason", "PERMANENT", "--session", "a")
    assert base == group("--reason", "permanent", "--session", "a", "--session", "b", "--rate", "5")
    assert base == group(
        "--reason", "permanent", "--session", "a", "--session", "b", "--dry-run", "--json"
    ), "listing first shows exactly what the real run will do"
    for other in (
        group("--reason", "permanent", "--session", "a"),
        group("--reason", "permanent", "--session", "a", "--session", "b", "--to", "t"),
        group("--reason", "permanent", "--session", "a", "--session", "b", "--force"),
        group("--reason", "permanent", "--session", "a", "--session", "b", "--discard"),
        group("--reason", "permanent", "--session", "a", "--session", "b", "--max-replays", "5"),
        group("--reason", "permanent", "--session", "a", "--session", "b", dlq="other"),
    ):
        assert other != base
