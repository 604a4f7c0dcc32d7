"""Dead-letter headers: the Kafka Connect vocabulary plus ours, original headers kept."""

from __future__ import annotations

from bridge import dlq
from bridge.dlq import DeadLetter, dead_letter_headers
from bridge.types import Headers


def _headers(original: Headers | None, letter: DeadLetter) -> Headers:
    """`dead_letter_headers` of a record at t/0/0."""
    return dead_letter_headers(
        original, letter, topic="t", partition=0, offset=0, timestamp_ms=0, group="g", version="v"
    )


def test_headers_carry_every_field() -> None:
    letter = DeadLetter(
        "api",
        "PermanentApiError",
        "permanent",
        "400 invalid",
        http_status=400,
        body='{"message":"x"}' + "y" * 5000,
        attempts=3,
        first_failure=1.0,
        last_failure=2.5,
    )
    headers = dead_letter_headers(
        [("trace", b"abc"), (dlq.H_REASON, b"stale")],
        letter,
        topic="in",
        partition=4,
        offset=99,
        timestamp_ms=1234,
        group="g",
        version="1.2.3",
    )
    h = dict(headers)
    assert headers[0] == ("trace", b"abc")
    assert [k for k, _ in headers].count(dlq.H_REASON) == 1, "stale error headers are replaced"
    assert h[dlq.H_ORIGINAL_TOPIC] == b"in"
    assert h[dlq.H_ORIGINAL_PARTITION] == b"4"
    assert h[dlq.H_ORIGINAL_OFFSET] == b"99"
    assert h[dlq.H_ORIGINAL_TIMESTAMP] == b"1234"
    assert h[dlq.H_HTTP_STATUS] == b"400"
    assert h[dlq.H_ATTEMPTS] == b"3"
    assert h[dlq.H_FIRST_FAILURE] == b"1000"
    assert h[dlq.H_LAST_FAILURE] == b"2500"
    assert h[dlq.H_GROUP] == b"g"
    assert h[dlq.H_BRIDGE_VERSION] == b"1.2.3"
    assert h[dlq.H_EXCEPTION_CLASS] == b"PermanentApiError"
    assert len(h[dlq.H_ERROR_BODY]) == dlq.MAX_BODY_BYTES
    assert dlq.H_PARKED_BEHIND not in h


def test_optional_headers_absent_when_unknown() -> None:
    h = dict(_headers(None, DeadLetter("decode", "DecodeError", "truncated", "cut")))
    assert dlq.H_HTTP_STATUS not in h and dlq.H_ERROR_BODY not in h
    assert h[dlq.H_STAGE] == b"decode"


def test_smaller_letters_keep_the_trace_context_until_the_last_resort() -> None:
    parent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = _headers(
        [("traceparent", parent), ("tracestate", b"k=" + b"v" * 600), ("big", b"x" * 9)],
        DeadLetter("decode", "DecodeError", "unknown-magic", "m"),
    )
    letter: dlq.Letter = (b"k", b"v", list[tuple[str, str | bytes | None]](headers))
    _, without_value, without_key, smallest = dlq.smaller_letters(letter, 99)
    for _, _, kept in (without_value, without_key):
        names = dict(kept)
        assert names["traceparent"] == parent
        assert "tracestate" not in names, "a trace state past 512 bytes is not kept"
        assert "big" not in names
    assert "traceparent" not in dict(smallest[2])
