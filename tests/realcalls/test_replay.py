"""``voxpulse replay``: a real call, stored (call history and trace store), written as a masked
scenario, spoken again by the callers against the same worker, and the replay's turns compared with
the original's within stated tolerances."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.realcalls import OtlpRecorder
from telemetry.semconv import Attr, TurnSegment
from tests.support import ROOT, unavailable, wait_for
from voxpulse_console import replay, tracestore

from .conftest import PHONE, Calls, LiveKit, RunningWorker, place
from .test_real_calls import phone_digits_in, trace_of
from .test_real_path import _jaeger_span_ids

pytestmark = [pytest.mark.stack, pytest.mark.slow]

# What a replay reproduces, turn by turn: the same lines, barge-ins and tool calls, and the agent's
# side of each turn -- the parts of the LLM, the TTS, the tools and the framework (queueing, playback,
# publication) -- within half the original's or 300 ms, whichever is larger (the fake LLM's latency
# is random, and so is the machine's load). The caller's side (transport, the VAD's silence, the
# end-of-turn decision) is reported, not held to a tolerance: LiveKit's endpointing varies from call
# to call with the same audio.
AGENT_SIDE = ("llm_tool_call", "tools", "queueing", "llm_ttft", "llm_first_sentence", "tts_ttfb", "playback",
              "publication")
TOLERANCE = (0.5, 300.0)


def agent_side_ms(turn: replay.OriginalTurn, shadowed: set[str]) -> float:
    """The agent's side of the turn, without the parts either side did in an earlier part's shadow:
    an LLM that LiveKit ran ahead (preemptive generation, during an end of turn the caller's side
    made long) costs that turn nothing, so it has no time to compare."""
    return sum(turn.segments.get(p, 0.0) for p in AGENT_SIDE if p not in shadowed)


def llm_ran_ahead(trace: tracestore.Trace, index: int) -> bool:
    """Turn ``index`` has an ``llm_request`` that started before its ``user_turn`` ended."""
    by_id = {s.span_id: s for s in trace.spans}
    [turn] = [t for t in replay._turn_spans(trace) if int(t.attributes.get(Attr.TURN_INDEX, 0)) == index]
    [user_turn] = [s for s in trace.spans if s.name == "user_turn" and s.parent_id == turn.span_id]
    return any(s.name == "llm_request" and replay._under(s, turn, by_id) and s.start_ns < user_turn.end_ns
               for s in trace.spans)


def test_a_real_call_replayed_as_a_test(
    first_calls: Calls, recorder: OtlpRecorder, worker: RunningWorker, lk_stack: LiveKit, history_dsn: str | None,
    tmp_path: Path,
) -> None:
    if history_dsn is None:
        unavailable("DB", "the replay reads the call history (PostgreSQL)")
    assert history_dsn is not None
    source = next(r for r in first_calls.results if r.scenario == "order_tyres")  # tools, a barge-in, a number
    spans = trace_of(recorder, source.room_sid)
    call_id = str(next(s.call_id for s in spans if s.call_id))
    trace_id, exported = spans[0].trace_id, {s.span_id for s in spans}
    wait_for(lambda: _jaeger_span_ids(trace_id) >= exported, f"Jaeger to hold call {call_id}", 60)

    # the scenario file: the caller's lines, masked, the barge-in and the tools
    out = tmp_path / "replay.json"
    cli = subprocess.run([sys.executable, "-m", "voxpulse_console", "replay", call_id, "--no-run", "--out", str(out)],
                         cwd=ROOT, env={**os.environ, "DATABASE_URL": history_dsn},
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    text = out.read_text(encoding="utf-8")
    assert not phone_digits_in(text), phone_digits_in(text)  # no personal data in the file
    rp = replay.Replay.loads(text)
    assert rp == asyncio.run(replay.from_stored_call(call_id, store=tracestore.create("jaeger"), dsn=history_dsn))
    said = [t.line for t in source.turns]
    assert [u.replace("+380000000567", PHONE) for u in rp.scenario["utterances"]] == said
    assert rp.scenario["barge_in"] == [1] and len(rp.scenario["pauses"]) == len(said)
    assert [(c["turn"], c["name"]) for c in rp.tool_calls] == [(0, "find_tyres"), (1, "create_order")]
    assert json.dumps(rp.tool_calls).count("+380") == 1 and "***" in json.dumps(rp.tool_calls)  # masked

    # the replay, spoken by a caller against the same worker
    [r] = place(worker, lk_stack, [rp.scenario], concurrency=1)
    assert r.error is None, r.error
    trace = asyncio.run(replay._wait_for_trace(tracestore.create("jaeger"), r.room_sid, 90))
    assert trace is not None, "the replay's trace never reached Jaeger"
    original_trace = asyncio.run(replay._wait_for_trace(tracestore.create("jaeger"), call_id, 30))
    assert original_trace is not None
    again = replay.turns_of(trace)
    rows = replay.compare(rp.original, again)
    table = "\n".join(f"{r['turn']} {r['part']:<24} {r['original_ms']} -> {r['replay_ms']}" for r in rows)
    assert len(again) == len(rp.original), table
    for o, n in zip(rp.original, again, strict=True):
        assert n.tools == o.tools, (o.index, o.tools, n.tools)
        assert TurnSegment.UNACCOUNTED.value not in n.segments, table
        for t, which, tr in ((o, "original", original_trace), (n, "replay", trace)):
            assert not t.overlapped or llm_ran_ahead(tr, t.index), (which, t.index, t.overlapped, table)
        shadowed = {*o.overlapped, *n.overlapped}
        was, now = agent_side_ms(o, shadowed), agent_side_ms(n, shadowed)
        assert abs(now - was) <= max(TOLERANCE[0] * was, TOLERANCE[1]), f"turn {o.index}: {was} -> {now}\n{table}"
    assert replay._barge_ins(replay._turn_spans(trace)) == [1]  # the caller barged in again
    assert {row["part"] for row in rows} >= {"time_to_first_word", "llm_ttft", "tts_ttfb"}, table
