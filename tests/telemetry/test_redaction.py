"""PII never leaves the process: attributes, events, exception messages, logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

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


# -- structured values: LiveKit's metrics payloads keep their numbers and ids ----------------------


def _livekit_payloads() -> dict[str, str]:
    from livekit.agents.metrics import LLMMetrics, STTMetrics, TTSMetrics
    from livekit.agents.metrics.base import Metadata

    now = 1765043870.123456  # time.time() as LiveKit stamps it
    meta = Metadata(model_name="gpt-4o-mini", model_provider="openai")
    llm = LLMMetrics(label="livekit.plugins.openai.llm.LLM", request_id="chatcmpl-CZ9x4815162342AbC",
                     timestamp=now, duration=1.234567921, ttft=0.412345678, cancelled=False,
                     completion_tokens=42, prompt_tokens=1234, prompt_cached_tokens=0, total_tokens=1276,
                     tokens_per_second=34.01234567, speech_id="speech_5d3c12345678901", metadata=meta)
    tts = TTSMetrics(label="livekit.plugins.openai.tts.TTS", request_id="123456789012", timestamp=now + 0.5,
                     ttfb=0.287654321, duration=2.000000123, audio_duration=3.456789012, cancelled=False,
                     characters_count=57, streamed=True, segment_id="SEG_4815162342",
                     speech_id="speech_5d3c12345678901", metadata=meta)
    stt = STTMetrics(label="livekit.plugins.deepgram.stt.STT", request_id="d1e2f3a4-0501-2345-6789-abcdef012345",
                     timestamp=now, duration=0.0, audio_duration=5.120000001, streamed=True, metadata=meta)
    events = [{"received_at": now + i * 0.1, "type": t, "transcript_length": n}
              for i, (t, n) in enumerate((("interim_transcript", 5), ("final_transcript", 23)))]
    return {"lk.llm_metrics": llm.model_dump_json(), "lk.tts_metrics": tts.model_dump_json(),
            "lk.stt_metrics": stt.model_dump_json(), "lk.stt.events": json.dumps(events)}


def test_livekit_metrics_payloads_keep_their_timestamps_durations_and_ids() -> None:
    r = Redactor()
    for key, payload in _livekit_payloads().items():
        out = r.value(key, payload)
        assert isinstance(out, str)
        assert json.loads(out) == json.loads(payload), key
        assert "***" not in out and "[number]" not in out and "[card]" not in out, out


def test_livekit_metrics_payloads_survive_the_span_pipeline(cap: CapturedTelemetry) -> None:
    payloads = _livekit_payloads()
    with telemetry.call("lk-payloads") as call:
        for key, payload in payloads.items():
            call.span.set_attribute(key, payload)
    (root,) = cap.spans_named("call")
    for key, payload in payloads.items():
        assert json.loads(str(root.attributes[key])) == json.loads(payload), key


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"text": "передзвоніть на 0501234567"}, {"text": "передзвоніть на +380***567"}),
        ({"phone": 380501234567}, {"phone": "+380***567"}),
        ({"caller_id": "380501234567"}, {"caller_id": "+380***567"}),
        ({"request_id": "0501234567"}, {"request_id": "+380***567"}),  # shaped like a Ukrainian number
        ({"request_id": "+380 50 123 45 67"}, {"request_id": "+380***567"}),  # an id shaped like a phone
        ({"note": 380501234567, "amount": 3200.5}, {"note": "+380***567", "amount": 3200.5}),
        ({"args": {"card": "4111 1111 1111 1111", "mail": "a.b@c.ua"}},
         {"args": {"card": "[card]", "mail": "[email]"}}),
        ([{"received_at": 1765043870.5}, 380501234567], [{"received_at": 1765043870.5}, "+380***567"]),
    ],
)
def test_personal_data_in_json_values_is_still_masked(payload: object, expected: object) -> None:
    out = Redactor().value("gen_ai.tool.call.result", json.dumps(payload))
    assert json.loads(str(out)) == expected


# -- logs: LiveKit's handlers are masked where they are ---------------------------------------------


@pytest.fixture
def livekit_handler() -> Iterator[io.StringIO]:
    """LiveKit's CLI handler (its own JsonFormatter) added to the root logger AFTER telemetry.mask_logs()
    ran, as in a worker whose agent module calls mask_logs() before cli.run_app() sets up logging."""
    from livekit.agents.cli.log import JsonFormatter as LiveKitJson

    from telemetry import logs

    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    lk_level = logging.getLogger("livekit").level
    out = io.StringIO()
    try:
        logging.getLogger("livekit").setLevel(logging.DEBUG)
        telemetry.mask_logs()
        handler = logging.StreamHandler(out)
        handler.setFormatter(LiveKitJson())
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        yield out
    finally:
        root.handlers = saved
        root.setLevel(level)
        logging.getLogger("livekit").setLevel(lk_level)
        for h in saved:
            if logs._MASK_FILTER in h.filters:
                h.removeFilter(logs._MASK_FILTER)
        for name in logs.LIVEKIT_LOGGERS:
            logging.getLogger(name).removeFilter(logs._MASK_FILTER)


class _JobRequest:
    def __repr__(self) -> str:
        return "JobRequest(room=sip-_+380501234567_Xa9)"


def test_a_livekit_log_line_with_a_phone_number_room_is_masked(livekit_handler: io.StringIO) -> None:
    lk = logging.getLogger("livekit.agents")
    # the worker's own line (worker.py: "received job request")
    lk.info("received job request", extra={"job_id": "AJ_x7Yq2Lm", "room": "sip-_+380501234567_Xa9",
                                           "room_id": "RM_ab12Cd", "dispatch_id": "AD_4815162342",
                                           "job_request": _JobRequest(), "resuming": False})
    # a job process's line, forwarded to the worker, which adds the job's fields and hands it to its
    # handlers directly (livekit.agents.ipc.log_queue: callHandlers, no logger filter on the way)
    record = logging.getLogger("livekit.agents.voice").makeRecord(
        "livekit.agents.voice", logging.WARNING, __file__, 1, "caller %s hung up", ("0501234567",), None)
    record.room = "sip-_+380501234567_Xa9"
    record.job_id = "AJ_x7Yq2Lm"
    logging.getLogger(record.name).callHandlers(record)
    lines = [json.loads(line) for line in livekit_handler.getvalue().splitlines()]
    assert len(lines) == 2
    text = livekit_handler.getvalue()
    assert "0501234567" not in text and "1234567" not in text
    first, second = lines
    assert first["room"] == "sip-_+380***567_Xa9" and first["job_request"] == "JobRequest(room=sip-_+380***567_Xa9)"
    assert first["job_id"] == "AJ_x7Yq2Lm" and first["room_id"] == "RM_ab12Cd"
    assert first["dispatch_id"] == "AD_4815162342"
    assert first["resuming"] is False
    assert second["message"] == "caller +380***567 hung up" and second["room"] == "sip-_+380***567_Xa9"


def test_an_exception_in_a_livekit_line_is_masked(livekit_handler: io.StringIO) -> None:
    try:
        raise ValueError("no room sip-_+380501234567_Xa9")
    except ValueError:
        logging.getLogger("livekit.agents").exception("job failed")
    text = livekit_handler.getvalue()
    assert "0501234567" not in text and "+380***567" in text and "ValueError" in text


def test_setup_logging_masks_the_handler_already_there(cap: CapturedTelemetry) -> None:
    from telemetry import logs

    root = logging.getLogger()
    saved = list(root.handlers)
    theirs, ours = io.StringIO(), io.StringIO()
    their_handler = logging.StreamHandler(theirs)
    root.addHandler(their_handler)
    try:
        setup_logging(level="INFO", fmt="json", stream=ours)
        logging.getLogger("app").info("room %s", "sip-_+380501234567")
    finally:
        root.handlers = saved
        their_handler.removeFilter(logs._MASK_FILTER)
        for name in logs.LIVEKIT_LOGGERS:
            logging.getLogger(name).removeFilter(logs._MASK_FILTER)
    assert theirs.getvalue().strip() == "room sip-_+380***567"
    assert json.loads(ours.getvalue())["event"] == "room sip-_+380***567"
