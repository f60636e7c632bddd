"""A latency budget acted on during a real call: the example agent's worker runs with a turn budget
its answers cannot meet; the first turn runs over while the caller waits, the budget hook fires at
that moment, and the example agent answers the rest of the call with its faster fallback model."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.realcalls import OtlpRecorder
from telemetry.semconv import Attr

from .conftest import LiveKit, jobs_done, place, running_worker
from .test_real_calls import trace_of

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_a_turn_over_budget_switches_the_example_agent_to_its_fallback_model(
    lk_stack: LiveKit, recorder: OtlpRecorder, tmp_path: Path,
) -> None:
    with running_worker(lk_stack, recorder.endpoint, None, tmp_path / "worker.log",
                        VOXPULSE_TURN_BUDGET="0.3") as w:
        [r] = place(w, lk_stack, ["order_status"], concurrency=1)
        assert r.error is None, r.error
        assert jobs_done(recorder, [r.room_sid]), w.worker.tail(60)
        log = w.worker.tail(400)
    spans = trace_of(recorder, r.room_sid)
    by_id = {s.span_id: s for s in spans}
    turns = sorted((s for s in spans if s.name == "turn"), key=lambda s: s.attributes[Attr.TURN_INDEX])
    assert len(turns) == len(r.turns) >= 2
    first = turns[0]
    [breach] = [a for n, a in first.events if n == "budget_exceeded"]
    assert breach[Attr.BUDGET] == "time_to_first_word" and breach[Attr.BUDGET_LIVE] is True
    # it fired while the caller was still waiting: before the first word reached the caller
    assert 0.3 <= breach[Attr.BUDGET_ELAPSED] < first.attributes[Attr.TURN_TTFW]
    assert "answering with the fallback model from now on" in log

    def llm_models(turn_id: str) -> set[str]:
        out = set()
        for s in spans:
            parent = by_id.get(s.parent_id) if s.parent_id else None
            while parent is not None and parent.name != "turn":
                parent = by_id.get(parent.parent_id) if parent.parent_id else None
            if parent is not None and parent.span_id == turn_id and s.attributes.get(Attr.STAGE) == "llm":
                out.add(s.attributes.get(Attr.MODEL))
        return out

    # the switch came while the first turn waited: its answer may already be the fallback's (when
    # the budget ran out before the answer's generation started); every later answer is
    assert llm_models(first.span_id) <= {"sim-llm-mini", "sim-llm-fast"}
    for later in turns[1:]:
        assert llm_models(later.span_id) == {"sim-llm-fast"}, later.attributes
