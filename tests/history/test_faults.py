"""Fault tests with counts, on a private PostgreSQL + Redis pair that the tests stop and start
(scripts/services.sh stop-postgres / start-postgres / stop-redis / start-redis).

Zero loss: every record enqueued ends up in PostgreSQL exactly once (row counts equal what the
simulation produced; customers' totals equal their calls), nothing dropped, the Redis buffer
drained. The calls never wait on the stores: every record is handed over by a plain function that
queues it (checked here); what that costs during an outage, and the event loop's worst stall
meanwhile, are timings: ``python -m bench.bench_history`` measures them against their targets.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
import redis.asyncio as aioredis

from telemetry.history import CallLogger, Mode, migrate

from .history_sim import PHONES, SimResult, db_counts, simulate_calls

pytestmark = [pytest.mark.db, pytest.mark.slow]

TABLES = "calls, call_turns, call_tool_calls, customers"


async def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _llen(fs, key: str) -> int:  # type: ignore[no-untyped-def]
    """LLEN on a fresh connection (the fixture's client may hold one Redis closed on restart)."""
    r = aioredis.Redis.from_url(fs.redis_url)
    try:
        return int(await r.llen(key))
    finally:
        await r.aclose()


@pytest.fixture
async def fault_env(fault_services, otel) -> AsyncIterator[tuple]:  # type: ignore[no-untyped-def]
    fs = fault_services
    await fs.arun("start-postgres")
    await fs.arun("start-redis")
    await migrate(fs.dsn)
    conn = await asyncpg.connect(fs.dsn)
    await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    key = f"voxpulse:test:{uuid.uuid4().hex}:buffer"
    r = aioredis.Redis.from_url(fs.redis_url)

    def make_logger(**kw: object) -> CallLogger:
        return CallLogger(
            fs.dsn, redis_url=fs.redis_url, redis_key=key, flush_interval=0.02, retry_max_s=0.1,
            connect_timeout=0.5, command_timeout=3.0, batch_size=100,
            tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, **kw,  # type: ignore[arg-type]
        )

    try:
        yield fs, conn, r, key, make_logger
    finally:
        # leave the pair running for the next test
        await fs.arun("start-postgres")
        await fs.arun("start-redis")
        await conn.close()
        await r.aclose()


async def _check_zero_loss(fs, sim: SimResult, logger: CallLogger, prefix: str) -> None:  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(fs.dsn)
    try:
        counts = await db_counts(conn, prefix)
        assert counts == {"calls": len(sim.calls), "ended": len(sim.calls), "turns": sim.turns,
                          "tool_calls": sim.tool_calls}, "lost or duplicated rows"
        cust = {r["phone"]: r["total_calls"] for r in await conn.fetch("SELECT phone, total_calls FROM customers")}
        assert cust == {p: sum(1 for ph in sim.calls.values() if ph == p) for p in PHONES}
        traces = dict(await conn.fetch("SELECT call_id, trace_id FROM calls"))  # type: ignore[arg-type]
        assert traces == sim.trace_ids
    finally:
        await conn.close()
    s = logger.stats
    assert s.dropped == 0 and s.rejected == 0
    assert s.written == s.enqueued == 2 * len(sim.calls) + sim.turns + sim.tool_calls


async def _run_calls(logger: CallLogger, prefix: str, n: int, otel) -> SimResult:  # type: ignore[no-untyped-def]
    return await simulate_calls(logger, n, prefix=prefix, turns=4, tools_every=2, pause_s=0.002,
                                tracer=otel.tracer_provider.get_tracer("sim"))


# The calls' side of the logger: plain functions that queue a record and return, whatever the stores do.
ENQUEUE_API = ("enqueue", "log_call_start", "log_turn", "log_tool_call", "log_call_end")


def test_the_calls_never_await_the_stores() -> None:
    assert not [name for name in ENQUEUE_API if inspect.iscoroutinefunction(getattr(CallLogger, name))]


async def test_postgres_down_mid_run_zero_loss_zero_duplicates(fault_env, otel, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, "telemetry.history")
    fs, _conn, r, key, make_logger = fault_env
    before = otel.calllog_counts()
    sim = SimResult()
    async with make_logger() as logger:
        sim.merge(await _run_calls(logger, "pgd", 10, otel))
        # PostgreSQL stops while calls are running
        # calls keep coming until PostgreSQL is down, and some after: the outage falls mid-run whatever
        # the stop command takes (services.sh runs `voxpulse stack services`, a Python CLI)
        stopped = asyncio.Event()

        async def until_stopped() -> SimResult:
            total, start = SimResult(), 1000
            while not stopped.is_set():
                total.merge(await _run_calls_prefixed(logger, "pgd", start, 10, otel))
                start += 10
            total.merge(await _run_calls_prefixed(logger, "pgd", start, 10, otel))
            return total

        running = asyncio.create_task(until_stopped())
        await fs.arun("stop-postgres")
        stopped.set()
        await _wait(lambda: logger.mode is Mode.REDIS, 15, "redis mode")
        sim.merge(await running)
        outage = await _run_calls_prefixed(logger, "pgd", 30, 20, otel)
        sim.merge(outage)
        assert await logger.flush(10)  # memory -> Redis
        buffered = await r.llen(key)
        assert buffered > 0 and logger.stats.buffered_redis >= buffered
        assert 0 < await r.ttl(key) <= 3600
        await fs.arun("start-postgres")
        assert await logger.wait_drained(30)
        assert await r.llen(key) == 0
    await _check_zero_loss(fs, sim, logger, "pgd")
    s = logger.stats
    assert s.flushed_redis == s.buffered_redis > 0
    delta = {k: v - before.get(k, 0) for k, v in otel.calllog_counts().items()}
    assert delta[("buffered", "redis")] == delta[("flushed", "redis")] == s.buffered_redis
    assert delta[("written", "postgres")] == s.written
    assert ("dropped", "memory") not in delta or delta[("dropped", "memory")] == 0
    # one log line per mode change
    assert caplog.text.count("mode postgres -> redis") == 1
    assert caplog.text.count("mode redis -> postgres") == 1
    # the buffer's housekeeping (polls, trims) is no call's work: no root span without a call or a
    # link (LLEN and TTL are this test's own look-ups)
    orphans = [sp.name for sp in otel.exporter.get_finished_spans()
               if sp.parent is None and not sp.links and not (sp.attributes or {}).get("call_id")
               and sp.instrumentation_scope is not None and "redis" in sp.instrumentation_scope.name
               and sp.name not in ("LLEN", "TTL")]
    assert not orphans, orphans


async def _run_calls_prefixed(logger: CallLogger, prefix: str, start: int, n: int, otel) -> SimResult:  # type: ignore[no-untyped-def]
    sim = await simulate_calls(logger, n, prefix=f"{prefix}-x{start}", turns=4, tools_every=2, pause_s=0.002,
                               tracer=otel.tracer_provider.get_tracer("sim"))
    return sim


@pytest.mark.parametrize("restore_first", ["redis", "postgres"])
async def test_postgres_and_redis_down_zero_loss(fault_env, otel, caplog, restore_first) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, "telemetry.history")
    fs, _conn, r, key, make_logger = fault_env
    sim = SimResult()
    async with make_logger() as logger:
        sim.merge(await _run_calls(logger, "both", 5, otel))
        await fs.arun("stop-postgres")
        sim.merge(await _run_calls_prefixed(logger, "both", 5, 10, otel))
        await _wait(lambda: logger.mode is Mode.REDIS, 15, "redis mode")
        assert await logger.flush(10)
        in_redis = await r.llen(key)
        assert in_redis > 0
        await fs.arun("stop-redis")
        outage = await _run_calls_prefixed(logger, "both", 15, 10, otel)
        sim.merge(outage)
        await _wait(lambda: logger.mode is Mode.MEMORY, 15, "memory mode")
        await _wait(lambda: logger.stats.buffered_memory > 0, 5, "records held in memory")
        assert logger.in_memory > 0
        held = logger.in_memory
        if restore_first == "redis":
            await fs.arun("start-redis")
            await _wait(lambda: logger.mode is Mode.REDIS, 15, "redis mode again")
            assert await logger.flush(10)  # memory -> Redis
            assert await _llen(fs, key) >= in_redis + held  # nothing of memory lost
            await fs.arun("start-postgres")
        else:
            await fs.arun("start-postgres")
            await _wait(lambda: logger.mode is Mode.POSTGRES, 15, "postgres mode")
            assert await logger.flush(10)  # memory -> PostgreSQL directly; Redis still down
            assert logger.redis_backlog
            await fs.arun("start-redis")
        assert await logger.wait_drained(30)
        assert await _llen(fs, key) == 0
    await _check_zero_loss(fs, sim, logger, "both")
    s = logger.stats
    assert s.buffered_memory >= held and s.flushed_memory == s.buffered_memory
    assert s.flushed_redis == s.buffered_redis
    assert "-> memory" in caplog.text


async def test_buffer_left_in_redis_by_a_previous_process_is_drained(fault_env, otel) -> None:  # type: ignore[no-untyped-def]
    fs, _conn, r, key, make_logger = fault_env
    await fs.arun("stop-postgres")
    first = make_logger()
    await first.start()
    sim = await _run_calls(first, "prev", 5, otel)
    await _wait(lambda: first.mode is Mode.REDIS, 15, "redis mode")
    assert await first.flush(10)
    await first.aclose(timeout=2)  # the process ends with its records in Redis
    assert first.stats.dropped == 0 and await r.llen(key) > 0
    await fs.arun("start-postgres")
    async with make_logger() as second:  # a new process drains the shared buffer at start
        assert await second.wait_drained(30)
    conn2 = await asyncpg.connect(fs.dsn)
    try:
        counts = await db_counts(conn2, "prev")
    finally:
        await conn2.close()
    assert counts == {"calls": 5, "ended": 5, "turns": sim.turns, "tool_calls": sim.tool_calls}
    assert second.stats.flushed_redis == first.stats.buffered_redis


async def test_aclose_flushes_within_its_bound(fault_env, otel) -> None:  # type: ignore[no-untyped-def]
    fs, _conn, _r, _key, make_logger = fault_env
    logger = make_logger()
    await logger.start()
    await _run_calls(logger, "close", 5, otel)
    t0 = time.monotonic()
    await logger.aclose(timeout=5)
    assert time.monotonic() - t0 < 5
    assert logger.stats.written == logger.stats.enqueued and logger.stats.dropped == 0
    # with both stores down, aclose returns at its bound and counts what it could not keep
    await fs.arun("stop-postgres")
    await fs.arun("stop-redis")
    logger = make_logger()
    await logger.start()
    logger.log_call_start("close-lost", phone=PHONES[0])
    t0 = time.monotonic()
    await logger.aclose(timeout=0.5)
    assert time.monotonic() - t0 < 2.0
    assert logger.stats.dropped == 1


