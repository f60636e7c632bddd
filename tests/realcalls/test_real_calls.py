"""Real calls on the real LiveKit server: one trace per call with every span exported, call_id on
every span, no personal data in any id, the job ends with the call, and telemetry never costs the
call its event loop.

The recorder sees what the worker's exporters sent (before the collector's own masking, which
must not hide a leak of the agent's); see conftest.py for the set-up.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from agent.realcalls import ExportedSpan, OtlpRecorder
from telemetry.livekit._ttfw import MEDIA_FRAMING_S
from telemetry.semconv import (
    LIVEKIT_JOB_ROOT,
    LIVEKIT_METRIC_LABELS,
    LIVEKIT_TURN_SPANS,
    Attr,
    Metric,
    TurnSegment,
    metric_spec,
)
from tests.support import ROOT, load_script, unavailable, wait_for
from tests.support.backends import PROMETHEUS

from .conftest import PHONE, PII_ROOM, SIP_CALL_ID, Calls, RunningWorker

pytestmark = [pytest.mark.stack, pytest.mark.slow]

# Spans every call's trace must hold, the job's last ones (ended after the entrypoint returned)
# included.
EXPECTED = {
    LIVEKIT_JOB_ROOT, "room_connect", "wait_for_participant", "call", "agent_session", "session_start",
    "turn", "user_turn", "agent_turn", "speech_to_text", "session_close", "job_shutdown",
    "session_end_upload", "room_disconnect", "shutdown_callback", "greeting",
}
_DIGITS = re.compile(r"\d(?:[\s.\-()]{0,3}\d)*")
_NUMBER = "".join(ch for ch in PHONE if ch.isdigit())


def phone_digits_in(text: str) -> list[str]:
    """Runs of digits (separators allowed, as a number is written) that hold 6 or more consecutive
    digits of the caller's number. The masked form (+380***567) has none."""
    found = []
    for m in _DIGITS.finditer(text):
        digits = "".join(ch for ch in m.group(0) if ch.isdigit())
        if any(digits[i:i + 6] in _NUMBER for i in range(len(digits) - 5)):
            found.append(m.group(0))
    return found


def trace_of(recorder: OtlpRecorder, room_sid: str) -> list[ExportedSpan]:
    roots = [s for s in recorder.roots(LIVEKIT_JOB_ROOT) if s.attributes.get("lk.room_sid") == room_sid]
    assert len(roots) == 1, f"{len(roots)} job roots for room {room_sid}"
    return recorder.traces()[roots[0].trace_id]


def test_one_trace_per_call_with_every_span(first_calls: Calls, recorder: OtlpRecorder) -> None:
    traces = recorder.traces()
    for r in first_calls.results:
        spans = trace_of(recorder, r.room_sid)
        names = Counter(s.name for s in spans)
        assert set(names) >= EXPECTED, f"{r.scenario}: missing {EXPECTED - set(names)}"
        roots = [s for s in spans if s.parent_id is None]
        assert [s.name for s in roots] == [LIVEKIT_JOB_ROOT], r.scenario
        ids = {s.span_id for s in spans}
        orphans = [s.name for s in spans if s.parent_id is not None and s.parent_id not in ids]
        assert not orphans, f"{r.scenario}: parents not exported for {orphans}"
        assert len(ids) == len(spans), "a span was exported twice"
    # each call's spans are in its own trace, and no span of these calls anywhere else
    sids = {r.room_sid for r in first_calls.results}
    mine = [t for t in traces.values() if any(s.attributes.get("lk.room_sid") in sids for s in t)]
    assert len(mine) == len(first_calls.results)


def test_call_id_on_every_span_and_one_conversation_id(first_calls: Calls, recorder: OtlpRecorder) -> None:
    for r in first_calls.results:
        spans = trace_of(recorder, r.room_sid)
        without = sorted({s.name for s in spans if s.call_id is None})
        assert not without, f"{r.scenario}: spans without call_id: {without}"
        assert len({s.call_id for s in spans}) == 1
        conversation = {s.attributes[Attr.CONVERSATION_ID] for s in spans if Attr.CONVERSATION_ID in s.attributes}
        assert conversation == {spans[0].call_id}, r.scenario


def test_call_id_is_the_sip_call_id_else_the_room_id(first_calls: Calls, recorder: OtlpRecorder) -> None:
    for r in first_calls.results:
        call = next(s for s in trace_of(recorder, r.room_sid) if s.name == "call")
        if r.scenario == "ask_operator":  # the caller with sip.* attributes
            assert call.call_id == SIP_CALL_ID
            assert call.attributes[Attr.SIP_CALL_ID] == SIP_CALL_ID
            assert call.attributes[Attr.CALL_CALLER] == "+380***567"
        else:
            assert call.call_id == r.room_sid and r.room_sid.startswith("RM_")
        assert call.attributes[Attr.ROOM_SID] == r.room_sid
        assert call.attributes[Attr.JOB_ID].startswith("AJ_")


def test_turns_tell_the_story_and_measure_ttfw_at_the_ear(first_calls: Calls, recorder: OtlpRecorder) -> None:
    for r in first_calls.results:
        spans = trace_of(recorder, r.room_sid)
        by_id = {s.span_id: s for s in spans}
        session = next(s for s in spans if s.name == "agent_session")
        turns = sorted((s for s in spans if s.name == "turn"), key=lambda s: s.attributes[Attr.TURN_INDEX])
        assert len(turns) == len(r.turns), r.scenario
        assert all(t.parent_id == session.span_id for t in turns)
        for s in spans:
            if s.name in LIVEKIT_TURN_SPANS and _turn_above(s, by_id) is None:
                # only the greeting's agent_turn is outside a turn
                assert s.name == "agent_turn" and s.parent_id == session.span_id, (r.scenario, s.name)
            if s.attributes.get(Attr.STAGE) in ("stt", "llm", "tool", "tts") and _turn_above(s, by_id) is None:
                assert s.name == "tts_request", (r.scenario, s.name)  # the greeting's TTS
        for turn, heard in zip(turns, r.turns, strict=True):
            assert heard.ttfw_ms is not None, (r.scenario, heard)
            a = turn.attributes
            assert a[Attr.TURN_TTFW_METHOD] == "audio", (r.scenario, a)
            assert a[Attr.TURN_TTFW] == pytest.approx(a[Attr.TURN_TTFW_AT_AGENT] + a[Attr.TURN_MEDIA_LATENCY], abs=2e-4)
            # an estimate in seconds, 2 x (jitter buffer + framing): never below the framing; the jitter
            # buffer grows with the machine's load (1.16 s both ways seen at 3 calls on 2 cores), and a
            # unit error would be off by a factor of 1000
            assert 2 * MEDIA_FRAMING_S <= a[Attr.TURN_MEDIA_LATENCY] < 5.0, (r.scenario, a[Attr.TURN_MEDIA_LATENCY])
    barge = next(r for r in first_calls.results if r.scenario == "order_tyres")
    assert [t.barge_in for t in barge.turns] == [False, True, False]
    interrupted = [s for s in trace_of(recorder, barge.room_sid) if s.name == "agent_turn"
                   and s.attributes.get("lk.interrupted")]
    assert interrupted, "the caller barged in: an agent turn was interrupted"
    assert all("lk.interruption.source" in s.attributes for s in interrupted)
    # VoxPulse's own count of it: a caller barge-in on the interrupted turn, and how fast the agent yielded
    turn_events = [e for s in trace_of(recorder, barge.room_sid) if s.name == "turn" for e in s.events]
    barges = [attrs for name, attrs in turn_events if name == "interruption"
              and attrs.get(Attr.INTERRUPTION_DIRECTION) == "caller"
              and attrs.get(Attr.INTERRUPTION_KIND) == "interruption"]
    assert len(barges) == 1, turn_events
    [yielded] = [attrs for name, attrs in turn_events if name == "interruption_yielded"]
    assert 0 < yielded[Attr.INTERRUPTION_YIELD_TIME] < 2.0, yielded
    # no other call has a barge-in (every other line waits for the agent to finish)
    for r in first_calls.results:
        if r is not barge:
            directions = [a.get(Attr.INTERRUPTION_DIRECTION) for s in trace_of(recorder, r.room_sid)
                          if s.name == "turn" for n, a in s.events if n == "interruption"]
            assert "caller" not in directions, (r.scenario, directions)


def test_each_turns_parts_add_up_to_what_the_caller_heard(first_calls: Calls, recorder: OtlpRecorder) -> None:
    """The anatomy of every real turn: its parts sum to the turn's time to first word within 1 ms,
    none is negative, and on average at least 95 % of it is named by a measured part (the rest is
    queueing or unaccounted, named as such)."""
    shares: list[float] = []
    for r in first_calls.results:
        spans = trace_of(recorder, r.room_sid)
        by_id = {s.span_id: s for s in spans}
        for turn in (s for s in spans if s.name == "turn"):
            a = turn.attributes
            parts = {seg: a[seg.attribute] for seg in TurnSegment if seg.attribute in a}
            assert parts, (r.scenario, a)
            assert all(v > 0 for v in parts.values()), (r.scenario, parts)
            assert sum(parts.values()) == pytest.approx(a[Attr.TURN_TTFW], abs=1e-3), (r.scenario, parts)
            # the providers' parts are on every real turn: measured, or done in an earlier part's shadow
            overlapped = {TurnSegment(v) for v in a.get(Attr.TURN_OVERLAPPED, ())}
            assert not overlapped & set(parts), (r.scenario, parts, overlapped)
            assert {TurnSegment.LLM_TTFT, TurnSegment.TTS_TTFB, TurnSegment.TRANSPORT_OUT} <= set(parts) | overlapped, (
                r.scenario, parts, overlapped)
            if TurnSegment.LLM_TTFT in overlapped:  # LiveKit's preemptive generation: the LLM ran ahead
                (user_turn,) = [s for s in spans if s.name == "user_turn" and s.parent_id == turn.span_id]
                ahead = [s for s in spans if s.name == "llm_request" and _turn_above(s, by_id) is turn
                         and s.start_ns < user_turn.end_ns]
                assert ahead, (r.scenario, parts, "an overlapped LLM that started after the end of turn")
            shares.append(a[Attr.TURN_NAMED_SHARE])
    assert len(shares) >= 3
    assert sum(shares) / len(shares) >= 0.95, shares


def test_the_greeting_adds_up_from_the_callers_join(first_calls: Calls, recorder: OtlpRecorder) -> None:
    """Every call's greeting: one span under the call, timed from the caller's join on the LiveKit
    server's clock (the same machine's: no clock disagreement) to its first word at the caller's ear;
    its parts (call set-up, then the reply's) sum to it within 1 ms, and it is what the caller waited
    (joined -> the greeting's first audible frame, on the caller's clock) give or take the media path
    and the caller's own connect."""
    for r in first_calls.results:
        assert r.greeting_heard and r.greeting_ms is not None, r.scenario
        spans = trace_of(recorder, r.room_sid)
        (greeting,) = [s for s in spans if s.name == "greeting"]
        (call,) = [s for s in spans if s.name == "call"]
        assert greeting.parent_id == call.span_id
        a = greeting.attributes
        assert a[Attr.GREETING_START] == "joined", (r.scenario, a)
        assert a[Attr.TURN_TTFW_METHOD] == "audio", (r.scenario, a)
        parts = {seg: a[seg.attribute] for seg in TurnSegment if seg.attribute in a}
        assert all(v > 0 for v in parts.values()), (r.scenario, parts)
        assert sum(parts.values()) == pytest.approx(a[Attr.GREETING_TTFW], abs=1e-3), (r.scenario, parts)
        assert {TurnSegment.CALL_SETUP, TurnSegment.TTS_TTFB, TurnSegment.TRANSPORT_OUT} <= set(parts), parts
        assert TurnSegment.UNACCOUNTED not in parts, (r.scenario, parts)
        errors = [e for s in spans for n, e in s.events if n == "data_error"
                  and e.get(Attr.DATA_ERROR_REASON) == "clock_disagrees"]
        assert not errors, errors
        heard_s = r.greeting_ms / 1000
        assert abs(a[Attr.GREETING_TTFW] - heard_s) <= GREETING_TOLERANCE_S, (r.scenario, a, heard_s)


# what the agent's greeting figure may differ from the caller's by: the caller's joined_at is taken
# when its connect returns, the server's when it admitted the caller (one signalling round trip apart),
# and the way out is an estimate (MEDIA_FRAMING_S + the jitter buffer)
GREETING_TOLERANCE_S = 0.25


def _turn_above(span: ExportedSpan, by_id: dict[str, ExportedSpan]) -> ExportedSpan | None:
    s: ExportedSpan | None = span
    while s is not None and s.parent_id is not None:
        s = by_id.get(s.parent_id)
        if s is not None and s.name == "turn":
            return s
    return None


def test_a_hang_up_ends_the_job_and_the_call_within_seconds(first_calls: Calls, recorder: OtlpRecorder) -> None:
    for r in first_calls.results:
        spans = trace_of(recorder, r.room_sid)
        end = {s.name: s.end_ns / 1e9 for s in spans if s.name in ("call", LIVEKIT_JOB_ROOT)}
        assert end["call"] - r.hangup_at < 5.0, (r.scenario, end["call"] - r.hangup_at)
        assert end[LIVEKIT_JOB_ROOT] - r.hangup_at < 8.0, (r.scenario, end[LIVEKIT_JOB_ROOT] - r.hangup_at)
        shutdown = next(s for s in spans if s.name == "job_shutdown")
        assert shutdown.attributes.get("lk.shutdown.reason", "").startswith("session closed"), shutdown.attributes


def test_telemetry_set_up_never_blocks_a_job_loop(first_calls: Calls, recorder: OtlpRecorder,
                                                  worker: RunningWorker) -> None:
    """No stall of a job's event loop (LiveKit samples each one, with its stack) was telemetry's
    set-up: configure() and the imports it does run in the worker's set-up function, before any
    job. (With configure() in the entrypoint, every call's loop stalled 110-230 ms in
    configure -> install -> _instrument_libraries -> import.) A stall that merely sampled a span
    being started is the machine's load, not set-up: telemetry's CPU per call is in bench/.

    The check needs samples: LiveKit's loop monitor must be on in the worker and its job processes
    and must have sampled at least one stall's stack, else nothing was checked (the worker's
    environment sets LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS low enough that the calls' loops are
    sampled)."""
    from livekit.agents.telemetry import loop_monitor, trace_types

    warn_ms = worker.worker.env.get(loop_monitor.ENV_WARN_THRESHOLD_MS, "").strip()
    assert not warn_ms or float(warn_ms) > 0, f"{loop_monitor.ENV_WARN_THRESHOLD_MS}={warn_ms}: the monitor is off"
    spans = [s for r in first_calls.results for s in trace_of(recorder, r.room_sid)
             if s.name == loop_monitor.SPAN_NAME]
    stalls = [(str(s.attributes.get(trace_types.ATTR_BLOCKING_STACK, "")),
               str(s.attributes.get(trace_types.ATTR_BLOCKING_IMPORT, ""))) for s in spans]
    stalls += [(str(rec.get("stack", "")), str(rec.get("import", ""))) for rec in worker.worker.records()
               if str(rec.get("event", "")).startswith("event loop blocked")]
    # a stall without a stack (the process itself was descheduled: the watchdog woke late too) says
    # nothing about the code; the ones with a stack are what the check reads
    sampled = [(stack, imported) for stack, imported in stalls if stack]
    assert sampled, (
        f"LiveKit's loop monitor sampled no stall with its stack ({len(stalls)} stalls in all, "
        f"{len(spans)} {loop_monitor.SPAN_NAME} spans): the check below would pass on nothing; the "
        f"worker's {loop_monitor.ENV_WARN_THRESHOLD_MS} ({warn_ms or 'default'}) must be low enough "
        "that the calls' loops are sampled"
    )
    for stack, imported in sampled:
        assert not _set_up(stack, imported), (stack, imported)


def _set_up(stack: str, imported: str) -> bool:
    """The stall was in telemetry's set-up: its configure()/install() frames, or an import of
    telemetry's or OpenTelemetry's modules."""
    if "telemetry/_setup.py" in stack or "telemetry/__init__.py" in stack:
        return True
    modules = [imported, *re.findall(r"importing (\S+)", stack)]
    return any(m.startswith(("opentelemetry", "telemetry")) for m in modules if m)


def test_no_digit_of_the_callers_number_leaves_the_agent(
    first_calls: Calls, recorder: OtlpRecorder, worker: RunningWorker, history_dsn: str | None,
) -> None:
    """The PII room (named like LiveKit's SIP rooms) and the SIP caller's number: not one run of
    its digits in any exported span, metric point, exemplar, log line, console link or history key."""
    pii = first_calls.by_room(PII_ROOM)
    leaks = [(where, text) for where, text in recorder.strings() if phone_digits_in(text)]
    assert not leaks, leaks[:10]
    log_leaks = [line for line in worker.worker.log_text().splitlines() if phone_digits_in(line)]
    assert not log_leaks, log_leaks[:5]
    # the room name is kept masked (LiveKit's key), never as an id
    call = next(s for s in trace_of(recorder, pii.room_sid) if s.name == "call")
    assert call.attributes[Attr.CALL_ROOM] == "call-_+380***567_AbCd"
    # console links: the trace store's and Grafana's, by trace id; `voxpulse trace <call_id>`
    from voxpulse_console import tracestore
    from voxpulse_console.cli import _explore_link

    for s in (call, *(s for s in recorder.roots(LIVEKIT_JOB_ROOT))):
        links = [f"voxpulse trace {s.call_id}"]
        for kind in ("jaeger", "tempo"):
            links += [tracestore.create(kind).trace_link(s.trace_id), _explore_link(kind, s.trace_id)]
        assert not [link for link in links if phone_digits_in(link)]
    if history_dsn is None:
        unavailable("DB", "no PostgreSQL: the call-history part needs scripts/services.sh")
    rows = _history(history_dsn, [r.room_sid if r.scenario != "ask_operator" else SIP_CALL_ID
                                  for r in first_calls.results])
    assert len(rows["calls"]) == len(first_calls.results), rows
    for row in rows["calls"]:
        for column, value in row.items():
            if column != "phone":
                assert not phone_digits_in(str(value)), (column, value)
    phones = {row["call_id"]: row["phone"] for row in rows["calls"]}
    assert phones[SIP_CALL_ID] == PHONE  # the raw number: in the phone column only
    for table in ("call_turns", "call_tool_calls"):
        for row in rows[table]:
            assert not phone_digits_in(str(row["call_id"])), (table, row)


def _history(dsn: str, call_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    import asyncio

    import asyncpg

    async def fetch() -> dict[str, list[dict[str, Any]]]:
        conn = await asyncpg.connect(dsn)
        try:
            out = {}
            for table in ("calls", "call_turns", "call_tool_calls"):
                rows = await conn.fetch(f"SELECT * FROM {table} WHERE call_id = ANY($1::text[])", call_ids)
                out[table] = [dict(r) for r in rows]
            return out
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_livekit_metric_points_carry_no_per_job_labels(first_calls: Calls, recorder: OtlpRecorder) -> None:
    lk_points = [p for p in recorder.points() if p.scope == "livekit-agents"]
    assert lk_points, "LiveKit's own metrics were exported"
    labels = {k for p in lk_points for k in p.attributes}
    assert not labels & {"room_id", "job_id"}, labels
    # every exported metric point of every process carries only the allow-listed, low-cardinality
    # label keys (the View of telemetry.metric_views): the series do not grow with the calls
    assert labels <= LIVEKIT_METRIC_LABELS, sorted(labels - LIVEKIT_METRIC_LABELS)


# --- the server's media metrics in Prometheus ------------------------------------------------------
def _prom(expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": expr}, timeout=15)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def _poll(fn: Callable[[], Any], what: str, deadline_s: float = 60.0) -> Any:
    return wait_for(fn, what, deadline_s, every_s=1.0)


def test_dashboards_livekit_queries_and_the_loss_alert_return_data(first_calls: Calls) -> None:
    """Prometheus scrapes the stack's LiveKit server; every LiveKit panel of the dashboards (SIP
    excepted: LiveKit SIP is not built here) and the packet-loss alert's expression have data."""
    import yaml

    queries = load_script("grafana/queries.py")
    _poll(lambda: _prom('sum(livekit_packet_loss_percent_count{job="livekit", type="AUDIO"})'),
          "LiveKit's loss samples scraped")
    checked = []
    for q in queries.panel_queries():
        names = queries.promql_names(q.query).metrics if q.language == "promql" else set()
        if not any(n.startswith("livekit_") for n in names) or any(n.startswith("livekit_sip") for n in names):
            continue
        expr = queries.expand(q, rate_interval="5m", range_="1h")
        assert _poll(lambda e=expr: _prom(e), f"{q.dashboard} / {q.panel}"), expr
        checked.append(q.panel)
    assert {"Packet loss", "Jitter p95", "RTT p95", "Rooms", "Participants"} <= set(checked), checked
    rules = yaml.safe_load((ROOT / "prometheus" / "rules" / "alerts-infra.yml").read_text())
    alert = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "LiveKitPacketLossHigh")
    value = alert["expr"].strip().rsplit(">", 1)[0]
    result = _poll(lambda: _prom(value), "the packet-loss alert's value")
    assert all(float(r["value"][1]) == 0.0 for r in result)  # loopback: no loss


def test_where_the_time_goes_panels_return_data_from_real_calls(first_calls: Calls) -> None:
    """The Voice quality dashboard's anatomy panels (the parts of a turn, p50 stacked and p95 by
    owner) have data from the real calls, with the providers' parts among their series."""
    queries = load_script("grafana/queries.py")
    segments = metric_spec(Metric.TURN_SEGMENT).prometheus
    checked = []
    for q in queries.panel_queries():
        if q.language != "promql" or f"{segments}_bucket" not in queries.promql_names(q.query).metrics:
            continue
        expr = queries.expand(q, rate_interval="5m", range_="1h")
        def has_the_providers_parts(e: str = expr) -> bool:
            return {"llm_ttft", "tts_ttfb", "transport_out"} <= {r["metric"].get("voice_segment_name")
                                                                for r in _prom(e)}

        _poll(has_the_providers_parts, f"{q.dashboard} / {q.panel}: the providers' parts")
        checked.append(q.panel)
    # (both trace-store flavours of the dashboards)
    assert sorted(set(checked)) == ["Where the time goes: p50 by part of the turn (stacked)",
                                    "Where the time goes: p95 by part of the turn"], checked
    # the greeting's panels read its histograms; one greeting per call (all at once here): a rate() over
    # a series' first observation is 0, so the series themselves are checked, with the parts expected
    ttfw, parts = (metric_spec(m).prometheus for m in (Metric.GREETING_TTFW, Metric.GREETING_SEGMENT))
    greeting_panels = {q.panel for q in queries.panel_queries()
                       if {f"{ttfw}_bucket", f"{parts}_bucket"} & queries.promql_names(q.query).metrics}
    assert greeting_panels == {"The greeting: p50 by part (stacked)",
                               "The greeting: time to its first word p50 / p95"}, greeting_panels
    _poll(lambda: _prom(f"{ttfw}_count > 0"), "the greetings' time to first word in Prometheus")
    _poll(lambda: {"call_setup", "tts_ttfb", "transport_out"} <= {
        r["metric"].get("voice_segment_name") for r in _prom(f"{parts}_count > 0")}, "the greetings' parts")
    # the caller who barged in reached the interruption panels' series (empty with simulated calls; a
    # rate() over a series' first observation is 0, so the series themselves are checked)
    interruptions = metric_spec(Metric.INTERRUPTIONS).prometheus
    yields = metric_spec(Metric.YIELD_TIME).prometheus
    panels = {q.panel for q in queries.panel_queries()
              if {interruptions, f"{yields}_bucket"} & queries.promql_names(q.query).metrics}
    assert panels == {"Interruptions per minute by direction", "Time to yield after a barge-in p95"}, panels
    _poll(lambda: _prom(f'{interruptions}{{voice_interruption_direction="caller", '
                        f'voice_interruption_kind="interruption"}} > 0'), "the caller's barge-in in Prometheus")
    _poll(lambda: _prom(f"{yields}_count > 0"), "the agent's yield after it in Prometheus")


# --- cardinality -----------------------------------------------------------------------------------
# Series that appear with machine load, not with calls (a bounded set of values each): the call
# history's records by (result, buffer) gain "buffered"/"flushed" via Redis when a PostgreSQL write
# is slow on a loaded machine -- at most 5 results x 3 buffers.
LOAD_DRIVEN = {"lk.agents.event_loop.blocked_duration": 4, "voxpulse.export.dropped": 4,
               "voxpulse.calllog.records": 15,
               # a turn over its latency budget on a loaded machine: one series per budget (the turn's, each part's)
               "voice.budget.breaches": 1 + len(TurnSegment),
               # a call where the agent starts answering while the caller still speaks (a long line the VAD
               # split), or a barge-in: direction x kind, and the yield histogram
               "voice.interruptions": 4, "voice.interruption.yield_time": 1,
               # a turn's parts: which ones a turn has depends on it (a tool call, a metric LiveKit reported
               # late on a loaded machine: "unaccounted"), one series per part at most
               "voice.turn.segment.duration": len(TurnSegment), "voice.greeting.segment.duration": len(TurnSegment)}


def test_series_count_is_the_same_after_20_calls_as_after_2(
    first_calls: Calls, worker: RunningWorker, lk_stack: Any, recorder: OtlpRecorder,
) -> None:
    """LiveKit stamps room_id and job_id on every one of its metric points, and every call runs in a
    job process of its own (an `instance` of its own): none of it becomes a series. The agent's
    metrics reach the collector through the worker's relay, one writer. Checked at the agent's OTLP
    boundary and in Prometheus (SDK and span metrics); the LiveKit server's own series carry no
    room, participant or job."""
    from .conftest import failed_calls, jobs_done, place

    def settle(results: list[Any]) -> None:
        failed = failed_calls(results, worker, lk_stack)
        assert not failed, failed
        assert jobs_done(recorder, [r.room_sid for r in results]), worker.worker.tail(40)

    ours = f'{{job=~".*{worker.service}"}}'
    spans = f'{{__name__=~"traces_span_metrics_.+", service_name="{worker.service}", span_name!~"{LOAD_SPANS}"}}'

    def prom_series() -> dict[str, int]:
        # the agent's own (SDK) series; its span metrics (job = its service too) are checked below
        rows = _prom(f'count by (__name__) ({{job=~".*{worker.service}", __name__!~"traces_span_metrics_.+"}})')
        return {r["metric"]["__name__"]: int(r["value"][1]) for r in rows}

    def span_series() -> set[frozenset[tuple[str, str]]]:
        """The span metrics' series of this worker (one histogram family: its _count)."""
        count = spans.replace('traces_span_metrics_.+', 'traces_span_metrics_calls_total')
        return {frozenset(r["metric"].items()) for r in _prom(count)}

    def prom_calls() -> float:
        rows = _prom(f'sum(voice_calls_total{ours})')
        return float(rows[0]["value"][1]) if rows else 0.0

    done = len(first_calls.results)
    settle(place(worker, lk_stack, ["ask_operator"] * 2, concurrency=2, arrival_s=0.3))
    done += 2
    _poll(lambda: prom_calls() >= done, f"{done} calls in Prometheus", deadline_s=90)
    agent_2, prom_2, spans_2 = recorder.series(), prom_series(), span_series()
    settle(place(worker, lk_stack, ["ask_operator"] * 18, concurrency=4, arrival_s=0.5))
    done += 18
    _poll(lambda: prom_calls() >= done, f"{done} calls in Prometheus", deadline_s=90)
    agent_20, prom_20, spans_20 = recorder.series(), prom_series(), span_series()

    grown = {name: (len(agent_2.get(name, ())), len(sets)) for name, sets in agent_20.items()
             if name not in LOAD_DRIVEN and sets != agent_2.get(name)}
    assert not grown, grown
    for name in LOAD_DRIVEN.keys() & set(agent_20):
        assert len(agent_20[name]) <= LOAD_DRIVEN[name], (name, agent_20[name])
    prom_grown = {n: (prom_2.get(n), c) for n, c in prom_20.items()
                  if c != prom_2.get(n) and not _load_driven_prometheus(n)}
    assert not prom_grown, prom_grown
    assert prom_calls() == done
    # LiveKit's ids, a caller's identity, a room's name (agent.caller: voxpulse-<scenario>-<6 hex>, or a
    # phone call's call-_<number>_<suffix>), a trace id; "voxpulse-sim" is a provider's name, no call's
    per_call = re.compile(r"^(RM|PA|AJ|TR|AW|SCL)_|caller-|^voxpulse-\w+-[0-9a-f]{6}$|call-_|^[0-9a-f]{32}$")
    # span metrics: a span that happens only in some calls (an error status, a tool a caller asked
    # for) adds its series when it first happens -- a bounded set; what must never appear is a series
    # keyed by the call (its id, room, job, trace), and the set must not keep growing with calls
    new_spans = spans_20 - spans_2
    keyed = [dict(s) for s in new_spans if any(per_call.search(v) for _k, v in s)]
    assert not keyed, keyed
    assert len(new_spans) <= 4, sorted(map(sorted, new_spans))
    # the LiveKit server's series: none keyed by a room, participant or job
    for row in _prom('{job="livekit"}'):
        keyed = {k: v for k, v in row["metric"].items() if per_call.search(v)}
        assert not keyed, (row["metric"]["__name__"], keyed)


LOAD_SPANS = "event_loop_blocked"


def _load_driven_prometheus(name: str) -> bool:
    """Whether a Prometheus series name belongs to one of the LOAD_DRIVEN metrics."""
    return name.startswith(tuple(metric.replace(".", "_") for metric in LOAD_DRIVEN))

