"""The waterfall renderer: a trace from the store (here: Tempo's JSON, read by the Tempo
implementation's parser) as a rich table, with LiveKit's plumbing spans folded."""

from __future__ import annotations

import base64

from rich.console import Console

from voxpulse_console.tracestore._tempo import trace_from_otlp_json
from voxpulse_console.waterfall import render_waterfall


def _span(span_id: str, parent: str | None, name: str, start_ms: int, end_ms: int, **attrs: object) -> dict:
    def value(v: object) -> dict:
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": str(v)}

    out = {
        "spanId": base64.b64encode(bytes.fromhex(span_id)).decode(),
        "name": name,
        "startTimeUnixNano": str(1_700_000_000_000_000_000 + start_ms * 1_000_000),
        "endTimeUnixNano": str(1_700_000_000_000_000_000 + end_ms * 1_000_000),
        "attributes": [{"key": k.replace("__", "."), "value": value(v)} for k, v in attrs.items()],
    }
    if parent:
        out["parentSpanId"] = base64.b64encode(bytes.fromhex(parent)).decode()
    return out


def test_tempo_trace_renders_as_a_waterfall() -> None:
    doc = {"batches": [{"resource": {}, "scopeSpans": [{"spans": [
        _span("01" * 8, None, "call", 0, 5000, call_id="c-1", voice__call__outcome="transferred"),
        _span("02" * 8, "01" * 8, "agent_session", 1, 4990),
        _span("03" * 8, "02" * 8, "agent_turn", 1500, 3000),
        _span("04" * 8, "03" * 8, "llm_node", 1500, 1900),
        _span("05" * 8, "04" * 8, "llm_request", 1500, 1900, voice__stage="llm"),
        _span("06" * 8, "05" * 8, "llm_request_run", 1500, 1900),
        _span("07" * 8, "01" * 8, "turn", 1000, 3200, voice__stage="turn", voice__turn__time_to_first_word=1.234),
    ]}]}]}
    spans = trace_from_otlp_json("ab" * 16, doc).spans
    assert [s.name for s in spans][:2] == ["call", "agent_session"]
    assert spans[1].parent_id == "01" * 8
    assert spans[0].duration_ms == 5000
    console = Console(width=160, record=True)
    console.print(render_waterfall(spans, title="call c-1"))
    text = console.export_text()
    assert "llm_request_run" not in text  # LiveKit's per-attempt spans are folded by default
    lines = [ln for ln in text.splitlines() if "llm_request" in ln]
    assert len(lines) == 1 and "stage=llm" in lines[0]
    assert "time_to_first_word=1.234" in text and "outcome=transferred" in text
    full = Console(width=160, record=True)
    full.print(render_waterfall(spans, full=True))
    assert "llm_request_run" in full.export_text()
