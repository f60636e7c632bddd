"""Impossible durations (LiveKit has reported a wrapped 18446744073500970 µs user_speaking,
livekit/agents#7307, and transcription delays over 200 s, #6093) are data errors: counted in
voxpulse.data.errors by source, put on the span as a data_error event with the raw value, and kept
out of every histogram and span duration attribute. The session tests drive a real (unstarted)
AgentSession with LiveKit's own event and metrics objects."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest
from livekit.agents import AgentSession
from livekit.agents.llm import ChatMessage
from livekit.agents.metrics import LLMMetrics, TTSMetrics
from livekit.agents.metrics.usage import AgentSessionUsage, STTModelUsage
from livekit.agents.voice.events import (
    AgentStateChangedEvent,
    ConversationItemAddedEvent,
    MetricsCollectedEvent,
    UserStateChangedEvent,
)
from opentelemetry.sdk.trace import ReadableSpan

from agent.sim.providers import CallerVoice, ScriptedSTT
from telemetry import _quality
from telemetry import livekit as lk
from telemetry.livekit import _pricing
from telemetry.pricing import ModelPrice, PriceTable
from telemetry.semconv import Attr, Metric, SpanName, Stage
from telemetry.testing import CapturedTelemetry, capture_telemetry

WRAPPED_USER_SPEAKING_S = 18446744073500970 / 1e6  # livekit/agents#7307, reported in µs


def errors(cap: CapturedTelemetry) -> dict[tuple[str, str], int]:
    """voxpulse.data.errors as {(source, reason): count}."""
    return {
        (str(p.attributes[Attr.DATA_ERROR_SOURCE]), str(p.attributes[Attr.DATA_ERROR_REASON])): int(p.value)
        for p in cap.metric_points(Metric.DATA_ERRORS)
    }


def data_error_events(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == _quality.DATA_ERROR_EVENT]


def ttfc_points(cap: CapturedTelemetry, stage: Stage) -> list[Any]:
    return [p for p in cap.metric_points(Metric.STAGE_TTFC) if p.attributes.get(Attr.STAGE) == stage.value]


# ------------------------------------------------------------------------------------------------
# the guard
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "value", "within_s", "reason"), [
    ("livekit.user.speaking", WRAPPED_USER_SPEAKING_S, None, "wrapped"),
    ("livekit.stt.transcription_delay", 200.0, 10.0, "exceeds_call"),
    ("livekit.llm.ttft", -0.25, None, "negative"),
    ("livekit.llm.ttft", math.nan, None, "not_finite"),
    ("livekit.tts.ttfb", math.inf, None, "not_finite"),
    ("livekit.tts.ttfb", "soon", None, "not_finite"),
])
def test_an_impossible_duration_is_a_data_error(source: str, value: object, within_s: float | None,
                                                reason: str) -> None:
    with capture_telemetry() as cap:
        from telemetry._state import STATE

        with STATE.tracer.start_as_current_span("probe"):
            assert _quality.duration(source, value, within_s=within_s) is None
        assert errors(cap) == {(source, reason): 1}
        (event,) = data_error_events(cap.spans_named("probe")[0])
    assert event[Attr.DATA_ERROR_SOURCE] == source and event[Attr.DATA_ERROR_REASON] == reason
    raw = event[Attr.DATA_ERROR_VALUE]
    assert (math.isnan(raw) if not isinstance(value, float) or math.isnan(value) else raw == value)
    if reason == "exceeds_call":
        assert event[Attr.DATA_ERROR_LIMIT] == 10.0


def test_possible_durations_pass_unchanged_and_count_nothing() -> None:
    with capture_telemetry() as cap:
        assert _quality.duration("livekit.stt.transcription_delay", 0.35, within_s=10.0) == 0.35
        assert _quality.duration("livekit.llm.ttft", 0, within_s=10.0) == 0.0
        assert _quality.duration("livekit.llm.ttft", 10.9, within_s=10.0) == 10.9  # within the clocks' slack
        assert _quality.duration("livekit.llm.ttft", None) is None  # not reported: no error
        assert _quality.interval("livekit.user.speaking", 100.0, 102.5, within_s=10.0) == 2.5
        assert _quality.interval("livekit.user.speaking", None, 102.5) is None
        assert errors(cap) == {}


def test_an_interval_whose_clock_went_backwards_is_a_data_error() -> None:
    with capture_telemetry() as cap:
        assert _quality.interval("livekit.ttfw", 100.0, 99.5) is None
        assert errors(cap) == {("livekit.ttfw", "clock_backwards"): 1}


# ------------------------------------------------------------------------------------------------
# a call: LiveKit's events into SessionInstrumentation
# ------------------------------------------------------------------------------------------------
def session() -> AgentSession[None]:
    return AgentSession(stt=ScriptedSTT(CallerVoice(), model="stt-model"))


def run_call(play: Callable[[AgentSession[None], float], None]) -> CapturedTelemetry:
    """Instruments a real AgentSession for one call and plays LiveKit's events into it;
    ``play(session, t0)`` gets the call's start (LiveKit's timestamps are relative to it)."""
    async def call() -> None:
        sess = session()  # in the loop: an AgentSession binds to the running one
        instr = lk.instrument_session(sess, call_id="call-dq", call_log=False, wait_for_close=False)
        async with instr as scope:
            play(sess, scope.started_at)

    with capture_telemetry() as cap:
        asyncio.run(call())
        cap.spans()  # exported before the capture ends
    return cap


def user_turn(sess: AgentSession[None], t0: float, *, metrics: dict[str, float], agent_at: float) -> None:
    """The caller speaks 7-9 s into the call, the transcript arrives at 10 s, the agent answers."""
    sess.emit("user_state_changed", UserStateChangedEvent(old_state="listening", new_state="speaking",
                                                          created_at=t0 + 7))
    sess.emit("user_state_changed", UserStateChangedEvent(old_state="speaking", new_state="listening",
                                                          created_at=t0 + 9))
    msg = ChatMessage(role="user", content=["скільки коштує шина"], metrics=metrics,  # type: ignore[typeddict-item]
                      created_at=t0 + 10)
    sess.emit("conversation_item_added", ConversationItemAddedEvent(item=msg, created_at=t0 + 10))
    sess.emit("agent_state_changed", AgentStateChangedEvent(old_state="thinking", new_state="speaking",
                                                            created_at=agent_at))


def test_a_200s_transcription_delay_in_a_10s_call_stays_out_of_the_stt_span_and_histogram() -> None:
    with_delay: dict[str, float] = {}

    def play(sess: AgentSession[None], t0: float) -> None:
        with_delay.update(started_speaking_at=t0 + 7, stopped_speaking_at=t0 + 9, transcription_delay=200.0)
        user_turn(sess, t0, metrics=with_delay, agent_at=t0 + 10.5)

    cap = run_call(play)
    (stt,) = cap.spans_named(SpanName.STT)
    assert Attr.STREAM_TTFC not in (stt.attributes or {})
    assert stt.end_time is not None and stt.start_time is not None
    assert (stt.end_time - stt.start_time) / 1e9 == pytest.approx(1.0)  # end of speech -> transcript
    assert ttfc_points(cap, Stage.STT) == []
    assert errors(cap) == {("livekit.stt.transcription_delay", "exceeds_call"): 1}
    (turn,) = cap.spans_named(SpanName.TURN)
    (event,) = data_error_events(turn)
    assert event[Attr.DATA_ERROR_VALUE] == 200.0
    assert event[Attr.DATA_ERROR_LIMIT] == pytest.approx(10.0, abs=0.5)
    # the rest of the turn is measured as usual
    assert (turn.attributes or {})[Attr.TURN_TTFW] == pytest.approx(1.5)


def test_a_possible_transcription_delay_is_recorded() -> None:
    def play(sess: AgentSession[None], t0: float) -> None:
        user_turn(sess, t0, metrics={"started_speaking_at": t0 + 7, "stopped_speaking_at": t0 + 9,
                                     "transcription_delay": 0.4}, agent_at=t0 + 10.5)

    cap = run_call(play)
    (stt,) = cap.spans_named(SpanName.STT)
    assert (stt.attributes or {})[Attr.STREAM_TTFC] == 0.4
    assert (stt.attributes or {})[Attr.STT_AUDIO_SECONDS] == 2.0
    assert [p.sum for p in ttfc_points(cap, Stage.STT)] == [pytest.approx(0.4)]
    assert errors(cap) == {}


def test_a_wrapped_user_speaking_duration_is_neither_audio_seconds_nor_the_end_of_speech() -> None:
    def play(sess: AgentSession[None], t0: float) -> None:
        user_turn(sess, t0, metrics={"started_speaking_at": t0 + 7,
                                     "stopped_speaking_at": t0 + 7 + WRAPPED_USER_SPEAKING_S},
                  agent_at=t0 + 10.5)

    cap = run_call(play)
    assert errors(cap) == {("livekit.user.speaking", "wrapped"): 1}
    # the session's own speaking events (7 s -> 9 s) stand in for LiveKit's impossible pair
    (stt,) = cap.spans_named(SpanName.STT)
    assert (stt.attributes or {})[Attr.STT_AUDIO_SECONDS] == 2.0
    (turn,) = cap.spans_named(SpanName.TURN)
    assert (turn.attributes or {})[Attr.TURN_TTFW] == pytest.approx(1.5)
    assert [p.sum for p in cap.metric_points(Metric.TTFW)] == [pytest.approx(1.5)]
    (event,) = data_error_events(turn)
    assert event[Attr.DATA_ERROR_VALUE] == pytest.approx(WRAPPED_USER_SPEAKING_S)


def test_an_answer_before_the_end_of_speech_is_a_clock_gone_backwards_not_a_zero_ttfw() -> None:
    def play(sess: AgentSession[None], t0: float) -> None:
        user_turn(sess, t0, metrics={"started_speaking_at": t0 + 7, "stopped_speaking_at": t0 + 9},
                  agent_at=t0 + 8.5)

    cap = run_call(play)
    (turn,) = cap.spans_named(SpanName.TURN)
    attrs = turn.attributes or {}
    assert Attr.TURN_TTFW not in attrs and Attr.TURN_TTFW_AT_AGENT not in attrs
    assert cap.metric_points(Metric.TTFW) == []
    assert errors(cap) == {("livekit.ttfw", "clock_backwards"): 1}
    (event,) = data_error_events(turn)
    assert event[Attr.DATA_ERROR_VALUE] == pytest.approx(-0.5)


def test_livekit_ttft_and_ttfb_metrics_are_guarded() -> None:
    def llm(ttft: float, **kw: Any) -> LLMMetrics:
        return LLMMetrics(label="openai.LLM", request_id="r", timestamp=0.0, duration=1.0, ttft=ttft,
                          cancelled=False, completion_tokens=1, prompt_tokens=1, prompt_cached_tokens=0,
                          total_tokens=2, tokens_per_second=1.0, **kw)

    def tts(ttfb: float) -> TTSMetrics:
        return TTSMetrics(label="openai.TTS", request_id="r", timestamp=0.0, ttfb=ttfb, duration=1.0,
                          audio_duration=1.0, cancelled=False, characters_count=5, streamed=True)

    def play(sess: AgentSession[None], t0: float) -> None:
        for mtr, at in [
            (llm(0.3), t0 + 10),  # possible: recorded
            (llm(-1.0), t0 + 10),  # LiveKit's "nothing generated": neither a point nor an error
            (llm(-0.25), t0 + 10),
            (llm(math.nan), t0 + 10),
            (llm(200.0), t0 + 10),  # a 200 s first token in a 10 s call
            (tts(WRAPPED_USER_SPEAKING_S), t0 + 10),
            (tts(0.15), t0 + 10),
        ]:
            sess.emit("metrics_collected", MetricsCollectedEvent(metrics=mtr, created_at=at))

    cap = run_call(play)
    assert [(p.count, p.sum) for p in ttfc_points(cap, Stage.LLM)] == [(1, pytest.approx(0.3))]
    assert [(p.count, p.sum) for p in ttfc_points(cap, Stage.TTS)] == [(1, pytest.approx(0.15))]
    assert errors(cap) == {
        ("livekit.llm.ttft", "negative"): 1,
        ("livekit.llm.ttft", "not_finite"): 1,
        ("livekit.llm.ttft", "exceeds_call"): 1,
        ("livekit.tts.ttfb", "wrapped"): 1,
    }
    (call,) = cap.spans_named(SpanName.CALL)  # no turn open: the events are on the call's span
    assert sorted(str(e[Attr.DATA_ERROR_SOURCE]) for e in data_error_events(call)) == [
        "livekit.llm.ttft", "livekit.llm.ttft", "livekit.llm.ttft", "livekit.tts.ttfb",
    ]


def test_a_wrapped_stt_audio_duration_costs_nothing() -> None:
    prices = PriceTable(stt=ModelPrice(per_audio_minute=0.01))
    usage = AgentSessionUsage(model_usage=[
        STTModelUsage(provider="deepgram", model="nova-3", audio_duration=WRAPPED_USER_SPEAKING_S),
        STTModelUsage(provider="deepgram", model="nova-2", audio_duration=60.0),
    ])
    with capture_telemetry() as cap:
        from telemetry._state import STATE

        with STATE.tracer.start_as_current_span("call"):
            costs = _pricing._usage_costs(usage, prices, within_s=120.0)
        assert [(c.model, c.audio_seconds, c.usd) for c in costs] == [
            ("nova-3", 0.0, 0.0), ("nova-2", 60.0, pytest.approx(0.01)),
        ]
        assert errors(cap) == {("livekit.stt.audio_duration", "wrapped"): 1}


def test_a_simulated_call_has_no_data_errors() -> None:
    """A real AgentSession on the simulator's providers: every duration it reports is possible, so
    the guard keeps them all (no false data errors) and they reach the histograms."""
    from agent.sim.fake_shop import FakeStore
    from agent.sim.latency import ProviderProfile
    from agent.sim.scenarios import SCENARIOS
    from agent.sim.simulator import SimOptions
    from agent.sim.simulator import run_call as simulate_call

    profile = ProviderProfile.fixed(stt_final=0.1, llm_ttft=0.2, tts_ttfb=0.15, vad_silence_s=0.2)

    async def one() -> Any:
        async with FakeStore(latency_s=0.01, seed=1) as store:
            return await simulate_call(0, SCENARIOS["order_status"], seed=5, store=store,
                                       options=SimOptions(profile=profile))

    with capture_telemetry() as cap:
        result = asyncio.run(one())
        assert result.error is None
        assert result.turns, "the simulated call had turns"
        assert all(t.ttfw_ms is not None for t in result.turns)
        assert errors(cap) == {}
        assert ttfc_points(cap, Stage.STT) and ttfc_points(cap, Stage.LLM) and ttfc_points(cap, Stage.TTS)
        assert cap.metric_points(Metric.TTFW)
        assert not any(data_error_events(s) for s in cap.spans())
