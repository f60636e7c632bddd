"""The greeting's anatomy (telemetry.livekit._anatomy.greeting_anatomy, ._greeting): from the caller's
join to the greeting's first word, in parts that add up; the join read from LiveKit's clock only when
it agrees with the agent's."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import time
from types import SimpleNamespace
from typing import Any

import pytest

from telemetry import _quality
from telemetry.livekit._anatomy import GreetingMarks, greeting_anatomy, named_share
from telemetry.livekit._greeting import SETUP_MAX_S, Greeting
from telemetry.semconv import Attr, EventName, Metric, SpanName, TurnSegment
from telemetry.testing import capture_telemetry

T0 = 1_700_000_000.0  # the caller joined, on the agent's clock


def marks(**over: Any) -> GreetingMarks:
    """A greeting spoken by the LLM: the session ran 0.8 s after the join, the first audible frame
    went out at T0 + 1.6."""
    base: dict[str, Any] = dict(
        start=T0, audible_out=T0 + 1.6, transport_out_s=0.03, ready_at=T0 + 0.8,
        started_speaking_at=T0 + 1.58, playback_latency=0.01, tts_node_ttfb=0.15, llm_node_ttfs=0.3,
        llm_node_ttft=0.25,
    )
    base.update(over)
    return GreetingMarks(**base)


def parts(g: GreetingMarks) -> dict[TurnSegment, float]:
    return {s.segment: s.seconds for s in greeting_anatomy(g)}


@pytest.mark.parametrize("over", [
    {},
    {"llm_node_ttfs": None, "llm_node_ttft": None},  # session.say(): no LLM
    {"started_speaking_at": None, "playback_latency": None, "tts_node_ttfb": None},  # no message metrics
    {"ready_at": T0 + 9.0},  # a mark after the end: clamped
    {"ready_at": None},
])
def test_the_greetings_parts_add_up_and_none_is_negative(over: dict[str, Any]) -> None:
    g = marks(**over)
    segs = greeting_anatomy(g)
    assert math.isclose(sum(s.seconds for s in segs), 1.6 + 0.03, abs_tol=1e-6)  # seconds since the epoch: µs
    assert all(s.seconds > 0 for s in segs), segs
    assert segs[0].start == T0
    assert all(a.end == b.start for a, b in itertools.pairwise(segs))


def test_each_part_of_the_greeting_is_the_time_to_its_mark() -> None:
    got = parts(marks())
    # forwarded = 1.58 - 0.01 = 1.57; tts_in = 1.42; llm_start = 1.12; first token = 1.37
    assert got[TurnSegment.CALL_SETUP] == pytest.approx(0.8)
    assert got[TurnSegment.QUEUEING] == pytest.approx(1.12 - 0.8)
    assert got[TurnSegment.LLM_TTFT] == pytest.approx(0.25)
    assert got[TurnSegment.LLM_FIRST_SENTENCE] == pytest.approx(0.05)
    assert got[TurnSegment.TTS_TTFB] == pytest.approx(0.15)
    assert got[TurnSegment.TRANSPORT_OUT] == pytest.approx(0.03)
    assert TurnSegment.UNACCOUNTED not in got


def test_a_fixed_greeting_has_no_llm_parts_and_nothing_unaccounted() -> None:
    got = parts(marks(llm_node_ttfs=None, llm_node_ttft=None))
    assert TurnSegment.LLM_TTFT not in got and TurnSegment.LLM_FIRST_SENTENCE not in got
    assert TurnSegment.UNACCOUNTED not in got
    assert got[TurnSegment.QUEUEING] == pytest.approx(1.42 - 0.8)


def test_a_greeting_without_its_metrics_names_the_rest_unaccounted() -> None:
    segs = greeting_anatomy(marks(started_speaking_at=None, playback_latency=None, tts_node_ttfb=None))
    assert [s.segment for s in segs] == [TurnSegment.CALL_SETUP, TurnSegment.UNACCOUNTED, TurnSegment.TRANSPORT_OUT]
    assert named_share(segs) < 0.6


def _session(joined_at: float | None) -> Any:
    """What the greeting reads of a LiveKit session: the linked participant's ``joined_at``."""
    when = None if joined_at is None else dt.datetime.fromtimestamp(joined_at, tz=dt.UTC)
    return SimpleNamespace(room_io=SimpleNamespace(linked_participant=SimpleNamespace(joined_at=when)))


def _measure(joined_ahead_s: float | None, *, joined_before_session_s: float = 0.5) -> tuple[Any, list[Any]]:
    """One greeting measured with the caller's join ``joined_ahead_s`` after the agent learned of it
    (None: no room), returning (the greeting span, the call span's events)."""
    with capture_telemetry() as cap:
        tracer = cap.tracer_provider.get_tracer("test")
        call = tracer.start_span(SpanName.CALL)
        now = time.time()
        session_start = now - 2.0
        g = Greeting(session_started_at=session_start)
        if joined_ahead_s is None:
            joined = None
        elif joined_ahead_s > 0:
            joined = now + joined_ahead_s
        else:
            joined = session_start - joined_before_session_s
        g.session_ready(now - 1.0, _session(joined), call)
        g.heard(now, 0.02, "audio")
        g.reply_metrics({"started_speaking_at": now - 0.01, "tts_node_ttfb": 0.2, "playback_latency": 0.005},
                        10.0, call)
        assert g.complete
        g.close(call_span=call, call_id="c-1", tracer=tracer, so_far=lambda _at: 10.0)
        call.end()
        (span,) = [s for s in cap.spans() if s.name == SpanName.GREETING]
        (ended_call,) = [s for s in cap.spans() if s.name == SpanName.CALL]
        assert span.parent is not None and span.parent.span_id == ended_call.context.span_id
        points = cap.metric_points(Metric.GREETING_SEGMENT)
        assert {e.span_id for p in points for e in p.exemplars} == {span.context.span_id}
        assert cap.metric_points(Metric.GREETING_TTFW)
        return span, list(ended_call.events)


def test_the_greeting_starts_at_the_callers_join() -> None:
    span, events = _measure(0.0)
    a = span.attributes or {}
    assert a[Attr.GREETING_START] == "joined"
    parts = {seg: a[seg.attribute] for seg in TurnSegment if seg.attribute in a}
    assert isinstance(a[Attr.GREETING_TTFW], float)
    assert math.isclose(sum(float(v) for v in parts.values()), a[Attr.GREETING_TTFW], abs_tol=1e-3)  # type: ignore[arg-type]
    assert parts[TurnSegment.CALL_SETUP] == pytest.approx(0.5 + 1.0, abs=1e-3)  # joined -> session ready
    assert not [e for e in events if e.name == EventName.DATA_ERROR]


def test_a_join_on_a_clock_ahead_of_the_agents_is_a_data_error_and_not_used() -> None:
    span, events = _measure(5.0)
    assert (span.attributes or {})[Attr.GREETING_START] == "session"
    (err,) = [e for e in events if e.name == EventName.DATA_ERROR]
    attrs = err.attributes or {}
    assert attrs[Attr.DATA_ERROR_SOURCE] == "livekit.participant.joined_at"
    assert attrs[Attr.DATA_ERROR_REASON] == "clock_disagrees"
    assert attrs[Attr.DATA_ERROR_VALUE] == pytest.approx(5.0, abs=0.1)


def test_a_caller_in_the_room_long_before_the_job_waits_from_the_session_start() -> None:
    span, events = _measure(-1.0, joined_before_session_s=SETUP_MAX_S + 5)
    assert (span.attributes or {})[Attr.GREETING_START] == "session"
    assert not [e for e in events if e.name == EventName.DATA_ERROR]


def test_without_a_room_the_greeting_waits_from_the_session_start() -> None:
    span, _ = _measure(None)
    assert (span.attributes or {})[Attr.GREETING_START] == "session"


def test_same_clock_allows_the_tolerance_and_nothing_more() -> None:
    with capture_telemetry() as cap:
        span = cap.tracer_provider.get_tracer("test").start_span("s")
        assert _quality.same_clock("x", T0 + _quality.CLOCK_TOLERANCE_S, T0, span=span)
        assert _quality.same_clock("x", None, T0, span=span)
        assert not _quality.same_clock("x", T0 + _quality.CLOCK_TOLERANCE_S + 0.01, T0, span=span)
        assert not _quality.same_clock("x", math.nan, T0, span=span)


def test_a_simulated_call_has_its_greeting_measured() -> None:
    """A real AgentSession on the simulator's providers greets with session.say(): a greeting span
    whose parts add up, the TTS's delay as its part, and nothing unaccounted."""
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
        assert asyncio.run(one()).error is None
        (span,) = [s for s in cap.spans() if s.name == SpanName.GREETING]
        a = span.attributes or {}
        parts = {seg: float(a[seg.attribute]) for seg in TurnSegment if seg.attribute in a}  # type: ignore[arg-type]
        assert math.isclose(sum(parts.values()), float(a[Attr.GREETING_TTFW]), abs_tol=1e-3)  # type: ignore[arg-type]
        # the simulated TTS sleeps 0.15 s before its first audio: never less; more on a loaded machine
        assert 0.15 - 0.002 <= parts[TurnSegment.TTS_TTFB] < 1.15, parts
        assert TurnSegment.UNACCOUNTED not in parts
        assert a[Attr.TURN_TTFW_METHOD] == "playback"  # no room: the output's playback start
        greetings = [s for s in cap.spans() if s.name == SpanName.GREETING]
        assert len(greetings) == 1
