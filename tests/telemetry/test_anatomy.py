"""The anatomy of a turn: its parts sum to the caller's time to first word, whatever was measured."""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import Any

import pytest

from telemetry.livekit._anatomy import TurnMarks, anatomy, named_share
from telemetry.semconv import Attr, Metric, TurnSegment
from telemetry.testing import capture_telemetry

T0 = 1_700_000_000.0  # the agent's clock, seconds since the epoch


def full_marks(**over: Any) -> TurnMarks:
    """A turn as LiveKit reports it: speech ended at T0 (heard at the agent), answered at T0 + 1.1."""
    base: dict[str, Any] = dict(
        heard_end=T0, audible_out=T0 + 1.1, transport_in_s=0.06, transport_out_s=0.06,
        vad_end_at=T0 + 0.3, stopped_speaking_at=T0 + 0.01, transcription_delay=0.35,
        end_of_turn_delay=0.45, on_user_turn_completed_delay=0.02,
        started_speaking_at=T0 + 1.08, playback_latency=0.01, tts_node_ttfb=0.15, llm_node_ttfs=0.3,
        llm_node_ttft=0.25,
    )
    base.update(over)
    return TurnMarks(**base)


def seconds(value: object) -> float:
    assert isinstance(value, float), value
    return value


def total(m: TurnMarks) -> float:
    return (m.audible_out + m.transport_out_s) - (m.heard_end - m.transport_in_s)


def by_name(m: TurnMarks) -> dict[TurnSegment, float]:
    return {s.segment: s.seconds for s in anatomy(m)}


def assert_adds_up(m: TurnMarks) -> None:
    parts = anatomy(m)
    assert math.isclose(sum(p.seconds for p in parts), total(m), abs_tol=1e-9)
    assert all(p.seconds > 0 for p in parts), parts
    # contiguous, in order: each part starts where the one before ended
    assert parts[0].start == m.heard_end - m.transport_in_s
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))


def test_each_part_is_the_time_to_the_mark_it_waited_for() -> None:
    m = full_marks()
    assert_adds_up(m)
    got = by_name(m)
    # the reply's marks, back from playback start: forwarded 1.07, TTS input 0.92, LLM start 0.62
    expected = {
        TurnSegment.TRANSPORT_IN: 0.06, TurnSegment.END_OF_SPEECH: 0.3, TurnSegment.STT_FINAL: 0.06,
        TurnSegment.END_OF_TURN: 0.1, TurnSegment.ON_USER_TURN_COMPLETED: 0.02, TurnSegment.QUEUEING: 0.14,
        TurnSegment.LLM_TTFT: 0.25, TurnSegment.LLM_FIRST_SENTENCE: 0.05, TurnSegment.TTS_TTFB: 0.15,
        TurnSegment.PLAYBACK: 0.01, TurnSegment.PUBLICATION: 0.02, TurnSegment.TRANSPORT_OUT: 0.06,
    }
    assert got == pytest.approx(expected, abs=1e-6)
    assert named_share(anatomy(m)) == pytest.approx(1 - 0.14 / total(m))


def test_tools_sit_between_the_turn_decision_and_the_reply() -> None:
    m = full_marks(tools=[(T0 + 0.55, T0 + 0.58), (T0 + 0.56, T0 + 0.6)],
                   started_speaking_at=T0 + 1.08)
    assert_adds_up(m)
    got = by_name(m)
    assert got[TurnSegment.LLM_TOOL_CALL] == pytest.approx(0.55 - 0.48)
    assert got[TurnSegment.TOOLS] == pytest.approx(0.05)  # first start to last end: concurrent
    assert got[TurnSegment.QUEUEING] == pytest.approx(0.02, abs=1e-6)


def test_a_final_transcript_after_the_turn_decision_makes_the_decision_zero() -> None:
    overlapped: list[TurnSegment] = []
    got = {s.segment: s.seconds for s in anatomy(full_marks(transcription_delay=0.5, end_of_turn_delay=0.45),
                                                 overlapped=overlapped)}
    assert TurnSegment.END_OF_TURN not in got  # the transcript was the critical path
    # measured, in its shadow (the hook ran 0.02 s after the decision, still before the transcript)
    assert overlapped == [TurnSegment.END_OF_TURN, TurnSegment.ON_USER_TURN_COMPLETED]
    assert got[TurnSegment.STT_FINAL] == pytest.approx(0.51 - 0.3)


def test_an_llm_that_ran_ahead_of_the_end_of_turn_is_overlapped_not_missing() -> None:
    """Preemptive generation: the LLM started on the final transcript and had its first token before
    the end-of-turn decision; the caller waited for the decision, not for the LLM."""
    m = full_marks(llm_node_ttfs=0.7, llm_node_ttft=0.2)  # LLM start T0 + 0.22, first token 0.42 < 0.48
    assert_adds_up(m)
    overlapped: list[TurnSegment] = []
    got = {s.segment: s.seconds for s in anatomy(m, overlapped=overlapped)}
    assert TurnSegment.LLM_TTFT not in got and TurnSegment.QUEUEING not in got
    assert overlapped == [TurnSegment.LLM_TTFT]  # the gap before it is not a part
    assert got[TurnSegment.LLM_FIRST_SENTENCE] == pytest.approx(0.92 - 0.48, abs=1e-6)
    assert TurnSegment.UNACCOUNTED not in got
    none: list[TurnSegment] = []
    anatomy(full_marks(), overlapped=none)
    assert none == []


@pytest.mark.parametrize("missing", [
    {"started_speaking_at": None, "playback_latency": None, "tts_node_ttfb": None, "llm_node_ttfs": None,
     "llm_node_ttft": None},  # the answer's metrics never came (a crashed job, a dropped batch)
    {"stopped_speaking_at": None},  # no anchor for LiveKit's user delays
    {"tts_node_ttfb": None},
])
def test_missing_measurements_are_unaccounted_never_negative(missing: dict[str, Any]) -> None:
    m = full_marks(**missing)
    assert_adds_up(m)
    got = by_name(m)
    assert got[TurnSegment.UNACCOUNTED] > 0
    assert named_share(anatomy(m)) < 1


def test_an_interrupted_answer_is_cut_from_livekits_per_request_metrics() -> None:
    """A barge-in closes the turn before LiveKit adds the interrupted answer (and its metrics) to the
    chat: the LLM and TTS marks come from the requests' own metrics, the playback start from the
    agent's speaking state."""
    m = full_marks(playback_latency=None, tts_node_ttfb=None, llm_node_ttfs=None, llm_node_ttft=None,
                   llm_requests=[(T0 + 0.1, T0 + 0.2), (T0 + 0.6, T0 + 0.85)],  # a greeting's, the answer's
                   tts_requests=[(T0 + 0.15, T0 + 0.3), (T0 + 0.95, T0 + 1.06), (T0 + 1.3, T0 + 1.4)])
    assert_adds_up(m)
    got = by_name(m)
    assert TurnSegment.UNACCOUNTED not in got
    assert got[TurnSegment.QUEUEING] == pytest.approx(0.6 - 0.48, abs=1e-6)
    assert got[TurnSegment.LLM_TTFT] == pytest.approx(0.25, abs=1e-6)
    assert got[TurnSegment.LLM_FIRST_SENTENCE] == pytest.approx(0.1, abs=1e-6)
    assert got[TurnSegment.TTS_TTFB] == pytest.approx(0.11, abs=1e-6)
    assert got[TurnSegment.PLAYBACK] == pytest.approx(0.02, abs=1e-6)


@pytest.mark.parametrize("over", [
    {"started_speaking_at": T0 + 50.0},  # a mark past the answer
    {"vad_end_at": T0 - 5.0, "stopped_speaking_at": T0 - 9.0},  # marks before the speech ended
    {"llm_node_ttfs": 30.0, "llm_node_ttft": 40.0},  # an LLM start long before the turn
    {"audible_out": T0},  # an answer in the same instant as the speech end
])
def test_impossible_marks_still_add_up(over: dict[str, Any]) -> None:
    assert_adds_up(full_marks(**over))


def test_a_simulated_turn_adds_up_on_its_span_and_in_the_histogram() -> None:
    """A real AgentSession on the simulator's providers: every turn's parts sum to its time to first
    word within 1 ms (rounded to the µs on the span), the providers' delays appear as their parts,
    and the parts reach the segment histogram with exemplars to the turn."""
    from agent.sim.fake_shop import FakeStore
    from agent.sim.latency import ProviderProfile
    from agent.sim.scenarios import SCENARIOS
    from agent.sim.simulator import SimOptions
    from agent.sim.simulator import run_call as simulate_call

    profile = ProviderProfile.fixed(stt_final=0.1, llm_ttft=0.2, tts_ttfb=0.15, vad_silence_s=0.2)

    async def one() -> Any:
        async with FakeStore(latency_s=0.05, seed=1) as store:
            return await simulate_call(0, SCENARIOS["order_tyres"], seed=5, store=store,
                                       options=SimOptions(profile=profile))

    with capture_telemetry() as cap:
        result = asyncio.run(one())
        assert result.error is None
        turns = [s for s in cap.spans() if s.name == "turn"]
        assert len(turns) == 3
        for span in turns:
            attrs = span.attributes or {}
            parts = {seg: seconds(attrs[seg.attribute]) for seg in TurnSegment if seg.attribute in attrs}
            assert abs(sum(parts.values()) - seconds(attrs[Attr.TURN_TTFW])) < 0.001, parts
            assert seconds(attrs[Attr.TURN_NAMED_SHARE]) >= 0.95, parts
            # the simulated TTS sleeps 0.15 s before its first audio: never less; more on a loaded machine
            assert 0.15 - 0.002 <= parts[TurnSegment.TTS_TTFB] < 1.15, parts
            assert TurnSegment.UNACCOUNTED not in parts
        with_tools = [s for s in turns if (s.attributes or {}).get(Attr.TURN_TOOL_CALLS)]
        assert with_tools and all(TurnSegment.TOOLS.attribute in (s.attributes or {}) for s in with_tools)
        points = cap.metric_points(Metric.TURN_SEGMENT)
        recorded = {(p.attributes or {}).get(Attr.TURN_SEGMENT) for p in points}
        assert {"stt_final", "llm_ttft", "tts_ttfb", "tools"} <= recorded
        turn_ids = {s.context.span_id for s in turns}
        assert {e.span_id for p in points for e in p.exemplars} <= turn_ids
