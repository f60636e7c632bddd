"""Fixtures for the agent tests: real LiveKit AgentSessions offline (agent.sim.simulator), captured
in memory through the production telemetry path (telemetry.testing.capture_telemetry routes
LiveKit's tracer and our spans/metrics into memory, redacted like the exporter would send them).

The scenario run is module-scoped: every scenario runs once, concurrently, and the tests assert
on its trace; that keeps the suite well under a minute.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from agent.sim.latency import ProviderProfile
from agent.sim.scenarios import SCENARIOS
from agent.sim.simulator import SimOptions, SimSummary, simulate
from telemetry.livekit import SessionInstrumentation
from telemetry.pricing import ModelPrice, PriceTable
from telemetry.testing import capture_telemetry

# round prices so the expected cost is easy to recompute by hand
TEST_PRICES = PriceTable(
    llm=ModelPrice(input_per_1k_tokens=0.001, output_per_1k_tokens=0.002),
    stt=ModelPrice(per_audio_minute=0.01),
    tts=ModelPrice(per_char=0.00002),
)

FIXED = ProviderProfile.fixed(stt_final=0.1, llm_ttft=0.2, tts_ttfb=0.15, vad_silence_s=0.2)


class RecordingCallLog:
    """Implements telemetry.livekit.CallLog in memory."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[tuple[str, str | None, str | None, float, int]] = []
        self.turns: list[tuple[str, int, str, str, dict[str, Any]]] = []
        self.tools: list[tuple[str, str, Any, Any, dict[str, Any]]] = []

    def bind_call(self, scope: Any) -> None:
        self.started.append(scope.call_id)
        scope.on_end(lambda s: self.ended.append(
            (s.call_id, s.outcome.value if s.outcome else None, s.transfer_reason, s.cost_usd, s.turns)))

    def log_turn(self, call_id: str, turn_index: int, speaker: str, text: str, **kw: Any) -> bool:
        self.turns.append((call_id, turn_index, speaker, text, kw))
        return True

    def log_tool_call(self, call_id: str, name: str, args: Any, result: Any, **kw: Any) -> bool:
        self.tools.append((call_id, name, args, result, kw))
        return True


@dataclass
class Run:
    summary: SimSummary
    spans: list[ReadableSpan]
    metrics: dict[str, list[Any]]
    sessions: dict[str, SessionInstrumentation]
    call_log: RecordingCallLog

    def by_call(self, call_id: str) -> list[ReadableSpan]:
        return [s for s in self.spans if (s.attributes or {}).get("call_id") == call_id]

    def call(self, scenario: str) -> Any:
        return next(c for c in self.summary.calls if c.scenario == scenario)


def run_sim(names: list[str], *, concurrency: int, arrival_s: float = 0.4, **kw: Any) -> Run:
    sessions: dict[str, SessionInstrumentation] = {}
    call_log = RecordingCallLog()
    with capture_telemetry() as cap:
        summary = asyncio.run(
            simulate(
                calls=len(names), concurrency=concurrency, seed=11, scenarios=names,
                options=SimOptions(profile=FIXED, arrival_s=arrival_s), store_latency_s=0.01,
                price_table=TEST_PRICES, call_log=call_log,
                on_instrumented=lambda i: sessions.__setitem__(i.call_id, i), **kw,
            )
        )
        metrics = {m.name: list(m.data.data_points) for m in cap.metrics()}
        spans = cap.spans()
    return Run(summary, spans, metrics, sessions, call_log)


@pytest.fixture(scope="module")
def scenario_run() -> Iterator[Run]:
    return run_sim(list(SCENARIOS), concurrency=len(SCENARIOS))
