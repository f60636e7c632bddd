"""``voxpulse replay CALL_ID``: a stored call as a test -- its scenario written from what was stored,
spoken again by the speaking callers against the agent, and the replay's turn anatomy printed next
to the original's.

The scenario comes from the call history (the caller's lines per turn, the tool calls' arguments and
results, the outcome) and the trace store (which turns the caller barged into, the pauses before
each line, every turn's parts: ``voice.turn.segment.*``). Personal data is masked in the scenario
file (``telemetry.redaction.redact``: numbers, e-mails, cards, names): the replay says the masked
lines, a masked phone number as a synthetic one of the same shape (``+380***567`` ->
``+380000000567``), so that the agent's path (an order needs a number) is the original's. Without
a call history the lines come from the turn spans (already masked at export).

A replay runs the example agent as a LiveKit worker (the registry's ``simulate`` module, as
``voxpulse demo`` does) against the stack's LiveKit server, so it needs ``voxpulse stack up``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from telemetry.redaction import redact
from telemetry.semconv import Attr, EventName, Stage, TurnSegment
from voxpulse_console.tracestore import Span, Trace, TraceStore

__all__ = ["OriginalTurn", "Replay", "compare", "from_stored_call", "register_cli", "turns_of"]

# the pause before a line, when the original's cannot be read: the callers' own think time
DEFAULT_PAUSE_S: Final = 0.4
MAX_PAUSE_S: Final = 5.0


@dataclass
class OriginalTurn:
    """One turn as stored: its time to first word, its parts (ms) and its tool calls."""

    index: int
    ttfw_ms: float | None
    segments: dict[str, float] = field(default_factory=dict)
    tools: list[str] = field(default_factory=list)
    # parts measured but done in an earlier part's shadow (``voice.turn.overlapped_segments``): they
    # cost the turn no time (LiveKit's preemptive generation: the LLM ran during the end of turn)
    overlapped: list[str] = field(default_factory=list)


@dataclass
class Replay:
    """A replay's scenario file: the source call, the scenario the callers speak (``Scenario.as_dict``),
    the tool calls (masked) and the original turns to compare with."""

    source_call_id: str
    trace_id: str | None
    scenario: dict[str, Any]
    tool_calls: list[dict[str, Any]]
    original: list[OriginalTurn]

    def dumps(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    @classmethod
    def loads(cls, text: str) -> Replay:
        d = json.loads(text)
        return cls(d["source_call_id"], d.get("trace_id"), d["scenario"], d.get("tool_calls", []),
                   [OriginalTurn(**t) for t in d.get("original", [])])


def _turn_spans(trace: Trace) -> list[Span]:
    return sorted((s for s in trace.spans if s.attributes.get(Attr.STAGE) == Stage.TURN.value),
                  key=lambda s: int(s.attributes.get(Attr.TURN_INDEX, 0)))


def _under(span: Span, turn: Span, by_id: Mapping[str, Span]) -> bool:
    s: Span | None = span
    while s is not None and s.parent_id is not None:
        s = by_id.get(s.parent_id)
        if s is not None and s.span_id == turn.span_id:
            return True
    return False


def turns_of(trace: Trace) -> list[OriginalTurn]:
    """Each turn of a stored trace: time to first word, parts in ms (the turn span's
    ``voice.turn.segment.*``), the tools its subtree called."""
    by_id = {s.span_id: s for s in trace.spans}
    out = []
    for t in _turn_spans(trace):
        a = t.attributes
        ttfw = a.get(Attr.TURN_TTFW)
        segments = {seg.value: round(float(a[seg.attribute]) * 1000, 1)
                    for seg in TurnSegment if isinstance(a.get(seg.attribute), int | float)}
        tools = [str(s.attributes.get(Attr.TOOL_NAME)) for s in trace.spans
                 if s.attributes.get(Attr.STAGE) == Stage.TOOL.value and _under(s, t, by_id)]
        shadowed = a.get(Attr.TURN_OVERLAPPED)
        known = {seg.value for seg in TurnSegment}
        overlapped = [v for v in (shadowed if isinstance(shadowed, list | tuple) else ()) if v in known]
        out.append(OriginalTurn(int(a.get(Attr.TURN_INDEX, 0)),
                                round(float(ttfw) * 1000, 1) if isinstance(ttfw, int | float) else None,
                                segments, sorted(tools), overlapped))
    return out


def _barge_ins(turns: Sequence[Span]) -> list[int]:
    """Lines said over the agent's answer: the turns a caller's barge-in began (their
    ``interruption`` event, direction caller)."""
    return sorted({int(t.attributes.get(Attr.TURN_INDEX, 0)) for t in turns
                   if any(name == EventName.INTERRUPTION and attrs.get(Attr.INTERRUPTION_DIRECTION) == "caller"
                          for _, name, attrs in t.events)})


def _pauses(turns: Sequence[Span], barge_ins: Sequence[int]) -> list[float]:
    """The silence before each line: from the previous turn's end (the agent back to listening) to
    the caller's next words; the first line (after the greeting) and barge-ins: the default."""
    out = []
    for i, t in enumerate(turns):
        if i == 0 or i in barge_ins:
            out.append(DEFAULT_PAUSE_S)
            continue
        gap = (t.start_ns - turns[i - 1].end_ns) / 1e9
        out.append(round(min(max(gap, 0.0), MAX_PAUSE_S), 3))
    return out


async def _history(dsn: str, call_id: str) -> tuple[dict[int, str], list[dict[str, Any]], str | None]:
    """The caller's lines by turn, the tool calls and the outcome from the call history."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT turn_index, text FROM call_turns WHERE call_id = $1 AND speaker = 'user' "
                                "ORDER BY ts", call_id)
        tools = await conn.fetch("SELECT turn_index, name, args, result, success FROM call_tool_calls "
                                 "WHERE call_id = $1 ORDER BY ts, seq", call_id)
        outcome = await conn.fetchval("SELECT outcome FROM calls WHERE call_id = $1", call_id)
    finally:
        await conn.close()
    lines: dict[int, str] = {}
    for r in rows:
        if r["text"]:
            lines[r["turn_index"]] = f"{lines.get(r['turn_index'], '')} {r['text']}".strip()
    calls = [{"turn": r["turn_index"], "name": r["name"], "arguments": _mask(_json(r["args"])),
              "result": _mask(_json(r["result"])), "success": r["success"]} for r in tools]
    return lines, calls, outcome


_MASKED_PHONE: Final = re.compile(r"(\+?\d{1,4})\*{3}(\d{2,4})")
PHONE_DIGITS: Final = 12  # an international number's digits (+380 and 9)


def _spoken(text: str) -> str:
    """A caller's line masked, each masked phone number said as a synthetic one of its shape."""
    def synthetic(m: re.Match[str]) -> str:
        head, tail = str(m.group(1)), str(m.group(2))
        digits = sum(c.isdigit() for c in head + tail)
        return head + "0" * max(PHONE_DIGITS - digits, 1) + tail

    return str(_MASKED_PHONE.sub(synthetic, redact(text)))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _mask(value: Any) -> Any:
    """Personal data masked in every string of a JSON value."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    return value


async def from_stored_call(call_id: str, *, store: TraceStore, dsn: str | None) -> Replay:
    """The replay of a stored call (see the module docstring). A call the trace store does not hold
    is a LookupError."""
    async with store:
        trace_id = next(iter(await store.traces_for_call(call_id)), None)
        trace = await store.trace(trace_id) if trace_id else None
    if trace is None:
        raise LookupError(f"the trace store has no trace of call {call_id!r}")
    spans = _turn_spans(trace)
    lines, tool_calls, outcome = await _history(dsn, call_id) if dsn else ({}, [], None)
    utterances = []
    for t in spans:
        idx = int(t.attributes.get(Attr.TURN_INDEX, 0))
        said = lines.get(idx) or str(t.attributes.get(Attr.TURN_USER_TEXT) or "")
        utterances.append(_spoken(said))
    if not tool_calls:  # no history: the tool spans (their arguments masked at export)
        tool_calls = [{"turn": o.index, "name": name} for o in turns_of(trace) for name in o.tools]
    barge = _barge_ins(spans)
    scenario = {
        "name": f"replay-{call_id}"[:60], "utterances": utterances, "expected": outcome or "resolved_by_bot",
        "hangup_mid_answer": False, "barge_in": barge, "pauses": _pauses(spans, barge),
    }
    return Replay(call_id, trace_id, scenario, tool_calls, turns_of(trace))


def compare(original: Sequence[OriginalTurn], replayed: Sequence[OriginalTurn]) -> list[dict[str, Any]]:
    """Per turn and part: the original's ms next to the replay's (``None`` where a side has none),
    and the sides where the part was done in an earlier part's shadow (``overlapped``: "original",
    "replay" or both, "" for none) -- a part then missing from a side cost that turn no time."""
    rows = []
    by_index = {t.index: t for t in replayed}
    for o in original:
        r = by_index.get(o.index)
        shadowed = {*o.overlapped, *(r.overlapped if r is not None else ())}
        parts = [seg.value for seg in TurnSegment
                 if seg.value in o.segments or seg.value in shadowed or (r is not None and seg.value in r.segments)]
        for name in [*parts, "time_to_first_word"]:
            was = o.ttfw_ms if name == "time_to_first_word" else o.segments.get(name)
            now = None if r is None else (r.ttfw_ms if name == "time_to_first_word" else r.segments.get(name))
            sides = [side for side, turn in (("original", o), ("replay", r))
                     if turn is not None and name in turn.overlapped]
            rows.append({"turn": o.index, "part": name, "original_ms": was, "replay_ms": now,
                         "delta_ms": round(now - was, 1) if was is not None and now is not None else None,
                         "overlapped": " and ".join(sides)})
    return rows


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def _print(console: Console, rows: Sequence[Mapping[str, Any]], title: str) -> None:
    table = Table(title=title)
    for col in ("turn", "part", "original ms", "replay ms", "Δ ms"):
        table.add_column(col, justify="right" if "ms" in col else "left")
    for r in rows:
        shadowed = str(r.get("overlapped", ""))
        fmt = [("overlapped" if k[:-3] in shadowed else "-") if r[k] is None else f"{r[k]:.0f}"
               for k in ("original_ms", "replay_ms", "delta_ms")]
        bold = r["part"] == "time_to_first_word"
        table.add_row(str(r["turn"]), f"[bold]{r['part']}[/bold]" if bold else r["part"], *fmt)
    console.print(table)


async def _wait_for_trace(store: TraceStore, call_id: str, deadline_s: float) -> Trace | None:
    deadline = time.monotonic() + deadline_s
    async with store:
        while time.monotonic() < deadline:
            ids = await store.traces_for_call(call_id)
            trace = await store.trace(ids[0]) if ids else None
            if trace is not None and any(s.name == "job_shutdown" for s in trace.spans):
                return trace
            await asyncio.sleep(1.0)
    return None


def cmd_replay(args: argparse.Namespace) -> int:
    from telemetry.history import database_url
    from voxpulse_console import stack

    console = Console()
    store: TraceStore = args.open_store(args)
    try:
        replay = asyncio.run(from_stored_call(args.call_id, store=store, dsn=database_url()))
    except LookupError as e:
        console.print(f"[red]{e}[/red]")
        return 1
    out = Path(args.out or f"replay-{args.call_id}.json")
    out.write_text(replay.dumps() + "\n", encoding="utf-8")
    console.print(f"scenario written to {out} ({len(replay.scenario['utterances'])} lines, masked)")
    if args.no_run:
        return 0
    calls = args.calls_source
    if calls is None:
        console.print("[red]placing the replay needs the example agent (agent.commands), which is not installed[/red]")
        return 2
    env = {"VOXPULSE_AGENT_NAME": f"tyre-agent-replay-{args.call_id}"[:60]}
    log = stack.state_dir(None) / "logs" / "replay-worker.log"
    [result] = calls.real_calls(args, env=env, livekit=stack.livekit_env(), media=stack.media_namespace(), log=log,
                                scenarios=[replay.scenario])
    if result.error:
        console.print(f"[red]the replay call failed: {result.error}[/red]")
        return 1
    trace = asyncio.run(_wait_for_trace(store, result.room_sid, args.wait))
    if trace is None:
        console.print(f"[red]the replay's trace ({result.room_sid}) did not reach the trace store[/red]")
        return 1
    _print(console, compare(replay.original, turns_of(trace)),
           f"call {args.call_id} (original) and its replay {result.room_sid}")
    return 0


def register_cli(subparsers: Any, *, calls_source: Any, store_args: Callable[[argparse.ArgumentParser], None],
                 open_store: Callable[[argparse.Namespace], TraceStore]) -> None:
    """Adds ``replay`` to the ``voxpulse`` command (``voxpulse_console.cli``: the example agent's calls
    module from the registry, and the trace store's options)."""
    p = subparsers.add_parser("replay", help="a stored call as a test: its scenario, replayed by speaking callers")
    store_args(p)
    p.add_argument("call_id")
    p.add_argument("--out", help="the scenario file (default replay-CALL_ID.json)")
    p.add_argument("--no-run", action="store_true", help="only write the scenario file")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the replay's trace")
    p.set_defaults(func=cmd_replay, calls_source=calls_source, open_store=open_store)
