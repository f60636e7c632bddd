"""A turn whose time to first word is at or over the objective carries ``voice.turn.slow`` = true
(false under it): what the dashboards' Slow turns panels search by. The threshold comes from
``VOXPULSE_TTFW_OBJECTIVE_S`` (telemetry._env), default the 3 s objective of telemetry.semconv."""

from __future__ import annotations

import pytest
from livekit.agents import AgentSession

from telemetry import TelemetryConfigError
from telemetry.semconv import TTFW_OBJECTIVE_S, Attr, SpanName
from tests.telemetry.test_data_quality import run_call, user_turn


def turn_attributes(ttfw_s: float) -> dict[str, object]:
    """The turn span of one call whose caller stops speaking at 9 s and hears the answer ``ttfw_s`` later."""
    def play(sess: AgentSession[None], t0: float) -> None:
        user_turn(sess, t0, metrics={}, agent_at=t0 + 9 + ttfw_s)

    (turn,) = run_call(play).spans_named(SpanName.TURN)
    return dict(turn.attributes or {})


@pytest.mark.parametrize(("ttfw_s", "slow"), [
    (TTFW_OBJECTIVE_S + 0.5, True),
    (TTFW_OBJECTIVE_S, True),  # at the objective: slow, like the collectors' tail-sampling rule (>=)
    (TTFW_OBJECTIVE_S - 0.5, False),
    (0.8, False),
])
def test_a_turn_over_the_objective_is_marked_slow(ttfw_s: float, slow: bool) -> None:
    attrs = turn_attributes(ttfw_s)
    assert attrs[Attr.TURN_TTFW] == pytest.approx(ttfw_s)
    assert attrs[Attr.TURN_SLOW] is slow


def test_the_threshold_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXPULSE_TTFW_OBJECTIVE_S", "1.2")
    assert turn_attributes(1.5)[Attr.TURN_SLOW] is True
    assert turn_attributes(1.0)[Attr.TURN_SLOW] is False


def test_an_invalid_threshold_is_an_error_under_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Contained (the default then) in production, re-raised while tests run, like every internal error."""
    monkeypatch.setenv("VOXPULSE_TTFW_OBJECTIVE_S", "three")
    with pytest.raises(TelemetryConfigError, match="VOXPULSE_TTFW_OBJECTIVE_S"):
        turn_attributes(1.5)


def test_an_invalid_threshold_does_not_break_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where internal errors are contained (production), the default threshold applies."""
    monkeypatch.setenv("VOXPULSE_TTFW_OBJECTIVE_S", "three")
    monkeypatch.setenv("VOXPULSE_RAISE_INTERNAL_ERRORS", "false")
    assert turn_attributes(TTFW_OBJECTIVE_S + 0.5)[Attr.TURN_SLOW] is True
    assert turn_attributes(TTFW_OBJECTIVE_S - 0.5)[Attr.TURN_SLOW] is False


def test_a_turn_marked_slow_makes_its_trace_exemplar_worthy(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a threshold under the default, the exemplar filter follows the mark (the collectors, set
    alike, keep the trace by the same number)."""
    from types import SimpleNamespace

    from telemetry.sampling import keeps_span

    monkeypatch.setenv("VOXPULSE_TTFW_OBJECTIVE_S", "1.2")
    attrs = turn_attributes(1.5)
    assert keeps_span(SimpleNamespace(status=None, attributes=attrs))
    assert not keeps_span(SimpleNamespace(status=None, attributes={**attrs, Attr.TURN_SLOW: False}))
