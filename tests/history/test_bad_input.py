"""Bad input: stored sanitised or cleanly rejected with a logged reason; the writer never dies."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.history import CallEnded, CallLogger, CallStarted, TurnRecord
from telemetry.history.sanitize import MAX_TEXT_CHARS, clean_text, to_json


class Unserialisable:
    def __repr__(self) -> str:
        return "<Unserialisable thing>"


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("boom")

    def __str__(self) -> str:
        raise RuntimeError("boom")


# -- pure sanitising (no database) -----------------------------------------------------------------


@given(st.text() | st.binary())
@settings(max_examples=300, deadline=None)
def test_clean_text_always_gives_storable_text(value: str | bytes) -> None:
    out = clean_text(value)
    out.encode("utf-8")  # no lone surrogates
    assert "\x00" not in out
    assert len(out) <= MAX_TEXT_CHARS + 40


def test_clean_text_cases() -> None:
    assert clean_text("a\x00b") == "a\ufffdb"
    assert clean_text("x\ud800y") == "x\ufffdy"
    assert clean_text("\ud83d\ude00") == "😀"  # a surrogate pair written as two chars
    assert clean_text(b"\xff\xfeok") == "\ufffd\ufffdok"
    assert clean_text(BrokenRepr()).startswith("<unprintable BrokenRepr")
    long = clean_text("я" * (MAX_TEXT_CHARS + 10))
    assert long.endswith("…[truncated 10 chars]")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5) | st.integers(), kids, max_size=4)
    | st.tuples(kids, kids) | st.frozensets(st.integers(), max_size=3),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_to_json_always_gives_jsonb_text(value: object) -> None:
    text = to_json(value)
    if value is None:
        assert text is None
        return
    assert text is not None
    text.encode("utf-8")
    assert "\\u0000" not in text and "\x00" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))


def test_to_json_odd_objects() -> None:
    cyc: list[object] = []
    cyc.append(cyc)
    out = json.loads(to_json({"obj": Unserialisable(), "nan": math.nan, "when": dt.date(2026, 1, 1),
                              1: "int key", "set": {3}, "cyc": cyc, "broken": BrokenRepr()}) or "null")
    assert out["obj"] == {"__type__": "Unserialisable", "repr": "<Unserialisable thing>"}
    assert out["nan"] == "nan" and out["1"] == "int key" and out["set"] == [3]
    assert out["broken"]["repr"].startswith("<unrepresentable BrokenRepr")
    big = to_json({"blob": "x" * 300_000})
    assert big is not None and json.loads(big)["__truncated__"] is True


# -- against PostgreSQL ----------------------------------------------------------------------------


@pytest.mark.db
async def test_bad_input_is_stored_sanitised_or_rejected_and_the_writer_goes_on(history_db, pg, otel, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, "telemetry.history")
    t = time.time()
    cyc: list[object] = []
    cyc.append(cyc)
    async with CallLogger(history_db, flush_interval=0.02, tracer_provider=otel.tracer_provider,
                          meter_provider=otel.meter_provider) as logger:
        logger.log_call_start("bad-1", phone="+380\x00501112233", caller_name="Ол\ud800ена")
        logger.log_turn("bad-1", 0, "user", "дуже довго " * 100_000)  # ~1.1 M chars
        logger.log_turn("bad-1", 1, "user", b"\xff\xfe invalid utf-8 \xc3\x28")  # type: ignore[arg-type]
        logger.log_turn("bad-1", 2, "agent", "lone \udc80 surrogate and NUL \x00 byte")
        logger.log_tool_call("bad-1", "find\x00tyres", {"obj": Unserialisable(), "nan": math.nan, "k\x00": "\x00v",
                                                        "cyc": cyc, 7: {1, 2}}, Unserialisable())
        logger.log_tool_call("bad-1", "broken", BrokenRepr(), {"ok": b"\x00bytes"})
        # cleanly rejected (reason logged), the rest of the batch still written
        logger.enqueue(TurnRecord("", 3, "user", "no call id", t))
        logger.enqueue(TurnRecord("bad-1", 4, "robot", "who speaks?", t))
        logger.enqueue(TurnRecord("bad-1", -1, "user", "negative index", t))
        logger.enqueue(TurnRecord("bad-1", 5, "user", "nan time", math.nan))
        logger.enqueue(CallStarted("bad-2", t, direction="sideways"))
        logger.enqueue("not a record")  # type: ignore[arg-type]
        # PostgreSQL itself refuses this one (numeric overflow): bisected out, logged, rejected
        logger.enqueue(CallStarted("bad-3", t))
        logger.enqueue(CallEnded("bad-3", t + 1, started_at=t, cost_usd=1e20))
        logger.log_turn("bad-1", 6, "user", "still working after all that")
        logger.log_call_end("bad-1", outcome="resolved_by_bot")
        assert await logger.flush(10)
    s = logger.stats
    assert s.rejected == 7 and s.dropped == 0 and s.written == s.enqueued - 7
    turns = {r["turn_index"]: r["text"] for r in await pg.fetch("SELECT turn_index, text FROM call_turns")}
    assert sorted(turns) == [0, 1, 2, 6]
    assert turns[0].startswith("дуже довго") and turns[0].endswith("chars]") and len(turns[0]) < MAX_TEXT_CHARS + 40
    assert turns[1].startswith("\ufffd\ufffd invalid utf-8 \ufffd(")
    assert turns[2] == "lone \ufffd surrogate and NUL \ufffd byte"
    call = await pg.fetchrow("SELECT phone, caller_name, status FROM calls WHERE call_id = 'bad-1'")
    assert (call["phone"], call["caller_name"], call["status"]) == ("+380\ufffd501112233", "Ол\ufffdена", "completed")
    tools = {r["name"]: r for r in await pg.fetch("SELECT name, args, result FROM call_tool_calls")}
    args = json.loads(tools["find\ufffdtyres"]["args"])
    assert args["obj"]["__type__"] == "Unserialisable" and args["nan"] == "nan" and args["k\ufffd"] == "\ufffdv"
    assert args["7"] == [1, 2]
    assert json.loads(tools["broken"]["args"])["repr"].startswith("<unrepresentable")
    assert json.loads(tools["broken"]["result"]) == {"ok": "\ufffdbytes"}
    # the refused call end: its start is there, the end was rejected with PostgreSQL's reason
    assert await pg.fetchval("SELECT ended_at FROM calls WHERE call_id = 'bad-3'") is None
    text = caplog.text
    for reason in ("call_id is empty", "speaker must be user, agent or system", "turn_index must be",
                   "ts out of range", "direction must be inbound or outbound", "not a call-history record",
                   "PostgreSQL refused a call end row of call 'bad-3': NumericValueOutOfRangeError"):
        assert reason in text, reason
    assert "дуже довго" not in text  # reasons, not content (PII stays out of logs)
