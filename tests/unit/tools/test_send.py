"""The JSON form of a command, `talon-bridge send --validate`, and `schemas export`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest

from bridge.avro.schemas import get_schema, load_schemas
from bridge.cli import main
from bridge.commands import (
    AdditionalCost,
    CartItem,
    ReturnCartItems,
    ReturnedCartItem,
    TrackEvent,
    UpdateCustomerSession,
)
from bridge.errors import InvalidLineError
from bridge.tools.send import parse_command
from tests.support.docs import PRODUCERS, producer_examples


def test_documented_examples_cover_every_command_type() -> None:
    commands = [parse_command(line, now_ms=5) for line in producer_examples()]
    assert {c.command_type for c in commands} == {
        "update_customer_session",
        "track_event",
        "return_cart_items",
        "track_event_v3",
    }
    first = commands[0]
    assert first.occurred_at_ms == 1_796_379_300_000  # 2026-12-04T10:15:00Z
    assert first.source == "checkout"
    assert first.payload == UpdateCustomerSession(
        profile_id="customer-42",
        state="open",
        cart_items=[
            CartItem(
                sku="SKU-SHOE-1",
                quantity=1,
                price=89.0,
                name="Running shoes",
                category="shoes",
                attributes={"color": "red", "sizes": [42, 43]},
            )
        ],
        coupon_codes=["SAVE10"],
        additional_costs={"shipping": AdditionalCost(price=4.95)},
        attributes={"channel": "web"},
    )
    # Left out means absent: the close keeps the session's cart and coupons.
    assert commands[1].payload == UpdateCustomerSession(profile_id="customer-42", state="closed")
    assert commands[1].occurred_at_ms == 5
    assert commands[2].payload == TrackEvent(
        type="newsletter_signup",
        profile_id="customer-42",
        attributes={"list": "weekly", "consent": True},
    )
    assert commands[3].payload == ReturnCartItems([ReturnedCartItem(position=0, quantity=1)])


def test_empty_lists_stay_empty() -> None:
    line = (
        '{"commandType": "update_customer_session", "eventId": "e", "sessionId": "s",'
        ' "dry": true, "payload": {"couponCodes": [], "attributes": {}}}'
    )
    cmd = parse_command(line)
    assert cmd.dry is True
    assert cmd.payload == UpdateCustomerSession(coupon_codes=[], attributes={})


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "not a JSON document"),
        ("[1]", "expected a JSON object"),
        ('{"eventId": "e", "sessionId": "s", "payload": {}}', "commandType: expected one of"),
        (
            '{"commandType": "track_event", "sessionId": "s", "payload": {}}',
            "eventId: required",
        ),
        (
            '{"commandType": "track_event", "eventId": "e", "sessionId": "s",'
            ' "payload": {"type": "t"}}',
            "payload.profileId: required",
        ),
        (
            '{"commandType": "update_customer_session", "eventId": "e", "sessionId": "s",'
            ' "payload": {"cuponCodes": []}}',
            "payload: unknown field 'cuponCodes'",
        ),
        (
            '{"commandType": "update_customer_session", "eventId": "e", "sessionId": "s",'
            ' "payload": {"state": "shut"}}',
            "payload.state: expected one of open, closed",
        ),
        (
            '{"commandType": "update_customer_session", "eventId": "e", "sessionId": "s",'
            ' "payload": {"cartItems": [{"sku": "A", "quantity": "2"}]}}',
            "payload.cartItems[0].quantity: expected an integer",
        ),
        (
            '{"commandType": "return_cart_items", "eventId": "e", "sessionId": "s",'
            ' "occurredAt": "yesterday", "payload": {"returnedCartItems": []}}',
            "occurredAt: expected epoch milliseconds",
        ),
        (
            '{"commandType": "return_cart_items", "eventId": "e", "sessionId": 7,'
            ' "payload": {"returnedCartItems": []}}',
            "sessionId: expected a string",
        ),
        (
            '{"commandType": "return_cart_items", "eventId": "", "sessionId": "s",'
            ' "payload": {"returnedCartItems": []}}',
            "eventId: must not be empty",
        ),
        (
            '{"commandType": "track_event", "eventId": "e", "sessionId": "",'
            ' "payload": {"type": "t", "profileId": "p"}}',
            "sessionId: must not be empty",
        ),
    ],
)
def test_invalid_lines_name_the_field(line: str, reason: str) -> None:
    with pytest.raises(InvalidLineError) as caught:
        parse_command(line)
    assert reason in str(caught.value)


def test_validate_reports_line_numbers_and_fails(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = producer_examples()
    path = tmp_path / "fixes.jsonl"
    path.write_text("\n".join([good[0], "", "{oops", good[2], '{"secret-value": 1}']) + "\n")
    assert main(["send", "--validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.strip() == "2 valid command(s)"
    assert err.splitlines()[0].startswith("line 3: not a JSON document")
    assert err.splitlines()[1] == (
        "line 5: commandType: expected one of "
        "track_event, update_customer_session, return_cart_items, track_event_v3"
    )
    assert err.splitlines()[-1] == "2 line(s) failed"
    assert "secret-value" not in err

    assert main(["send", "--validate", "--stop-on-error", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.strip() == "1 valid command(s)"
    assert "line 5" not in err


def test_validate_passes_the_examples(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text("\n".join(producer_examples()) + "\n")
    assert main(["send", "--validate", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "5 valid command(s)"


# --- schemas export ---------------------------------------------------------------------------


def test_export_writes_schemas_fastavro_parses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schemas", "export", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("Command", "EffectsEmitted"):
        text = (tmp_path / f"{name}.avsc").read_text(encoding="utf-8")
        parsed = fastavro.parse_schema(json.loads(text))
        assert parsed["name"] == f"one.talon.bridge.{name}"
        header = f"header=c301{get_schema(name).fingerprint_bytes.hex()}"
        assert f"{tmp_path / name}.avsc  {header}" in out


def test_export_canonical_form_keeps_the_fingerprint(tmp_path: Path) -> None:
    assert main(["schemas", "export", "--canonical", str(tmp_path)]) == 0
    text = (tmp_path / "Command.avsc").read_text(encoding="utf-8").strip()
    assert text == get_schema("Command").canonical_form
    fastavro.parse_schema(json.loads(text))


def test_export_previous_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "previous").mkdir(parents=True)
    command = get_schema("Command").definition
    (bundle / "Command.avsc").write_text(json.dumps(command))
    older = {**command, "fields": [f for f in command["fields"] if f["name"] != "dry"]}
    (bundle / "previous" / "Command.v1.avsc").write_text(json.dumps(older))
    monkeypatch.setattr("bridge.tools.schemas.bundled_schemas", lambda: load_schemas(bundle))
    out = tmp_path / "out"
    assert main(["schemas", "export", "--previous", str(out)]) == 0
    written = json.loads((out / "previous" / "Command.v1.avsc").read_text(encoding="utf-8"))
    assert written == older
    fastavro.parse_schema(written)
    assert main(["schemas", "export", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "previous").exists()


def test_documented_typescript_header_is_the_command_fingerprint() -> None:
    header = get_schema("Command").fingerprint_bytes.hex()
    assert f'Buffer.from("c301{header}", "hex")' in PRODUCERS.read_text(encoding="utf-8")


def test_validate_reads_stdin_by_default(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setattr("sys.stdin", io.StringIO("\n".join(producer_examples()) + "\n"))
    assert main(["send", "--validate"]) == 0
    assert capsys.readouterr().out.strip() == "5 valid command(s)"
