"""Interruptions both ways: barge-ins, the agent talking over the caller, false interruptions, and
how fast the agent yields; driven through the session's speaking states."""

from __future__ import annotations

import pytest

from telemetry.livekit._interruptions import INTERRUPTION_EVENT, Interruptions
from telemetry.semconv import Attr, Metric
from telemetry.testing import CapturedTelemetry, capture_telemetry

T0 = 1_700_000_000.0


def counts(cap: CapturedTelemetry) -> dict[tuple[object, object], float]:
    return {((p.attributes or {}).get(Attr.INTERRUPTION_DIRECTION), (p.attributes or {}).get(Attr.INTERRUPTION_KIND)):
            p.value for p in cap.metric_points(Metric.INTERRUPTIONS)}


def test_a_barge_in_is_counted_on_the_callers_turn_and_the_yield_timed() -> None:
    with capture_telemetry() as cap:
        tracer = cap.tracer_provider.get_tracer("test")
        answering, barging = tracer.start_span("turn"), tracer.start_span("turn")
        it = Interruptions()
        it.agent_started(T0, answering)
        it.user_started(T0 + 1.0, barging)  # the caller speaks over the answer: their new turn
        it.agent_stopped(T0 + 1.35, barging)  # ... and the agent stops 350 ms later
        it.user_stopped(T0 + 2.0, barging)
        answering.end()
        barging.end()
        assert counts(cap) == {("caller", "interruption"): 1}
        assert not cap.spans()[0].events  # the answer's turn
        [ev] = [e for e in cap.spans()[1].events if e.name == INTERRUPTION_EVENT]
        assert dict(ev.attributes or {}) == {
            Attr.INTERRUPTION_DIRECTION: "caller", Attr.INTERRUPTION_KIND: "interruption",
        }
        [yielded] = [e for e in cap.spans()[1].events if e.name == "interruption_yielded"]
        assert (yielded.attributes or {})[Attr.INTERRUPTION_YIELD_TIME] == pytest.approx(0.35)
        [hist] = cap.metric_points(Metric.YIELD_TIME)
        assert hist.count == 1 and hist.sum == pytest.approx(0.35)
        assert [e.span_id for e in hist.exemplars] == [barging.get_span_context().span_id]


def test_the_agent_talking_over_the_caller_is_the_other_direction() -> None:
    with capture_telemetry() as cap:
        span = cap.tracer_provider.get_tracer("test").start_span("turn")
        it = Interruptions()
        it.user_started(T0, span)
        it.agent_started(T0 + 0.5, span)  # the caller is still speaking
        it.user_stopped(T0 + 0.8, span)
        it.agent_stopped(T0 + 2.0, span)
        span.end()
        assert counts(cap) == {("agent", "interruption"): 1}
        assert not cap.metric_points(Metric.YIELD_TIME)  # nobody barged in: nothing to yield to


def test_a_false_interruption_and_an_agent_that_does_not_yield() -> None:
    with capture_telemetry() as cap:
        span = cap.tracer_provider.get_tracer("test").start_span("turn")
        it = Interruptions()
        it.agent_started(T0, span)
        it.user_started(T0 + 1.0, span)
        it.false_interruption(T0 + 1.6, span, resumed=True)  # LiveKit resumed: noise, not a turn
        it.user_stopped(T0 + 1.7, span)  # the agent never stopped
        it.agent_stopped(T0 + 3.0, span)
        span.end()
        assert counts(cap) == {("caller", "interruption"): 1, ("caller", "false_interruption"): 1}
        names = [e.name for e in cap.spans()[0].events]
        assert names == [INTERRUPTION_EVENT, INTERRUPTION_EVENT, "interruption_not_yielded"]
        assert not cap.metric_points(Metric.YIELD_TIME)


def test_speech_in_turn_is_no_interruption() -> None:
    with capture_telemetry() as cap:
        span = cap.tracer_provider.get_tracer("test").start_span("turn")
        it = Interruptions()
        it.user_started(T0, span)
        it.user_stopped(T0 + 1.0, span)
        it.agent_started(T0 + 1.5, span)
        it.agent_stopped(T0 + 3.0, span)
        span.end()
        assert counts(cap) == {}
