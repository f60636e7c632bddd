"""The agent's half of tail sampling: the collectors' share function, and exemplars only from kept traces."""

from __future__ import annotations

import random

import pytest
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

import telemetry
from telemetry import metrics
from telemetry._state import STATE
from telemetry.sampling import HASH_SALT, _fnv1a, in_share, share_threshold
from telemetry.semconv import TTFW_OBJECTIVE_S, Attr
from telemetry.testing import CapturedTelemetry, capture_telemetry

# Computed by Go's math/big and hash/fnv exactly as the tail-sampling processor v0.159.0 does
# (calculateThreshold, hashTraceID with hash_salt "voxpulse"); the live test in tests/stack checks
# the real collector against in_share() too.
GO_THRESHOLDS = {
    0.1: 18446744073709551, 1: 184467440737095519, 5: 922337203685477631, 10: 1844674407370955263,
    12.5: 2305843009213693951, 25: 4611686018427387903, 33.3: 6142765776545279999,
    50: 9223372036854775807, 66.6: 12285531553090559999, 99.99: 18444899399302178815,
}
GO_HASHES = {
    "4bf92f3577b34da6a3ce929d0e0e4736": 633481342762185087,
    "00000000000000000000000000000001": 14574804062756392172,
    "ffffffffffffffffffffffffffffffff": 3430324197580517007,
    "0af7651916cd43dd8448eb211c80319c": 11505056638777010186,
    "5b8aa5a2d2c872e8321cf37308d69df2": 14493627532284163172,
}


@pytest.mark.parametrize("percent", sorted(GO_THRESHOLDS))
def test_threshold_equals_the_collectors(percent: float) -> None:
    assert share_threshold(percent) == GO_THRESHOLDS[percent]


@pytest.mark.parametrize("trace_id", sorted(GO_HASHES))
def test_hash_equals_the_collectors(trace_id: str) -> None:
    assert _fnv1a(HASH_SALT.encode() + bytes.fromhex(trace_id)) == GO_HASHES[trace_id]


def test_share_bounds() -> None:
    assert in_share(1, 100) and in_share(0xFFFF, 100.0)
    assert not in_share(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0)
    # 0x4bf9...: hash 633481342762185087 is under the 5 % threshold, above the 1 % one
    assert in_share(0x4BF92F3577B34DA6A3CE929D0E0E4736, 5)
    assert not in_share(0x4BF92F3577B34DA6A3CE929D0E0E4736, 1)


def test_share_is_close_to_the_percentage() -> None:
    rng = random.Random(14)
    n = 20_000
    kept = sum(in_share(rng.getrandbits(128), 10) for _ in range(n))
    # binomial(20000, 0.1): sd 42.4; 5 sd either side
    assert abs(kept - 2000) < 5 * 42.4


def _ttfw_exemplar_traces(cap: CapturedTelemetry) -> set[int]:
    return {e.trace_id for p in cap.metric_points("voice.turn.time_to_first_word") for e in p.exemplars}


def _roots(cap: CapturedTelemetry) -> dict[int, bool]:
    return {s.context.trace_id: bool((s.attributes or {}).get(Attr.TRACE_KEEP)) for s in cap.spans_named("call")}


def _call_with_turn(ttfw_s: float) -> None:
    with telemetry.call() as scope:
        turn = STATE.tracer.start_span("turn")
        turn.set_attribute(Attr.TURN_TTFW, ttfw_s)
        with trace.use_span(turn, end_on_exit=True):
            metrics.record_time_to_first_word(ttfw_s)
        scope.set_outcome("resolved_by_bot")


def test_exemplars_only_from_marked_traces_at_ten_percent() -> None:
    with capture_telemetry(livekit=False, libraries=False, deterministic_ids=False,
                           trace_sampling_percent=10) as cap:
        for _ in range(200):
            _call_with_turn(0.8)
        _call_with_turn(TTFW_OBJECTIVE_S + 0.5)  # a slow turn: kept by a rule, whatever its id
        roots = _roots(cap)
        exemplar_traces = _ttfw_exemplar_traces(cap)
    slow = next(s.context.trace_id for s in cap.spans_named("turn")
                if (s.attributes or {})[Attr.TURN_TTFW] > TTFW_OBJECTIVE_S)
    in_the_share = {t for t in roots if in_share(t, 10)}
    assert exemplar_traces, "some exemplars"
    # every exemplar's trace carries the mark the collectors keep, and is the share or a rule's
    assert all(roots[t] for t in exemplar_traces)
    assert {t for t, marked in roots.items() if marked} == in_the_share | {slow}
    assert slow in exemplar_traces or roots[slow]


def test_an_error_span_makes_its_trace_exemplar_worthy() -> None:
    with capture_telemetry(livekit=False, libraries=False, trace_sampling_percent=0) as cap:
        with telemetry.call():
            span = STATE.tracer.start_span("chat x")
            span.set_status(Status(StatusCode.ERROR))
            with trace.use_span(span, end_on_exit=True):
                metrics.record_time_to_first_chunk("llm", 1.2, provider="p", model="m")
        with telemetry.call():  # a healthy call at 0 %: no exemplar, no mark
            metrics.record_time_to_first_chunk("llm", 0.4, provider="p", model="m")
        points = cap.metric_points("voice.stage.time_to_first_chunk")
    exemplars = [e for p in points for e in p.exemplars]
    roots = _roots(cap)
    assert len(exemplars) == 1 and roots[exemplars[0].trace_id]
    assert sorted(roots.values()) == [False, True]


def test_no_open_call_marks_the_recording_span_or_takes_no_exemplar() -> None:
    with capture_telemetry(livekit=False, libraries=False) as cap:
        tracer = STATE.tracer
        with tracer.start_as_current_span("job") as span:
            metrics.record_time_to_first_word(0.5)
        assert (span.attributes or {}).get(Attr.TRACE_KEEP) is True
        ended = tracer.start_span("late")
        ended.end()
        with trace.use_span(ended):  # current but no longer recording: nothing to mark
            metrics.record_time_to_first_word(0.6)
        exemplar_traces = _ttfw_exemplar_traces(cap)
    assert exemplar_traces == {span.get_span_context().trace_id}


def test_after_the_call_ended_no_exemplar_points_into_it() -> None:
    with capture_telemetry(livekit=False, libraries=False) as cap:
        with telemetry.call() as scope:
            pass
        with trace.use_span(scope.span):  # the ended root is current again (a late callback)
            metrics.record_time_to_first_word(0.5)
        assert _ttfw_exemplar_traces(cap) == set()
