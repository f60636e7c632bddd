"""An error in one of VoxPulse's LiveKit event handlers never reaches LiveKit (where it would break
the turn: the agent would never answer); under tests it surfaces when the call scope exits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.sim.fake_shop import FakeStore
from agent.sim.scenarios import SCENARIOS
from agent.sim.simulator import SimOptions, run_call
from telemetry.livekit import SessionInstrumentation
from telemetry.testing import capture_telemetry

from .conftest import FIXED


def test_a_failing_handler_breaks_neither_the_turn_nor_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def broken(self: SessionInstrumentation, ev: Any) -> None:
        seen.append(type(ev).__name__)
        raise RuntimeError("a bug in a VoxPulse handler")

    monkeypatch.setattr(SessionInstrumentation, "_on_metrics", broken)
    instrs: list[SessionInstrumentation] = []

    async def one() -> Any:
        async with FakeStore(latency_s=0.01, seed=1) as store:
            return await run_call(0, SCENARIOS["order_status"], seed=5, store=store,
                                  options=SimOptions(profile=FIXED), on_instrumented=instrs.append)

    with capture_telemetry():
        result = asyncio.run(one())
    assert seen, "the handler ran"
    # LiveKit went on: every turn was answered (a raising metrics handler used to break the STT)
    assert [t.ttfw_ms is not None for t in result.turns] == [True, True]
    assert result.outcome == "resolved_by_bot"
    # ... and the error was not swallowed under test: the call scope raised it when it exited
    assert result.error is not None and "a bug in a VoxPulse handler" in result.error
    assert instrs[0]._errors and all(isinstance(e, RuntimeError) for e in instrs[0]._errors)
