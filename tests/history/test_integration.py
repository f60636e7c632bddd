"""A telemetry.call() scope bound to the CallLogger: logged with no extra code per call."""

from __future__ import annotations

import pytest

import telemetry
from telemetry.history import CallLogger
from telemetry.semconv import CallOutcome, Stage
from telemetry.testing import capture_telemetry

pytestmark = pytest.mark.db


async def test_bind_call_logs_the_scope_with_its_trace_id(history_db, pg) -> None:  # type: ignore[no-untyped-def]
    with capture_telemetry(libraries=False) as cap:
        async with CallLogger(history_db, flush_interval=0.02, meter_provider=cap.meter_provider) as logger:
            async with telemetry.call(call_id="room-42", caller="+380501234567", room="room-42") as call:
                logger.bind_call(call)
                call.set_scenario("order")
                i = call.next_turn()
                logger.log_turn(call.call_id, i, "user", "Потрібні шини")
                call.add_cost(0.0123, stage=Stage.LLM, provider="openai", model="gpt-4o-mini")
                call.set_outcome(CallOutcome.TRANSFERRED, reason="customer_request")
                trace_id = call.trace_id
            assert await logger.flush(5)
    row = await pg.fetchrow("SELECT * FROM calls WHERE call_id = 'room-42'")
    assert row["trace_id"] == trace_id and len(trace_id) == 32
    assert (row["status"], row["outcome"], row["transfer_reason"], row["scenario"]) == (
        "transferred", "transferred", "customer_request", "order")
    assert float(row["cost_usd"]) == pytest.approx(0.0123) and row["turns"] == 1
    assert row["phone"] == "+380501234567" and row["room"] == "room-42"  # raw in PostgreSQL
    assert row["ended_at"] is not None and row["duration_seconds"] >= 0
    turn = await pg.fetchrow("SELECT trace_id, text FROM call_turns WHERE call_id = 'room-42'")
    assert (turn["trace_id"], turn["text"]) == (trace_id, "Потрібні шини")
    assert await pg.fetchval("SELECT total_calls FROM customers WHERE phone = '+380501234567'") == 1
