"""Hostile input: random transcripts and tool arguments never leak a phone number and never crash.

Phone numbers in many formats, e-mails, card numbers, Cyrillic names, lone surrogates, NUL bytes and
huge strings are mixed into random text and sent through every path that leaves the process:
span attributes, span events, exception messages (status and exception event) and log lines.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import telemetry
from telemetry.logs import JsonFormatter
from telemetry.semconv import Attr
from telemetry.testing import CapturedTelemetry, capture_telemetry

# What a leaked phone number looks like in output: 9 or more digits, separators allowed between them.
LEAK = re.compile(r"\d(?:[\s.\-()\u2010-\u2015]{0,3}\d){8,}")
MAX_LEN = 2048

digits = st.text(alphabet="0123456789", min_size=1, max_size=4)
sep = st.sampled_from(["", " ", "-", ".", " - ", "(", ") ", "\u00a0", "\u2013", "\n"])


@st.composite
def phones(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["ua_e164", "ua_local", "e164", "grouped"]))
    if kind == "ua_e164":
        body = "380" + draw(st.text(alphabet="0123456789", min_size=9, max_size=9))
        prefix = draw(st.sampled_from(["+", "", "+ "]))
    elif kind == "ua_local":
        body = "0" + draw(st.text(alphabet="0123456789", min_size=9, max_size=9))
        prefix = ""
    else:
        body = draw(st.text(alphabet="123456789", min_size=1, max_size=1)) + draw(
            st.text(alphabet="0123456789", min_size=8, max_size=13))
        prefix = draw(st.sampled_from(["+", "", "00"]))
    out, i = [prefix], 0
    while i < len(body):
        n = draw(st.integers(1, 4))
        out.append(body[i:i + n])
        i += n
        if i < len(body):
            out.append(draw(sep))
    return "".join(out)


emails = st.from_regex(r"[a-z][a-z0-9.]{0,10}@[a-z]{2,8}\.(com|ua|net)", fullmatch=True)
cards = st.sampled_from(["4111 1111 1111 1111", "5500-0000-0000-0004", "4012888888881881", "378282246310005"])
names = st.sampled_from(["Мене звати Іван Петренко", "меня зовут Ольга", "my name is John Smith", "Тарас"])
noise = st.text(max_size=60)  # any code points, lone surrogates included
huge = st.integers(3000, 20000).map(lambda n: "я" * n)
pieces = st.one_of(phones(), emails, cards, names, noise, huge, st.just("\x00"), st.just("\ud800"))
texts = st.lists(pieces, min_size=1, max_size=6).map(" ".join)


def _strings(value: object) -> Iterator[str]:
    # The values themselves, not their JSON text: JSON escapes a NUL as "\\u0000", whose digits
    # next to real ones would look like a leak that no exporter or log reader ever sees.
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _exported(cap: CapturedTelemetry) -> str:
    parts: list[str] = []
    for s in cap.spans():
        parts.extend(_strings(dict(s.attributes or {})))
        for e in s.events:
            parts.extend(_strings(dict(e.attributes or {})))
        parts.append(s.status.description or "")
    return " | ".join(parts)  # "|" ends a digit run: values never join into one number


def _logged(text: str) -> str:
    return " | ".join(p for line in text.splitlines() if line for p in _strings(json.loads(line)))


_capture: list[CapturedTelemetry] = []


_EXPORT_THREADS = ("voxpulse-flush", "voxpulse-shutdown", "OtelBatch", "OtelPeriodicExportingMetricReader")


@pytest.fixture(scope="module")
def shared_capture() -> Iterator[None]:
    # Hypothesis rejects a run when the global `random` state changes during a draw; the OTLP
    # exporters' retry jitter of pipelines that earlier tests shut down with a dead collector does
    # exactly that from their threads. Let those threads end first (bounded: the library stops
    # their exporters at the shutdown deadline).
    import threading
    import time

    end = time.monotonic() + 30
    while time.monotonic() < end and any(t.name.startswith(_EXPORT_THREADS) and t.is_alive()
                                         for t in threading.enumerate()):
        time.sleep(0.1)
    with capture_telemetry(livekit=False, libraries=False) as cap:
        _capture.append(cap)
        yield
    _capture.clear()


@pytest.mark.usefixtures("shared_capture")
@settings(database=None, max_examples=int(os.environ.get("VOXPULSE_FUZZ_EXAMPLES", "10000")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(transcript=texts, argument=texts)
@example(transcript="\x00", argument="\x00 00000")  # CI: JSON text of a NUL is "\\u0000"
def test_no_phone_number_reaches_a_span_event_or_log_line(transcript: str, argument: str) -> None:
    @telemetry.trace_tool
    def create_order(note: str) -> str:
        raise ValueError(f"rejected: {note}")

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("fuzz")
    log.addHandler(handler)
    log.propagate = False
    try:
        cap = _capture[0]
        cap.clear()
        with telemetry.call("fuzz", caller=transcript):
            telemetry.current_call().set_attribute(Attr.TURN_USER_TEXT, transcript)  # type: ignore[union-attr]
            telemetry.current_call().span.add_event("heard", {"text": transcript})  # type: ignore[union-attr]
            with contextlib.suppress(ValueError):
                create_order(argument)
            log.info("caller said %s", transcript, extra={"tool_args": argument})
            exported = _exported(cap)
    finally:
        log.removeHandler(handler)
    logged = _logged(stream.getvalue())
    for out in (exported, logged):
        leak = LEAK.search(out)
        assert leak is None, leak.group(0)
    for span in cap.spans():
        for value in span.attributes.values():
            if isinstance(value, str):
                assert len(value) <= MAX_LEN + 40
                value.encode("utf-8")
