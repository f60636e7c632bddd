"""Simulated calls for the call-history tests and benchmark (deterministic content)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from opentelemetry import trace

from telemetry.history import CallLogger


@dataclass
class SimResult:
    calls: dict[str, str] = field(default_factory=dict)  # call_id -> phone
    trace_ids: dict[str, str] = field(default_factory=dict)
    turns: int = 0
    tool_calls: int = 0
    enqueue_s: list[float] = field(default_factory=list)  # cost of each log_* call

    def merge(self, other: SimResult) -> None:
        self.calls.update(other.calls)
        self.trace_ids.update(other.trace_ids)
        self.turns += other.turns
        self.tool_calls += other.tool_calls
        self.enqueue_s += other.enqueue_s


PHONES = ["+380501112233", "+380671234567", "+380931112200", "+380441234500"]


async def simulate_call(
    logger: CallLogger,
    call_id: str,
    *,
    phone: str,
    turns: int = 5,
    tools_every: int = 2,
    tracer: trace.Tracer | None = None,
    pause_s: float = 0.0,
    started_at: float | None = None,
) -> SimResult:
    """One call: start, ``turns`` (user + agent utterance each), a tool call every ``tools_every``
    turns, end. Every log_* call is timed."""
    res = SimResult()
    tracer = tracer or trace.get_tracer("sim")
    with tracer.start_as_current_span("call", attributes={"call_id": call_id}) as span:
        res.trace_ids[call_id] = format(span.get_span_context().trace_id, "032x")
        res.calls[call_id] = phone

        def timed(fn, *a, **kw):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            ok = fn(*a, **kw)
            res.enqueue_s.append(time.perf_counter() - t0)
            assert ok is not False or logger.stats.dropped, "enqueue refused"

        t0 = started_at if started_at is not None else time.time()
        timed(logger.log_call_start, call_id, phone=phone, room=call_id, agent_version="test-1",
              started_at=started_at)
        for i in range(turns):
            ts = t0 + 1 + i * 2 if started_at is not None else None
            timed(logger.log_turn, call_id, i, "user", f"Хочу шини 205/55 R16, репліка {i}", ts=ts,
                  stt_ms=180.0 + i)
            timed(logger.log_turn, call_id, i, "agent", f"Ось варіанти для вас, відповідь {i}",
                  ts=None if ts is None else ts + 1, llm_ms=420.5, tts_ms=95.0, ttfw_ms=780.0)
            res.turns += 2
            if tools_every and i % tools_every == 0:
                timed(logger.log_tool_call, call_id, "find_tyres", {"size": "205/55 R16", "turn": i},
                      {"found": 3, "items": [{"sku": "MICH-1", "price": 3200.5}]}, duration_ms=240.0,
                      turn_index=i, ts=None if ts is None else ts + 0.5)
                res.tool_calls += 1
            if pause_s:
                await asyncio.sleep(pause_s)
            else:
                await asyncio.sleep(0)
        timed(logger.log_call_end, call_id, outcome="resolved_by_bot", scenario="order", cost_usd=0.0412,
              turns=turns, app={"orders_created": 1}, ended_at=None if started_at is None else t0 + 2 * turns + 5)
    return res


async def simulate_calls(
    logger: CallLogger, n: int, *, prefix: str, concurrency: int = 10, **kw: object
) -> SimResult:
    total = SimResult()
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            r = await simulate_call(logger, f"{prefix}-{i}", phone=PHONES[i % len(PHONES)], **kw)  # type: ignore[arg-type]
            total.merge(r)

    await asyncio.gather(*(one(i) for i in range(n)))
    return total


async def db_counts(conn, prefix: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    like = prefix + "-%"
    return {
        "calls": await conn.fetchval("SELECT count(*) FROM calls WHERE call_id LIKE $1", like),
        "ended": await conn.fetchval(
            "SELECT count(*) FROM calls WHERE call_id LIKE $1 AND ended_at IS NOT NULL", like),
        "turns": await conn.fetchval("SELECT count(*) FROM call_turns WHERE call_id LIKE $1", like),
        "tool_calls": await conn.fetchval("SELECT count(*) FROM call_tool_calls WHERE call_id LIKE $1", like),
    }
