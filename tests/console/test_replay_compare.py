"""``voxpulse replay``'s turn comparison (voxpulse_console.replay): a part done in an earlier part's
shadow on one side (``voice.turn.overlapped_segments``, LiveKit's preemptive generation) is named as
such, not read as a part that took nothing."""

from __future__ import annotations

import json

from telemetry.semconv import Attr, Stage, TurnSegment
from voxpulse_console import replay
from voxpulse_console.tracestore._model import Span, Trace


def _turn(index: int, parts: dict[TurnSegment, float], overlapped: object) -> Span:
    attrs = {Attr.STAGE: Stage.TURN.value, Attr.TURN_INDEX: index, Attr.TURN_TTFW: sum(parts.values()),
             Attr.TURN_OVERLAPPED: overlapped, **{seg.attribute: v for seg, v in parts.items()}}
    return Span("t" * 32, f"{index + 1:016x}", None, "turn", "agent", index * 10**9, index * 10**9 + 1, attrs)


def test_turns_of_reads_the_overlapped_parts_known_by_name_only() -> None:
    trace = Trace("t" * 32, (
        _turn(0, {TurnSegment.END_OF_TURN: 1.9, TurnSegment.TTS_TTFB: 0.01}, ["llm_ttft", "<script>", 7]),
        _turn(1, {TurnSegment.LLM_TTFT: 0.3}, "llm_ttft"),  # not a list: nothing
    ))
    first, second = replay.turns_of(trace)
    assert first.overlapped == ["llm_ttft"] and first.segments == {"end_of_turn": 1900.0, "tts_ttfb": 10.0}
    assert second.overlapped == []


def test_compare_names_a_part_one_side_did_in_the_shadow() -> None:
    original = [replay.OriginalTurn(2, 500.0, {"end_of_turn": 10.0, "llm_ttft": 329.0, "tts_ttfb": 12.0})]
    again = [replay.OriginalTurn(2, 1950.0, {"end_of_turn": 1920.0, "tts_ttfb": 14.0}, overlapped=["llm_ttft"])]
    rows = {r["part"]: r for r in replay.compare(original, again)}
    assert rows["llm_ttft"] == {"turn": 2, "part": "llm_ttft", "original_ms": 329.0, "replay_ms": None,
                                "delta_ms": None, "overlapped": "replay"}
    assert rows["tts_ttfb"]["overlapped"] == "" and rows["tts_ttfb"]["delta_ms"] == 2.0
    # a replay file written before the field reads as no overlapped part
    old = json.dumps({"source_call_id": "c", "scenario": {}, "original": [{"index": 0, "ttfw_ms": 1.0}]})
    assert replay.Replay.loads(old).original[0].overlapped == []
