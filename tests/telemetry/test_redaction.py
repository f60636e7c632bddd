"""PII never leaves the process: attributes, events, exception messages, logs."""

from __future__ import annotations

import io
import json
import logging

import pytest

import telemetry
from telemetry.logs import setup_logging
from telemetry.redaction import Redactor, is_pii_key
from telemetry.semconv import Attr
from telemetry.testing import CapturedTelemetry, capture_telemetry

PHONES = [
    "+380501234567", "380501234567", "+38 (050) 123-45-67", "050 123 45 67", "(050)123-45-67",
    "+380-50-123-45-67", "+1 415 555 2671", "+44 20 7946 0958", "0501234567",
]


@pytest.mark.parametrize("phone", PHONES)
def test_phone_formats_are_masked(phone: str) -> None:
    out = telemetry.redact(f"передзвоніть на {phone}, дякую")
    digits = "".join(c for c in phone if c.isdigit())
    assert digits not in "".join(c for c in out if c.isdigit())
    assert out.endswith(", дякую")


def test_ukrainian_numbers_follow_the_seed_mask() -> None:
    assert telemetry.redact("+380501234567") == "+380***567"
    assert telemetry.redact("тел. 067 111 22 33") == "тел. +380***233"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail ivan.petrenko@gmail.com now", "mail [email] now"),
        ("card 4111 1111 1111 1111", "card [card]"),
        ("card 5500-0000-0000-0004!", "card [card]!"),
        ("Мене звати Іван Петренко.", "Мене звати [name]."),
        ("меня зовут Ольга", "меня зовут [name]"),
        ("My name is John Smith", "My name is [name]"),
        ("шини 205/55 R16, 23.11.2026, 4 шт по 3200.50", "шини 205/55 R16, 23.11.2026, 4 шт по 3200.50"),
    ],
)
def test_other_patterns(text: str, expected: str) -> None:
    assert telemetry.redact(text) == expected


def test_hostile_text_is_made_safe_and_bounded() -> None:
    r = Redactor(max_length=100)
    out = r.text("\ud800bad" + "я" * 10_000 + "\x00")
    out.encode("utf-8")
    assert len(out) < 150 and "truncated" in out


def test_content_modes_for_pii_keys() -> None:
    value = "I am at +380501234567"
    assert Redactor(content="off").value(Attr.TURN_USER_TEXT, value) is None
    assert Redactor(content="redacted").value(Attr.TURN_USER_TEXT, value) == "I am at +380***567"
    assert Redactor(content="full").value(Attr.TURN_USER_TEXT, value) == value
    # non-PII keys are always redacted; join keys are kept verbatim
    assert Redactor(content="full").value("lk.some.attr", value) == "I am at +380***567"
    assert Redactor().value(Attr.CALL_ID, "call-0501234567") == "call-0501234567"
    # LiveKit's ids are random: a run of 9+ digits in one is not a phone number (a real-call test met
    # SCL_b435614474ba); they are the ids call_id is taken from, so they stay equal to it
    for key in (Attr.SIP_CALL_ID, Attr.ROOM_SID, Attr.JOB_ID):
        assert Redactor().value(key, "SCL_b435614474ba") == "SCL_b435614474ba"
    assert is_pii_key("lk.pii.user_transcript") and is_pii_key("gen_ai.tool.call.arguments")
    assert not is_pii_key("voice.stage")


async def test_attributes_events_and_exceptions_are_redacted_on_export(cap: CapturedTelemetry) -> None:
    @telemetry.traced(name="work")
    async def work() -> None:
        from opentelemetry import trace

        span = trace.get_current_span()
        span.set_attribute("note", "caller +380501234567")
        span.set_attribute("voice.turn.pii.user_text", "мій номер 0501234567")
        span.add_event("heard", {"text": "email a.b@c.ua"})
        raise KeyError("customer +380501234567 not found")

    with pytest.raises(KeyError):
        async with telemetry.call("c", caller="+380501234567"):
            await work()
    exported = json.dumps([
        {"a": dict(s.attributes), "e": [dict(e.attributes or {}) for e in s.events],
         "s": s.status.description} for s in cap.spans()
    ], ensure_ascii=False)
    assert "0501234567" not in exported and "1234567" not in exported
    assert "a.b@c.ua" not in exported
    assert "+380***567" in exported


def test_content_off_drops_transcripts_and_tool_arguments() -> None:
    @telemetry.trace_tool
    def lookup(phone: str) -> str:
        return "ok"

    with capture_telemetry(content="off", livekit=False, libraries=False) as cap, telemetry.call("c"):
        lookup("+380501234567")
    span = cap.spans_named("execute_tool lookup")[0]
    assert Attr.TOOL_ARGUMENTS not in span.attributes
    assert Attr.TOOL_RESULT not in span.attributes


def _remove_handler(stream: io.StringIO) -> None:
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if getattr(h, "stream", None) is not stream]
    root.setLevel(logging.WARNING)


def test_log_lines_are_json_with_call_ids_and_redacted(cap: CapturedTelemetry) -> None:
    out = io.StringIO()
    setup_logging(level="INFO", fmt="json", stream=out)
    log = logging.getLogger("agent.tools")
    try:
        with telemetry.call("log-call"):
            log.info("order for %s", "+380501234567", extra={"tool": "create_order", "duration_ms": 12.5})
            try:
                raise ValueError("bad card 4111111111111111")
            except ValueError:
                log.exception("failed")
        log.warning("outside a call")
    finally:
        _remove_handler(out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    first, second, third = lines
    assert first["event"] == "order for +380***567"
    assert first["call_id"] == "log-call" and len(first["trace_id"]) == 32 and len(first["span_id"]) == 16
    assert first["component"] == "agent.tools" and first["level"] == "info" and first["tool"] == "create_order"
    assert first["duration_ms"] == 12.5 and first["timestamp"].endswith("Z")
    assert "4111111111111111" not in second["exception"] and "[card]" in second["exception"]
    assert "call_id" not in third


def test_text_log_format(cap: CapturedTelemetry) -> None:
    out = io.StringIO()
    setup_logging(level="DEBUG", fmt="text", stream=out)
    try:
        with telemetry.call("t1"):
            logging.getLogger("x").debug("phone +380501234567")
    finally:
        _remove_handler(out)
    line = out.getvalue().strip()
    assert line.endswith("phone +380***567 call_id=t1")
