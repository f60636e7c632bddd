"""The trace of each simulated scenario: real AgentSessions, offline, production telemetry path."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from agent.sim.scenarios import PHONE, SCENARIOS
from telemetry.semconv import OTHER, Attr, CallOutcome

from .conftest import FIXED, TEST_PRICES, Run, run_sim


def test_every_scenario_ends_as_expected(scenario_run: Run) -> None:
    got = {c.scenario: (c.outcome, c.error) for c in scenario_run.summary.calls}
    assert got == {name: (s.expected.value, None) for name, s in SCENARIOS.items()}


def test_one_trace_per_call_and_call_id_on_every_span(scenario_run: Run) -> None:
    traces: dict[int, set[str]] = {}
    for span in scenario_run.spans:
        call_id = (span.attributes or {}).get(Attr.CALL_ID)
        assert isinstance(call_id, str), f"span {span.name} has no call_id"
        traces.setdefault(span.context.trace_id, set()).add(call_id)
    # every trace holds exactly one call, and every call exactly one trace
    assert all(len(ids) == 1 for ids in traces.values())
    assert len(traces) == len(scenario_run.summary.calls)
    roots = [s for s in scenario_run.spans if s.parent is None]
    assert sorted(r.name for r in roots) == ["call"] * len(scenario_run.summary.calls)
    for c in scenario_run.summary.calls:
        root = next(r for r in roots if r.attributes[Attr.CALL_ID] == c.call_id)
        assert format(root.context.trace_id, "032x") == c.trace_id


def test_stage_spans_present_with_provider_and_model(scenario_run: Run) -> None:
    c = scenario_run.call("order_tyres")
    spans = scenario_run.by_call(c.call_id)
    stages = Counter((s.attributes or {}).get(Attr.STAGE) for s in spans)
    assert stages["stt"] == 3 and stages["turn"] == 3
    assert stages["llm"] >= 5 and stages["tts"] >= 3 and stages["tool"] == 2
    for s in spans:
        attrs = s.attributes or {}
        if attrs.get(Attr.STAGE) in ("stt", "llm", "tts"):
            assert attrs.get(Attr.PROVIDER) == "voxpulse-sim", s.name
            assert attrs.get(Attr.MODEL), s.name
    names = {s.name for s in spans if (s.attributes or {}).get(Attr.STAGE)}
    assert names == {"speech_to_text", "turn", "llm_request", "tts_request", "function_tool"}
    # exactly one span per tool request carries voice.stage: the traced tool body does not
    tool_stage = [s.name for s in spans if (s.attributes or {}).get(Attr.STAGE) == "tool"]
    assert tool_stage == ["function_tool", "function_tool"]
    assert {s.name for s in spans} >= {"execute_tool find_tyres", "execute_tool create_order",
                                       "store_api.find_tyres", "store_api.create_order"}


def test_one_subtree_per_turn_under_the_session(scenario_run: Run) -> None:
    """Each turn is one subtree: LiveKit's user_turn (speech, end of turn), our speech_to_text and
    LiveKit's agent_turn (LLM, tools, TTS, playout) below the turn, which sits below LiveKit's
    agent_session, which sits below the call."""
    c = scenario_run.call("order_tyres")
    spans = scenario_run.by_call(c.call_id)
    by_id = {s.context.span_id: s for s in spans}
    root = next(s for s in spans if s.name == "call")
    session = next(s for s in spans if s.name == "agent_session")
    assert session.parent.span_id == root.context.span_id
    turns = sorted((s for s in spans if s.name == "turn"), key=lambda s: s.attributes[Attr.TURN_INDEX])
    assert [t.attributes[Attr.TURN_INDEX] for t in turns] == [0, 1, 2]
    assert all(t.parent.span_id == session.context.span_id for t in turns)
    turn_ids = {t.context.span_id: t for t in turns}
    for stt in (s for s in spans if s.name == "speech_to_text"):
        parent = turn_ids[stt.parent.span_id]
        assert parent.attributes[Attr.TURN_INDEX] == stt.attributes[Attr.TURN_INDEX]
    for name in ("user_turn", "agent_turn"):
        nested = [s for s in spans if s.name == name and s.parent.span_id in turn_ids]
        assert len({turn_ids[s.parent.span_id].attributes[Attr.TURN_INDEX] for s in nested}) == 3, name
    # the greeting is no turn: its agent_turn stays under the session
    assert [s.parent.span_id for s in spans if s.name == "agent_turn" and s.parent.span_id not in turn_ids] == [
        session.context.span_id]
    # every LLM, tool and TTS span of a turn is in that turn's subtree
    def turn_of(span: object) -> int | None:
        s = span
        while s is not None and getattr(s, "parent", None) is not None:
            s = by_id.get(s.parent.span_id)  # type: ignore[attr-defined]
            if s is not None and s.name == "turn":
                return int(s.attributes[Attr.TURN_INDEX])
        return None
    staged = [s for s in spans if (s.attributes or {}).get(Attr.STAGE) in ("llm", "tool", "tts")]
    answers = [s for s in staged if turn_of(s) is not None]
    assert {turn_of(s) for s in answers} == {0, 1, 2}
    assert len(staged) - len(answers) == 2  # the greeting's llm_request is none: its TTS only
    assert root.attributes[Attr.CALL_TURNS] == 3
    assert [t.attributes[Attr.TURN_TOOL_CALLS] for t in turns] == [1, 1, 0]


def test_tool_arguments_are_redacted(scenario_run: Run) -> None:
    raw_digits = PHONE[4:]  # the number without the country code must appear nowhere
    for span in scenario_run.spans:
        for key, value in (span.attributes or {}).items():
            assert raw_digits not in str(value), f"{span.name}.{key} leaks the phone number"
    c = scenario_run.call("order_tyres")
    tools = [s for s in scenario_run.by_call(c.call_id)
             if s.name in ("function_tool", "execute_tool create_order")
             and s.attributes.get(Attr.TOOL_NAME) == "create_order"]
    assert len(tools) == 2
    by_name = {s.name: s for s in tools}
    # ours carries the redacted arguments; LiveKit captures content only with content="full"
    args = json.loads(by_name["execute_tool create_order"].attributes[Attr.TOOL_ARGUMENTS])
    assert args["phone"] == "+380***567"
    assert Attr.TOOL_ARGUMENTS not in by_name["function_tool"].attributes
    # LiveKit's content keys (lk.pii.*) are dropped; the two of LiveKit's PII keys VoxPulse sets on
    # the call span itself (room name, caller number) are kept masked
    own = {Attr.CALL_ROOM, Attr.CALL_CALLER}
    lk_pii = {k for s in scenario_run.spans for k in (s.attributes or {}) if k.startswith("lk.pii.")}
    assert lk_pii == own
    for s in scenario_run.spans:
        if Attr.CALL_CALLER in (s.attributes or {}):
            assert s.name == "call" and s.attributes[Attr.CALL_CALLER] == "+380***567"


def test_outcome_and_transfer_reason_on_the_root(scenario_run: Run) -> None:
    expect = {
        "order_tyres": ("resolved_by_bot", None),
        "ask_operator": ("transferred", "customer_request"),
        "angry_caller": ("transferred", "angry_customer"),
        "store_outage": ("transferred", "store_unavailable"),
        "hangup_mid_answer": ("abandoned", None),
        "llm_outage": ("failed", None),
    }
    for scenario, (outcome, reason) in expect.items():
        c = scenario_run.call(scenario)
        root = next(s for s in scenario_run.by_call(c.call_id) if s.name == "call")
        assert root.attributes[Attr.CALL_OUTCOME] == outcome, scenario
        assert root.attributes.get(Attr.CALL_TRANSFER_REASON) == reason, scenario
    transfers = {p.attributes[Attr.CALL_TRANSFER_REASON]: p.value
                 for p in scenario_run.metrics["voice.transfers"]}
    assert transfers == {"customer_request": 1, "angry_customer": 1, "store_unavailable": 1}


def test_cost_is_price_table_times_usage(scenario_run: Run) -> None:
    for c in scenario_run.summary.calls:
        usage = scenario_run.sessions[c.call_id].session.usage
        expected = 0.0
        for u in usage.model_usage:
            if u.type == "llm_usage":
                expected += u.input_tokens / 1000 * 0.001 + u.output_tokens / 1000 * 0.002
            elif u.type == "tts_usage":
                expected += u.characters_count * 0.00002
            elif u.type == "stt_usage":
                expected += u.audio_duration / 60 * 0.01
        assert expected > 0
        root = next(s for s in scenario_run.by_call(c.call_id) if s.name == "call")
        assert root.attributes[Attr.CALL_COST_USD] == pytest.approx(expected, abs=1e-6)
        assert c.cost_usd == pytest.approx(expected, abs=1e-6)
    # the cost histogram saw every call; the spend counter is split by stage
    assert sum(p.count for p in scenario_run.metrics["voice.call.cost"]) == len(scenario_run.summary.calls)
    stages = {p.attributes[Attr.STAGE] for p in scenario_run.metrics["voice.api.spend"]}
    assert stages == {"llm", "stt", "tts"}
    assert TEST_PRICES.llm.input_per_1k_tokens == 0.001


def test_prompt_injection_produces_the_anomaly_metric(scenario_run: Run) -> None:
    c = scenario_run.call("prompt_injection")
    assert c.anomalies == [("export_customer_database", "unknown_tool")]
    points = scenario_run.metrics["voice.tool.anomalies"]
    # a tool name the model made up is not a label value (unbounded): "_OTHER"; the span event keeps it
    assert [(p.attributes[Attr.TOOL_NAME], p.attributes[Attr.TOOL_ANOMALY], p.value) for p in points] == [
        (OTHER, "unknown_tool", 1)
    ]
    turn = next(s for s in scenario_run.by_call(c.call_id) if s.name == "turn" and s.attributes[Attr.TURN_INDEX] == 0)
    assert turn.attributes[Attr.TOOL_ANOMALY] == "unknown_tool"
    assert [e.name for e in turn.events] == ["tool_anomaly"]
    assert turn.events[0].attributes[Attr.TOOL_NAME] == "export_customer_database"
    # the other calls raised none
    assert all(not o.anomalies for o in scenario_run.summary.calls if o.scenario != "prompt_injection")


def test_store_errors_are_counted_by_status(scenario_run: Run) -> None:
    by_status = {p.attributes[Attr.HTTP_STATUS]: p.value for p in scenario_run.metrics["voice.store_api.errors"]}
    assert by_status == {503: 5, 502: 1}
    assert {p.value for p in scenario_run.metrics["voice.orders.created"]} == {1}
    assert {p.value for p in scenario_run.metrics["voice.fittings.booked"]} == {1}


def test_business_metrics_and_ttfc_by_stage(scenario_run: Run) -> None:
    calls = {(p.attributes[Attr.CALL_OUTCOME], p.attributes[Attr.CALL_SCENARIO]): p.value
             for p in scenario_run.metrics["voice.calls"]}
    assert calls[("resolved_by_bot", "order")] == 3  # order_tyres, prompt_injection, tool_error
    assert calls[("transferred", "operator")] == 2  # ask_operator, angry_caller
    assert calls[("transferred", "order")] == 1  # store_outage: an order call the bot could not serve
    ttfc = {p.attributes[Attr.STAGE]: p for p in scenario_run.metrics["voice.stage.time_to_first_chunk"]}
    assert set(ttfc) == {"stt", "llm", "tts"}
    assert ttfc["llm"].min == pytest.approx(FIXED.llm_ttft.median_s, abs=0.03)
    assert ttfc["tts"].min == pytest.approx(FIXED.tts_ttfb.median_s, abs=0.03)
    ttfw = scenario_run.metrics["voice.turn.time_to_first_word"]
    n_turns = sum(len([t for t in c.turns if t.ttfw_ms is not None]) for c in scenario_run.summary.calls)
    assert sum(p.count for p in ttfw) == n_turns > 10
    # exemplars lead back to the calls' traces
    trace_ids = {int(c.trace_id, 16) for c in scenario_run.summary.calls}
    assert {e.trace_id for p in ttfw for e in p.exemplars} <= trace_ids


@pytest.mark.slow
def test_ttfw_per_turn_is_measured_live_and_bounded_by_the_providers() -> None:
    """Every turn has its live TTFW, on the span in seconds and in the results in ms, and never below
    what the providers' delays allow. How close it comes to the fakes' own clocks is a timing of the
    event loop (10 ms for one call alone): python -m bench.bench_agent measures it at concurrency 1."""
    run = run_sim(["order_status", "order_tyres"], concurrency=1)
    min_implied = FIXED.vad_silence_s + FIXED.llm_ttft.median_s + FIXED.tts_ttfb.median_s
    turns = [t for c in run.summary.calls for t in c.turns]
    assert len(turns) == 5
    for c in run.summary.calls:
        turn_spans = {s.attributes[Attr.TURN_INDEX]: s for s in run.by_call(c.call_id) if s.name == "turn"}
        for t in c.turns:
            assert t.ttfw_ms is not None and t.truth_ttfw_ms is not None
            # no faster than the providers' delays allow (turns with tools add an LLM step + the tool)
            floor = min_implied + (FIXED.llm_ttft.median_s if t.tools else 0.0)
            assert t.ttfw_ms >= floor * 1000 - 5, t
            # on the span in seconds (OTel's unit), in the history and the results in ms
            assert round(turn_spans[t.index].attributes[Attr.TURN_TTFW] * 1000, 1) == t.ttfw_ms


def test_two_concurrent_calls_never_share_spans() -> None:
    run = run_sim(["order_tyres", "order_tyres"], concurrency=2, arrival_s=0.0)
    a, b = run.summary.calls
    assert a.call_id != b.call_id and a.trace_id != b.trace_id
    spans_a, spans_b = run.by_call(a.call_id), run.by_call(b.call_id)
    assert len(spans_a) + len(spans_b) == len(run.spans)
    assert {s.context.trace_id for s in spans_a} == {int(a.trace_id, 16)}
    assert {s.context.trace_id for s in spans_b} == {int(b.trace_id, 16)}
    ids_a = {s.context.span_id for s in spans_a}
    assert not ids_a & {s.context.span_id for s in spans_b}
    # parents stay inside their own call
    assert all(s.parent is None or s.parent.span_id in ids_a for s in spans_a)
    assert a.outcome == b.outcome == CallOutcome.RESOLVED_BY_BOT.value


def test_call_history_is_fed(scenario_run: Run) -> None:
    log = scenario_run.call_log
    calls = {c.call_id: c for c in scenario_run.summary.calls}
    assert sorted(log.started) == sorted(calls)
    for call_id, outcome, reason, cost, turns in log.ended:
        c = calls[call_id]
        assert (outcome, reason, turns) == (c.outcome, c.transfer_reason, len(c.turns))
        assert cost == pytest.approx(c.cost_usd, abs=1e-6)
    order = scenario_run.call("order_tyres").call_id
    turns = [(i, who) for cid, i, who, _, _ in log.turns if cid == order]
    assert turns == [(0, "user"), (0, "agent"), (1, "user"), (1, "agent"), (2, "user"), (2, "agent")]
    agent_ttfw = [kw["ttfw_ms"] for cid, _, who, _, kw in log.turns if cid == order and who == "agent"]
    assert agent_ttfw == [t.ttfw_ms for t in scenario_run.call("order_tyres").turns]
    tools = [(name, args, kw["success"], kw["turn_index"]) for cid, name, args, _, kw in log.tools if cid == order]
    assert [t[0] for t in tools] == ["find_tyres", "create_order"]
    assert tools[1][1]["phone"] == PHONE  # raw in the history store (masked everywhere else)
    outage = scenario_run.call("store_outage").call_id
    assert [(n, kw["success"]) for cid, n, _, _, kw in log.tools if cid == outage] == [
        ("find_tyres", False), ("find_tyres", False), ("transfer_to_operator", True)]


def test_history_logger_matches_the_protocol() -> None:
    import inspect

    from telemetry.history.logger import CallLogger
    from telemetry.livekit import CallLog

    for name in ("bind_call", "log_turn", "log_tool_call"):
        want = inspect.signature(getattr(CallLog, name))
        have = inspect.signature(getattr(CallLogger, name))
        for p in want.parameters.values():
            assert p.name in have.parameters, f"CallLogger.{name} lacks {p.name}"
