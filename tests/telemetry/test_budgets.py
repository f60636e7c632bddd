"""Latency budgets during the call: a turn that runs over while the caller waits fires the budget
hook at that moment (a real AgentSession on the simulator's providers), parts of the turn are
checked when known, and a hook's failure never reaches the call."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from telemetry.exceptions import TelemetryConfigError
from telemetry.livekit import BudgetBreach, Budgets, SessionInstrumentation
from telemetry.semconv import Attr, Metric, TurnSegment
from telemetry.testing import capture_telemetry


def test_budgets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOXPULSE_TURN_BUDGET", raising=False)
    monkeypatch.delenv("VOXPULSE_SEGMENT_BUDGETS", raising=False)
    monkeypatch.delenv("VOXPULSE_TTFW_OBJECTIVE_S", raising=False)
    assert Budgets.from_env() == Budgets(turn_s=3.0, segments={})  # the seed's objective
    monkeypatch.setenv("VOXPULSE_TTFW_OBJECTIVE_S", "2.5")
    assert Budgets.from_env().turn_s == 2.5  # the slow-turn objective, when the budget is not its own
    monkeypatch.setenv("VOXPULSE_TURN_BUDGET", "0")
    monkeypatch.setenv("VOXPULSE_SEGMENT_BUDGETS", "llm_ttft=1.5, tts_ttfb=0.4")
    assert Budgets.from_env() == Budgets(
        turn_s=None, segments={TurnSegment.LLM_TTFT: 1.5, TurnSegment.TTS_TTFB: 0.4})
    monkeypatch.setenv("VOXPULSE_SEGMENT_BUDGETS", "llm=1.5")
    with pytest.raises(TelemetryConfigError, match=r"VOXPULSE_SEGMENT_BUDGETS has 'llm=1\.5'.*llm_ttft"):
        Budgets.from_env()
    monkeypatch.setenv("VOXPULSE_TURN_BUDGET", "soon")
    with pytest.raises(TelemetryConfigError, match="VOXPULSE_TURN_BUDGET"):
        Budgets.from_env()


def simulate(monkeypatch: pytest.MonkeyPatch, hook: Any, *, llm_ttft: float, **env: str) -> Any:
    from agent.sim.fake_shop import FakeStore
    from agent.sim.latency import ProviderProfile
    from agent.sim.scenarios import SCENARIOS
    from agent.sim.simulator import SimOptions
    from agent.sim.simulator import run_call as simulate_call

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    profile = ProviderProfile.fixed(stt_final=0.1, llm_ttft=llm_ttft, tts_ttfb=0.1, vad_silence_s=0.2)

    def hooked(instr: SessionInstrumentation) -> None:
        instr.on_budget_exceeded(hook)

    async def one() -> Any:
        async with FakeStore(latency_s=0.01, seed=1) as store:
            return await simulate_call(0, SCENARIOS["order_status"], seed=5, store=store,
                                       options=SimOptions(profile=profile), on_instrumented=hooked)

    return asyncio.run(one())


def test_a_slow_turn_fires_the_hook_while_the_caller_still_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[float, BudgetBreach]] = []
    with capture_telemetry() as cap:
        result = simulate(monkeypatch, lambda b: seen.append((time.time(), b)), llm_ttft=0.9,
                          VOXPULSE_TURN_BUDGET="0.5", VOXPULSE_SEGMENT_BUDGETS="")
        assert result.error is None
        turns = {int((s.attributes or {})[Attr.TURN_INDEX]): s  # type: ignore[arg-type]
                 for s in cap.spans_named("turn")}
        assert len(turns) == len(result.turns) >= 2
        live = [(at, b) for at, b in seen if b.live]
        assert sorted(b.turn_index for _, b in live) == sorted(turns)  # every turn, once, live
        for _, b in live:
            span = turns[b.turn_index]
            ttfw = (span.attributes or {})[Attr.TURN_TTFW]
            assert isinstance(ttfw, float)
            assert b.budget == "time_to_first_word" and b.budget_s == 0.5
            assert 0.5 <= b.elapsed_s < ttfw  # fired on time, before the first word
            [ev] = [e for e in span.events if e.name == "budget_exceeded"]
            assert (ev.attributes or {})[Attr.BUDGET_LIVE] is True
        points = cap.metric_points(Metric.BUDGET_BREACHES)
        assert [(p.attributes[Attr.BUDGET], p.value) for p in points] == [("time_to_first_word", len(turns))]
        assert {e.span_id for p in points for e in p.exemplars} <= {s.context.span_id for s in turns.values()}


def test_a_quick_turn_fires_nothing_and_a_slow_part_is_found_afterwards(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[BudgetBreach] = []
    with capture_telemetry() as cap:
        result = simulate(monkeypatch, seen.append, llm_ttft=0.3,
                          VOXPULSE_TURN_BUDGET="3", VOXPULSE_SEGMENT_BUDGETS="llm_ttft=0.2")
        assert result.error is None
        assert seen and all(not b.live and b.budget == "llm_ttft" and b.elapsed_s > 0.2 for b in seen)
        assert not [p for p in cap.metric_points(Metric.BUDGET_BREACHES)
                    if p.attributes[Attr.BUDGET] == "time_to_first_word"]


def test_a_malformed_budget_never_reaches_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    with capture_telemetry() as cap:
        result = simulate(monkeypatch, lambda _: None, llm_ttft=0.2, VOXPULSE_TURN_BUDGET="soon",
                          VOXPULSE_SEGMENT_BUDGETS="", VOXPULSE_RAISE_INTERNAL_ERRORS="false")
        assert result.error is None and result.turns and all(t.ttfw_ms is not None for t in result.turns)
        sites = {p.attributes[Attr.INTERNAL_ERROR_SITE]: p.value for p in cap.metric_points(Metric.INTERNAL_ERRORS)}
        assert sites.get("livekit.budgets") == 1


def test_a_failing_hook_never_reaches_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(_: BudgetBreach) -> None:
        raise RuntimeError("the agent's hook is broken")

    with capture_telemetry() as cap:
        result = simulate(monkeypatch, broken, llm_ttft=0.9, VOXPULSE_TURN_BUDGET="0.5",
                          VOXPULSE_SEGMENT_BUDGETS="", VOXPULSE_RAISE_INTERNAL_ERRORS="false")
        assert result.error is None and all(t.ttfw_ms is not None for t in result.turns)
        sites = {p.attributes[Attr.INTERNAL_ERROR_SITE]: p.value for p in cap.metric_points(Metric.INTERNAL_ERRORS)}
        assert sites.get("livekit.budget_hook", 0) >= 1
