"""One call as one timeline: the call history's transcript merged with the trace's spans, per turn.

:func:`build_call_view` is pure (no I/O): the app fetches the history row and the trace, this module
lays them out. It reads spans by their semantic conventions only (``voice.stage``,
``voice.turn.index``, ``voice.turn.time_to_first_word``, the GenAI keys), so LiveKit's own subtrees (``user_turn``,
``agent_turn`` and whatever a later LiveKit adds) land in the right lane without being named here.

Which spans belong to turn *k* (the lane's waterfall):

* the turn span (``voice.stage=turn``, ``voice.turn.index=k``) and everything below it;
* every other subtree that hangs off the call's shared ancestors (the root ``call`` span, LiveKit's
  ``agent_session``) and starts inside the turn's window: from the turn's start to the next turn's
  start (the last turn: to its end).

Subtrees that start before the first turn (the greeting, session start) form the ``before`` lane,
those after the last turn the ``after`` lane (hang-up, session close); the shared ancestors
themselves are the ``call`` lane. Every span of the trace is in exactly one lane.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from telemetry.pricing import DEFAULT_PRICES, PriceTable
from telemetry.redaction import redact
from telemetry.semconv import LIVEKIT_USER_TURN, TURN_SEGMENT_OWNERS, Attr, EventName, SpanName, Stage, TurnSegment
from voxpulse_console.tracestore import Span, Trace

__all__ = ["assign_lanes", "build_call_view", "mask_json", "mask_text", "span_attributes"]

# LiveKit Agents' span names the console recognises for the waterfall's markers (livekit-agents 1.8,
# telemetry/trace_types.py); everything else is shown generically.
_LK_USER_SPEAKING: Final = "user_speaking"
_LK_AGENT_SPEAKING: Final = "agent_speaking"
# Attributes holding a time to first chunk in seconds, in order of preference.
_FIRST_CHUNK_KEYS: Final = (
    Attr.TIME_TO_FIRST_CHUNK, Attr.STREAM_TTFC, "lk.response.ttft", "lk.response.ttfb",
)
_MAX_ATTR_CHARS: Final = 2000
#: longer attribute values (LiveKit's metrics JSON, STT event lists) stay out of the call view's
#: payload; the span's full attributes come from GET /api/calls/<id>/spans/<span_id> on demand
INLINE_ATTR_CHARS: Final = 160
_STAGES: Final = {s.value for s in Stage}
_CHARS_RE: Final = re.compile(r'"characters_count"\s*:\s*(\d+)')


def mask_text(text: str | None, pii: bool) -> str:
    if not text:
        return ""
    return text if pii else redact(text)


def mask_json(value: Any, pii: bool) -> Any:
    """A JSON value with every string redacted (unless ``pii``)."""
    if pii:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [mask_json(v, pii) for v in value]
    if isinstance(value, dict):
        return {str(k): mask_json(v, pii) for k, v in value.items()}
    return value


def _kind(span: Span) -> str:
    stage = span.attributes.get(Attr.STAGE)
    if isinstance(stage, str) and stage in _STAGES:
        return stage
    if span.name == _LK_AGENT_SPEAKING:
        return "playout"
    if span.name == _LK_USER_SPEAKING:
        return "speech"
    return "other"


def _first_chunk_ms(span: Span) -> float | None:
    for key in _FIRST_CHUNK_KEYS:
        v = span.attributes.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0:
            return round(float(v) * 1000, 1)
    return None


def _turn_index(span: Span) -> int | None:
    v = span.attributes.get(Attr.TURN_INDEX)
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def assign_lanes(trace: Trace) -> dict[str, list[Span]]:
    """Lane key (``"turn:<k>"``, ``"before"``, ``"after"``, ``"call"``) -> the spans in it."""
    spans = list(trace.spans)
    by_id = {s.span_id: s for s in spans}
    turns = sorted((s for s in spans if s.attributes.get(Attr.STAGE) == Stage.TURN.value),
                   key=lambda s: s.start_ns)
    if not turns:  # an agent without VoxPulse (its trace came through the insights receiver): LiveKit's own
        turns = sorted((s for s in spans if s.name == LIVEKIT_USER_TURN), key=lambda s: s.start_ns)
    if not turns:  # no turn at all (hung up before speaking): the root, and the rest before
        out: dict[str, list[Span]] = {}
        for s in spans:
            key = "call" if s.parent_id is None or s.parent_id not in by_id else "before"
            out.setdefault(key, []).append(s)
        return out
    turn_key: dict[str, str] = {}
    for pos, t in enumerate(turns):
        idx = _turn_index(t)
        turn_key[t.span_id] = f"turn:{idx if idx is not None else pos}"
    starts = [t.start_ns for t in turns]
    last = turns[-1]

    def window(t_ns: int) -> int:
        """-1 before the first turn, k inside turn k's window, len(turns) after the last turn."""
        if t_ns < starts[0]:
            return -1
        k = bisect.bisect_right(starts, t_ns) - 1
        if k == len(turns) - 1 and t_ns > last.end_ns:
            return len(turns)
        return k

    kids: dict[str, list[Span]] = {}
    for s in spans:
        if s.parent_id in by_id:
            kids.setdefault(s.parent_id, []).append(s)
    # containers: spans that hold a turn span or whose children start in different windows (the
    # call root, LiveKit's agent_session, ...); they go to the "call" lane, their children to turns
    container: dict[str, bool] = {}
    has_turn: dict[str, bool] = {}
    order: list[Span] = []
    stack = [s for s in spans if s.parent_id not in by_id]
    while stack:  # pre-order, then evaluated in reverse (children before parents)
        s = stack.pop()
        order.append(s)
        stack.extend(kids.get(s.span_id, []))
    for s in reversed(order):
        children = kids.get(s.span_id, [])
        holds_turn = any(c.span_id in turn_key or has_turn[c.span_id] for c in children)
        has_turn[s.span_id] = holds_turn
        windows = {window(c.start_ns) for c in children if c.span_id not in turn_key}
        container[s.span_id] = s.span_id not in turn_key and (
            holds_turn or len(windows) > 1 or any(container[c.span_id] for c in children))
    lanes: dict[str, list[Span]] = {}
    unit_of: dict[str, Span] = {}
    for s in order:  # parents first: a span's unit is its highest non-container ancestor
        if container[s.span_id]:
            key = "call"
        else:
            parent = by_id.get(s.parent_id) if s.parent_id is not None else None
            unit = s if parent is None or container[parent.span_id] else unit_of[parent.span_id]
            unit_of[s.span_id] = unit
            if unit.span_id in turn_key:
                key = turn_key[unit.span_id]
            else:
                w = window(unit.start_ns)
                key = "before" if w < 0 else "after" if w >= len(turns) else turn_key[turns[w].span_id]
        lanes.setdefault(key, []).append(s)
    for v in lanes.values():
        v.sort(key=lambda s: (s.start_ns, -s.end_ns))
    return lanes


def span_attributes(span: Span, pii: bool, *, inline: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The span's attributes as a user may see them (redacted unless ``pii``), and, with ``inline``,
    the keys of long values left out."""
    out: dict[str, Any] = {}
    held: list[str] = []
    for k, v in span.attributes.items():
        if isinstance(v, str):
            if inline and len(v) > INLINE_ATTR_CHARS:
                held.append(k)
                continue
            v = v if pii or k in (Attr.CALL_ID, Attr.CONVERSATION_ID) else redact(v)
            if len(v) > _MAX_ATTR_CHARS:
                v = v[:_MAX_ATTR_CHARS] + "…"
        elif isinstance(v, list | tuple):
            if inline and len(v) > 8:
                held.append(k)
                continue
            v = [redact(x) if isinstance(x, str) and not pii else x for x in v][:50]
        out[k] = v
    return out, held


def _span_rows(spans: Sequence[Span], t0_ns: int, pii: bool) -> list[dict[str, Any]]:
    ids = {s.span_id for s in spans}
    depth: dict[str, int] = {}
    by_id = {s.span_id: s for s in spans}

    def d(s: Span) -> int:
        if s.span_id in depth:
            return depth[s.span_id]
        val = 0 if s.parent_id not in ids or s.parent_id is None else d(by_id[s.parent_id]) + 1
        depth[s.span_id] = val
        return val

    kids: dict[str | None, list[Span]] = {}
    for s in spans:
        kids.setdefault(s.parent_id if s.parent_id in ids else None, []).append(s)
    ordered: list[Span] = []

    def walk(s: Span) -> None:
        ordered.append(s)
        for k in sorted(kids.get(s.span_id, []), key=lambda x: (x.start_ns, -x.end_ns)):
            walk(k)

    for r in sorted(kids.get(None, []), key=lambda x: (x.start_ns, -x.end_ns)):
        walk(r)
    rows = []
    for s in ordered:
        rows.append({
            "span_id": s.span_id, "parent_id": s.parent_id, "name": s.name, "kind": _kind(s),
            "service": s.service, "depth": d(s),
            "start_ms": round((s.start_ns - t0_ns) / 1e6, 1), "duration_ms": round(s.duration_ms, 1),
            "first_chunk_ms": _first_chunk_ms(s), "error": s.error,
            **dict(zip(("attributes", "more_attributes"), span_attributes(s, pii, inline=True), strict=True)),
            "events": [{"t_ms": round((t - t0_ns) / 1e6, 1), "name": n} for t, n, _a in s.events][:20],
        })
    return rows


def _ts(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return None


def _cost_split(trace: Trace | None, total: float | None, prices: PriceTable) -> dict[str, float] | None:
    """The call's cost by stage: each stage's share of the usage on the trace's stage spans, priced
    with the default price table, applied to the call's recorded total."""
    if trace is None or not total:
        return None
    est = {"stt": 0.0, "llm": 0.0, "tts": 0.0}
    for s in trace.spans:
        stage = s.attributes.get(Attr.STAGE)
        provider = str(s.attributes.get(Attr.PROVIDER, ""))
        model = str(s.attributes.get(Attr.MODEL, ""))
        if stage == Stage.LLM.value:
            est["llm"] += prices.cost(Stage.LLM, provider, model,
                                      input_tokens=int(s.attributes.get(Attr.INPUT_TOKENS, 0) or 0),
                                      output_tokens=int(s.attributes.get(Attr.OUTPUT_TOKENS, 0) or 0))
        elif stage == Stage.STT.value:
            secs = s.attributes.get(Attr.STT_AUDIO_SECONDS, 0) or 0
            est["stt"] += prices.cost(Stage.STT, provider, model, audio_seconds=float(secs))
        elif stage == Stage.TTS.value:
            chars = s.attributes.get(Attr.TTS_CHARACTERS)
            if chars is None:  # LiveKit's metrics JSON (numbers in it may be masked at export)
                raw = s.attributes.get("lk.tts_metrics")
                m = _CHARS_RE.search(raw) if isinstance(raw, str) else None
                chars = int(m.group(1)) if m else None
            est["tts"] += prices.cost(Stage.TTS, provider, model, characters=int(chars or 0))
    s_all = sum(est.values())
    if s_all <= 0:
        return None
    return {k: round(total * v / s_all, 6) for k, v in est.items()}


def build_call_view(
    call_id: str,
    *,
    history: Mapping[str, Any] | None,
    trace: Trace | None,
    pii: bool,
    objective_ms: float,
    trace_link: str | None = None,
    logs_link: str | None = None,
    history_error: str | None = None,
    trace_error: str | None = None,
    prices: PriceTable = DEFAULT_PRICES,
) -> dict[str, Any]:
    """The call view's JSON (see docs/console.md)."""
    root = trace.root if trace is not None else None
    ra: Mapping[str, Any] = root.attributes if root is not None else {}
    h = history or {}
    t0_ns: int
    if root is not None:
        # the greeting's wait starts at the caller's join, before the agent's job (and its root span)
        t0_ns = min(s.start_ns for s in trace.spans) if trace is not None else root.start_ns
    elif _ts(h.get("started_at")) is not None:
        t0_ns = int((_ts(h.get("started_at")) or 0) * 1e9)
    else:
        t0_ns = 0
    started = _ts(h.get("started_at")) or (root.start_ns / 1e9 if root else None)
    ended = _ts(h.get("ended_at")) or (root.end_ns / 1e9 if root else None)
    total_cost = h.get("cost_usd")
    if total_cost is None and isinstance(ra.get(Attr.CALL_COST_USD), int | float):
        total_cost = float(ra[Attr.CALL_COST_USD])
    phone = h.get("phone")
    caller = (phone if pii else redact(phone)) if phone else (ra.get(Attr.CALL_CALLER) or None)
    header = {
        "call_id": call_id,
        "trace_id": h.get("trace_id") or (trace.trace_id if trace is not None else None),
        "started_at": started,
        "ended_at": ended,
        "duration_s": h.get("duration_seconds") if h.get("duration_seconds") is not None
        else (round((ended - started), 3) if started and ended else None),
        "status": h.get("status") or ("completed" if root is not None else None),
        "outcome": h.get("outcome") or ra.get(Attr.CALL_OUTCOME),
        "transfer_reason": h.get("transfer_reason") or ra.get(Attr.CALL_TRANSFER_REASON),
        "scenario": h.get("scenario") or ra.get(Attr.CALL_SCENARIO),
        "direction": h.get("direction") or ra.get(Attr.CALL_DIRECTION),
        "agent_version": h.get("agent_version") or ra.get(Attr.AGENT_VERSION),
        "cost_usd": total_cost,
        "cost_by_stage": _cost_split(trace, total_cost, prices),
        "caller": caller,
        "caller_masked": not pii,
        "turns": h.get("turns") if h.get("turns") is not None else ra.get(Attr.CALL_TURNS),
    }
    lanes_spans = assign_lanes(trace) if trace is not None else {}
    # history, per turn index
    h_turns: dict[int, dict[str, Any]] = {}
    for r in h.get("turn_rows", []) or []:
        slot = h_turns.setdefault(int(r["turn_index"]), {"user": [], "agent": [], "rows": []})
        slot["rows"].append(r)
        if r["speaker"] in ("user", "agent"):
            slot[r["speaker"]].append(r)
    h_tools: dict[int | None, list[dict[str, Any]]] = {}
    for r in h.get("tool_rows", []) or []:
        h_tools.setdefault(r.get("turn_index"), []).append(r)
    indices = sorted({int(k.split(":")[1]) for k in lanes_spans if k.startswith("turn:")} | set(h_turns))
    lanes: list[dict[str, Any]] = []
    if "before" in lanes_spans:
        lanes.append(_other_lane("before", lanes_spans["before"], t0_ns, pii, objective_ms))
    for idx in indices:
        lanes.append(_turn_lane(idx, lanes_spans.get(f"turn:{idx}", []), h_turns.get(idx), h_tools.get(idx, []),
                                t0_ns, pii, objective_ms))
    if "after" in lanes_spans:
        lanes.append(_other_lane("after", lanes_spans["after"], t0_ns, pii, objective_ms))
    unassigned_tools = h_tools.get(None, [])
    return {
        "call": header,
        "sources": {
            "history": history is not None,
            "trace": trace is not None,
            "history_error": history_error,
            "trace_error": trace_error,
        },
        "objective_ms": objective_ms,
        "t0": t0_ns / 1e9 if t0_ns else None,
        "call_spans": _span_rows(lanes_spans.get("call", []), t0_ns, pii),
        "lanes": lanes,
        "other_tools": [_tool_row(r, pii) for r in unassigned_tools],
        "span_count": len(trace.spans) if trace is not None else 0,
        "links": {"trace": trace_link, "logs": logs_link},
    }


def _tool_row(r: Mapping[str, Any], pii: bool, span: Span | None = None) -> dict[str, Any]:
    return {
        "name": r.get("name"),
        "tool_call_id": r.get("tool_call_id"),
        "args": mask_json(r.get("args"), pii),
        "result": mask_json(r.get("result"), pii),
        "success": r.get("success"),
        "error": mask_text(r.get("error"), pii) or None,
        "duration_ms": r.get("duration_ms"),
        "span_id": span.span_id if span is not None else None,
        "source": "history",
    }


def _other_lane(key: str, spans: list[Span], t0_ns: int, pii: bool, objective_ms: float) -> dict[str, Any]:
    """The lane before the first turn (the greeting: its time to first word and its parts, like a
    turn's) or after the last one."""
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    lane: dict[str, Any] = {"key": key, "index": None, "start_ms": round((start - t0_ns) / 1e6, 1),
                            "end_ms": round((end - t0_ns) / 1e6, 1), "spans": _span_rows(spans, t0_ns, pii)}
    greeting = next((s for s in spans if s.name == SpanName.GREETING), None)
    if greeting is not None and isinstance(ttfw := greeting.attributes.get(Attr.GREETING_TTFW), int | float):
        ms = round(float(ttfw) * 1000, 1)
        lane.update(_turn_marks(greeting, spans, t0_ns), greeting=True, ttfw_ms=ms,
                    ttfw_over_objective=ms > objective_ms)
    return lane


def _turn_lane(idx: int, spans: list[Span], hist: Mapping[str, Any] | None, tools: list[dict[str, Any]],
               t0_ns: int, pii: bool, objective_ms: float) -> dict[str, Any]:
    turn_span = next((s for s in spans if s.attributes.get(Attr.STAGE) == Stage.TURN.value), None)
    ta: Mapping[str, Any] = turn_span.attributes if turn_span is not None else {}
    user_rows = (hist or {}).get("user", [])
    agent_rows = (hist or {}).get("agent", [])
    if hist:
        user_text = " ".join(mask_text(r["text"], pii) for r in user_rows if r["text"]).strip()
        agent_text = " ".join(mask_text(r["text"], pii) for r in agent_rows if r["text"]).strip()
        text_source: str | None = "history"
    else:
        user_text = mask_text(str(ta.get(Attr.TURN_USER_TEXT) or ""), pii)
        agent_text = mask_text(str(ta.get(Attr.TURN_AGENT_TEXT) or ""), pii)
        text_source = "trace" if (user_text or agent_text) else None
    ttfw_s = ta.get(Attr.TURN_TTFW)
    ttfw: float | None
    if isinstance(ttfw_s, int | float) and not isinstance(ttfw_s, bool):
        ttfw = round(float(ttfw_s) * 1000, 1)
    else:
        ttfw = next((r["ttfw_ms"] for r in agent_rows if r.get("ttfw_ms") is not None), None)
    interrupted = bool(ta.get(Attr.CANCELLED)) or any(r.get("interrupted") for r in agent_rows) or any(
        s.attributes.get("lk.interrupted") is True for s in spans)
    speech_end_ns: int | None = None
    user_speaking = [s for s in spans if s.name == _LK_USER_SPEAKING]
    stt = [s for s in spans if s.attributes.get(Attr.STAGE) == Stage.STT.value]
    if user_speaking:
        speech_end_ns = max(s.end_ns for s in user_speaking)
    elif stt:
        speech_end_ns = min(s.start_ns for s in stt)
    first_audio_ns: int | None = None
    if speech_end_ns is not None and ttfw is not None:
        first_audio_ns = speech_end_ns + int(float(ttfw) * 1e6)
    else:
        playout = [s for s in spans if s.name == _LK_AGENT_SPEAKING]
        if playout:
            first_audio_ns = min(s.start_ns for s in playout)

    def stage_sum(stage: str) -> float | None:
        ss = [s for s in spans if s.attributes.get(Attr.STAGE) == stage]
        return round(sum(s.duration_ms for s in ss), 1) if ss else None

    def first_chunk(stage: str) -> float | None:
        vals = [v for s in spans if s.attributes.get(Attr.STAGE) == stage
                for v in [_first_chunk_ms(s)] if v is not None]
        return vals[0] if vals else None

    tts_nodes = [v for s in spans if "lk.response.ttfb" in s.attributes for v in [_first_chunk_ms(s)] if v is not None]
    playout_ms = sum(s.duration_ms for s in spans if s.name == _LK_AGENT_SPEAKING) or None
    row0 = (user_rows or [None])[0]
    arow = (agent_rows or [None])[0]
    stats = {
        "stt_ms": stage_sum(Stage.STT.value) if stt else (row0 or {}).get("stt_ms"),
        "llm_ms": stage_sum(Stage.LLM.value),
        "llm_ttft_ms": first_chunk(Stage.LLM.value) if spans else (arow or {}).get("llm_ms"),
        "tool_ms": stage_sum(Stage.TOOL.value),
        "tts_ms": stage_sum(Stage.TTS.value),
        "tts_ttfb_ms": (tts_nodes[0] if tts_nodes else first_chunk(Stage.TTS.value)) if spans
        else (arow or {}).get("tts_ms"),
        "playout_ms": round(playout_ms, 1) if playout_ms else None,
    }
    tool_spans = [s for s in spans if s.attributes.get(Attr.STAGE) == Stage.TOOL.value]
    by_call_id = {str(s.attributes.get(Attr.TOOL_CALL_ID)): s
                  for s in tool_spans if s.attributes.get(Attr.TOOL_CALL_ID)}
    tool_out = [_tool_row(r, pii, by_call_id.get(str(r.get("tool_call_id")))) for r in tools]
    if not tools:  # only the trace: arguments and results from the tool spans (redacted at export)
        for s in tool_spans:
            inner = [c for c in spans if c.parent_id == s.span_id and Attr.TOOL_ARGUMENTS in c.attributes]
            src = inner[0] if inner else s
            tool_out.append({
                "name": s.attributes.get(Attr.TOOL_NAME) or s.name,
                "tool_call_id": s.attributes.get(Attr.TOOL_CALL_ID),
                "args": _maybe_json(mask_text(str(src.attributes.get(Attr.TOOL_ARGUMENTS, "")), pii)),
                "result": _maybe_json(mask_text(str(src.attributes.get(Attr.TOOL_RESULT, "")), pii)),
                "success": not s.error and s.attributes.get("lk.function_tool.is_error") is not True,
                "error": None, "duration_ms": round(s.duration_ms, 1), "span_id": s.span_id, "source": "trace",
            })
    starts = [s.start_ns for s in spans]
    ends = [s.end_ns for s in spans]
    marks = _turn_marks(turn_span, spans, t0_ns)
    if turn_span is not None:
        lane_start, lane_end = turn_span.start_ns, max(ends)
    elif spans:
        lane_start, lane_end = min(starts), max(ends)
    else:
        ts = [r["ts"].timestamp() for r in (hist or {}).get("rows", []) if isinstance(r.get("ts"), dt.datetime)]
        lane_start = int(min(ts) * 1e9) if ts else t0_ns
        lane_end = int(max(ts) * 1e9) if ts else t0_ns
    return {
        "key": f"turn:{idx}",
        "index": idx,
        "start_ms": round((lane_start - t0_ns) / 1e6, 1),
        "end_ms": round((lane_end - t0_ns) / 1e6, 1),
        "user_text": user_text,
        "agent_text": agent_text,
        "text_source": text_source,
        "ttfw_ms": float(ttfw) if ttfw is not None else None,
        "ttfw_over_objective": bool(ttfw is not None and float(ttfw) > objective_ms),
        "speech_end_ms": round((speech_end_ns - t0_ns) / 1e6, 1) if speech_end_ns is not None else None,
        "first_audio_ms": round((first_audio_ns - t0_ns) / 1e6, 1) if first_audio_ns is not None else None,
        "interrupted": interrupted,
        "stats": stats,
        **marks,
        "tools": tool_out,
        "spans": _span_rows(spans, t0_ns, pii),
    }


def _turn_marks(turn_span: Span | None, spans: Sequence[Span], t0_ns: int) -> dict[str, Any]:
    """What a turn lane draws besides its spans: the anatomy of its time to first word (the parts in
    the pipeline's order, summing to it), its interruptions both ways, and its data errors (an
    impossible duration is shown as an error, never as a bar)."""
    ta: Mapping[str, Any] = turn_span.attributes if turn_span is not None else {}
    anatomy = [
        {"segment": seg.value, "owner": TURN_SEGMENT_OWNERS[seg][0], "what": TURN_SEGMENT_OWNERS[seg][1],
         "ms": round(float(ta[seg.attribute]) * 1000, 1)}
        for seg in TurnSegment if isinstance(ta.get(seg.attribute), int | float)
    ]
    # the parts done in an earlier part's shadow (no bar: they cost no time); only known part names
    shadowed = ta.get(Attr.TURN_OVERLAPPED)
    known = {seg.value: seg for seg in TurnSegment}
    overlapped = [
        {"segment": known[v].value, "owner": TURN_SEGMENT_OWNERS[known[v]][0], "what": TURN_SEGMENT_OWNERS[known[v]][1]}
        for v in (shadowed if isinstance(shadowed, list | tuple) else ()) if isinstance(v, str) and v in known
    ]
    interruptions: list[dict[str, Any]] = []
    for t_ns, name, attrs in turn_span.events if turn_span is not None else ():
        if name in (EventName.INTERRUPTION, EventName.INTERRUPTION_YIELDED, EventName.INTERRUPTION_NOT_YIELDED):
            yielded = attrs.get(Attr.INTERRUPTION_YIELD_TIME)
            interruptions.append({
                "t_ms": round((t_ns - t0_ns) / 1e6, 1), "event": name,
                "direction": attrs.get(Attr.INTERRUPTION_DIRECTION), "kind": attrs.get(Attr.INTERRUPTION_KIND),
                "yield_ms": round(float(yielded) * 1000, 1) if isinstance(yielded, int | float) else None,
            })
    errors = [
        {"span": s.name, "source": attrs.get(Attr.DATA_ERROR_SOURCE), "reason": attrs.get(Attr.DATA_ERROR_REASON),
         "value": attrs.get(Attr.DATA_ERROR_VALUE)}
        for s in spans for _, name, attrs in s.events if name == EventName.DATA_ERROR
    ]
    return {"anatomy": anatomy, "overlapped": overlapped, "named_share": ta.get(Attr.TURN_NAMED_SHARE),
            "interruptions": interruptions, "data_errors": errors}


def _maybe_json(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
