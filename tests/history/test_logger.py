"""CallLogger against the real PostgreSQL and Redis: rows, idempotency, customers, trace linkage."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import time

import pytest

from telemetry.history import CallEnded, CallLogger, CallStarted, Mode, ToolCallRecord, TurnRecord
from telemetry.history.logger import SPAN_WRITE
from tests.support import closed_port

from .history_sim import PHONES, db_counts, simulate_calls

pytestmark = pytest.mark.db


def _logger(dsn: str, otel, **kw) -> CallLogger:  # type: ignore[no-untyped-def]
    kw.setdefault("flush_interval", 0.02)
    return CallLogger(dsn, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, **kw)


async def test_simulated_calls_produce_exactly_the_expected_rows(history_db, pg, otel) -> None:  # type: ignore[no-untyped-def]
    async with _logger(history_db, otel, batch_size=64) as logger:
        sim = await simulate_calls(logger, 20, prefix="sim", turns=6, tools_every=2,
                                   tracer=otel.tracer_provider.get_tracer("sim"))
        assert await logger.flush(10)
    counts = await db_counts(pg, "sim")
    assert counts == {"calls": 20, "ended": 20, "turns": sim.turns, "tool_calls": sim.tool_calls}
    assert sim.turns == 20 * 12 and sim.tool_calls == 20 * 3
    # every call row holds its trace id (the one Tempo knows) and its outcome
    rows = await pg.fetch("SELECT call_id, trace_id, span_id, status, outcome, cost_usd, customer_id, phone, "
                          "duration_seconds, app->>'orders_created' AS orders_created FROM calls")
    for r in rows:
        assert r["trace_id"] == sim.trace_ids[r["call_id"]]
        assert r["span_id"] and len(r["span_id"]) == 16
        assert (r["status"], r["outcome"], float(r["cost_usd"])) == ("completed", "resolved_by_bot", 0.0412)
        assert r["customer_id"] is not None and r["duration_seconds"] >= 0 and r["orders_created"] == "1"
    # customers: one per phone, totals = calls from that phone
    cust = {r["phone"]: r["total_calls"] for r in await pg.fetch("SELECT phone, total_calls FROM customers")}
    expected = {p: sum(1 for ph in sim.calls.values() if ph == p) for p in PHONES}
    assert cust == expected
    # turns and tool calls carry their call's trace id too
    assert await pg.fetchval("SELECT count(*) FROM call_turns WHERE trace_id IS NULL") == 0
    tool = await pg.fetchrow("SELECT args, result, success FROM call_tool_calls LIMIT 1")
    assert '"size": "205/55 R16"' in tool["args"] and tool["success"] is True
    assert logger.stats.written == logger.stats.enqueued == 20 * 2 + sim.turns + sim.tool_calls
    assert logger.stats.dropped == logger.stats.rejected == 0
    assert otel.calllog_counts().get(("written", "postgres"), 0) >= logger.stats.written


async def test_replays_never_duplicate_and_customers_count_each_call_once(history_db, pg, otel) -> None:  # type: ignore[no-untyped-def]
    t0 = time.time() - 60
    records = [
        CallStarted("r-1", t0, phone="+380501112233", caller_name="Олена", trace_id="ab" * 16, span_id="cd" * 8),
        TurnRecord("r-1", 0, "user", "Привіт", t0 + 1),
        TurnRecord("r-1", 0, "agent", "Добрий день", t0 + 2, llm_ms=300.0),
        ToolCallRecord("r-1", "find_tyres", {"q": 1}, {"ok": True}, True, t0 + 3),
        CallEnded("r-1", t0 + 30, started_at=t0, outcome="transferred", status="transferred",
                  transfer_reason="customer_request"),
        CallStarted("r-2", t0 + 5, phone="+380501112233"),
        CallEnded("r-2", t0 + 50, started_at=t0 + 5, outcome="resolved_by_bot"),
    ]
    async with _logger(history_db, otel) as logger:
        for _ in range(3):  # the same records three times: in one batch, then in separate batches
            for rec in records:
                logger.enqueue(rec)
        assert await logger.flush(10)
        for rec in records:
            logger.enqueue(rec)
        assert await logger.flush(10)
    assert await pg.fetchval("SELECT count(*) FROM calls") == 2
    assert await pg.fetchval("SELECT count(*) FROM call_turns") == 2
    assert await pg.fetchval("SELECT count(*) FROM call_tool_calls") == 1
    c = await pg.fetchrow("SELECT * FROM customers")
    assert (c["phone"], c["name"], c["total_calls"]) == ("+380501112233", "Олена", 2)
    assert c["first_call_at"] == dt.datetime.fromtimestamp(t0, dt.UTC)
    assert c["last_call_at"] == dt.datetime.fromtimestamp(t0 + 5, dt.UTC)
    r1 = await pg.fetchrow("SELECT * FROM calls WHERE call_id = 'r-1'")
    assert (r1["status"], r1["transfer_reason"], r1["duration_seconds"]) == ("transferred", "customer_request", 30.0)


async def test_call_end_before_its_start_still_counts_once(history_db, pg, otel) -> None:  # type: ignore[no-untyped-def]
    t0 = time.time() - 100
    async with _logger(history_db, otel) as logger:
        logger.enqueue(CallEnded("o-1", t0 + 10, started_at=t0, phone="+380670000001", outcome="abandoned"))
        assert await logger.flush(5)
        logger.enqueue(CallStarted("o-1", t0, phone="+380670000001"))
        assert await logger.flush(5)
    row = await pg.fetchrow("SELECT status, outcome, ended_at FROM calls WHERE call_id = 'o-1'")
    assert row["outcome"] == "abandoned" and row["ended_at"] is not None
    assert await pg.fetchval("SELECT total_calls FROM customers WHERE phone = '+380670000001'") == 1


async def test_batches_by_size_and_time(history_db, pg, otel) -> None:  # type: ignore[no-untyped-def]
    async with _logger(history_db, otel, batch_size=50, flush_interval=0.05) as logger:
        logger.log_call_start("b-1", phone="+380501112233")
        # time: one record is written within a few flush intervals without any flush() call
        deadline = time.monotonic() + 5
        while await pg.fetchval("SELECT count(*) FROM calls") == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert await logger.flush(5)
        otel.exporter.clear()
        for i in range(500):
            logger.log_turn("b-1", i, "user", "x")
        assert await logger.flush(10)
    writes = [s for s in otel.exporter.get_finished_spans() if s.name == SPAN_WRITE]
    sizes = [s.attributes["voxpulse.calllog.batch.records"] for s in writes]
    assert sum(sizes) == 500 and max(sizes) <= 50 and len(writes) >= 10


async def test_batch_spans_link_to_the_calls_and_parent_the_asyncpg_spans(history_db, otel) -> None:  # type: ignore[no-untyped-def]
    tracer = otel.tracer_provider.get_tracer("sim")
    async with _logger(history_db, otel) as logger:
        sim = await simulate_calls(logger, 3, prefix="tl", turns=2, tracer=tracer)
        assert await logger.flush(5)
    spans = otel.exporter.get_finished_spans()
    writes = [s for s in spans if s.name == SPAN_WRITE]
    assert writes
    linked = {format(link.context.trace_id, "032x"): link.attributes["call_id"]
              for s in writes for link in s.links}
    assert {tid: cid for cid, tid in sim.trace_ids.items()} == linked
    # the writer's spans are separate traces (not inside any call's trace)
    call_traces = {s.context.trace_id for s in spans if s.name == "call"}
    assert all(s.context.trace_id not in call_traces for s in writes)
    assert all(s.parent is None for s in writes)
    # asyncpg's spans are children of the batch span (so they reach the calls through its links)
    write_ids = {s.context.span_id for s in writes}
    db_spans = [s for s in spans if s.instrumentation_scope.name.startswith("opentelemetry.instrumentation.asyncpg")]
    assert db_spans, [s.name for s in spans]
    batch_db = [s for s in db_spans if s.parent is not None and s.parent.span_id in write_ids]
    assert any("INSERT" in (s.attributes.get("db.statement") or s.name) for s in batch_db)


async def test_start_with_database_down_is_not_an_error(otel, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, "telemetry.history")
    with closed_port() as port:
        logger = _logger(f"postgresql://nobody:x@127.0.0.1:{port}/none", otel, retry_max_s=0.05,
                         connect_timeout=0.5)
        await logger.start()
        # the call's side never waits on the database: a plain function that queues the record and
        # returns (the writer task, which has not run yet, does the I/O)
        assert not inspect.iscoroutinefunction(logger.log_call_start)
        logger.log_call_start("down-1", phone="+380501112233")
        assert logger.in_memory == 1
        deadline = time.monotonic() + 5
        while logger.mode is not Mode.MEMORY:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert "mode postgres -> memory" in caplog.text
        await logger.aclose(timeout=0.3)
    assert logger.stats.dropped == 1  # counted and logged, not silent
    assert "could not be written or buffered" in caplog.text


async def test_memory_bound_drops_are_counted_and_logged(otel, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, "telemetry.history")
    # never started, so never connects: the DSN only has to be well formed
    logger = _logger("postgresql://nobody:x@127.0.0.1:1/none", otel, max_memory_records=100,
                     connect_timeout=0.2)
    before = otel.calllog_counts().get(("dropped", "memory"), 0)
    for i in range(150):  # not started: nothing is written, the bound applies
        logger.log_turn("m-1", i, "user", "x")
    assert logger.stats.dropped == 50 and logger.in_memory == 100
    assert otel.calllog_counts()[("dropped", "memory")] - before == 50
    assert "dropped 1 record(s): memory buffer full (100 records)" in caplog.text
    assert len(caplog.records) == 1  # one line, not one per record
    await logger.aclose(timeout=0.1)
    assert logger.stats.dropped == 150
    # the rest of the overflow, then the records lost at shutdown, each summarised in one line
    assert "dropped 49 record(s)" in caplog.text
    assert "100 records could not be written or buffered" in caplog.text
