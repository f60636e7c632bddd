"""CallLogger: the agent enqueues, a background task writes; PostgreSQL -> Redis -> memory.

The agent-facing methods (:meth:`CallLogger.log_turn` and friends, :meth:`CallLogger.enqueue`)
only append to an in-memory deque: no awaits, no I/O, a few microseconds. One writer task
(started by :meth:`CallLogger.start`) batches records by size and time and writes them with one
statement per table (``INSERT ... SELECT FROM unnest(...) ON CONFLICT``), so replays never
duplicate.

Degradation (seed 002 §8.6):

* ``postgres`` -- normal: batches go to PostgreSQL.
* ``redis``    -- PostgreSQL unreachable: batches go to a Redis list (TTL 1 h, refreshed on every
  push); when PostgreSQL answers again the list is written back in order (under a Redis lock, so
  one process drains at a time), then new records.
* ``memory``   -- PostgreSQL and Redis unreachable: records stay in the bounded in-memory queue
  and are written (or pushed to Redis) when either returns.

Calls never block or fail because of either. Records beyond ``max_memory_records`` are dropped,
counted (``voxpulse.calllog.records{result=dropped,buffer=memory}``) and logged; nothing is lost
silently. One log line per mode change.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions as redis_exc
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Link, SpanContext, TraceFlags, TracerProvider

from telemetry.history.records import CallEnded, CallStarted, Record, ToolCallRecord, TurnRecord
from telemetry.history.sanitize import RejectedRecord
from telemetry.history.schema import ensure_partitions, migrate, month_of
from telemetry.history.store import Row, prepare, row_trace, row_ts, valid_row, write_rows
from telemetry.semconv import Attr, SpanName

__all__ = ["CallLogger", "LoggerStats", "Mode"]

log = logging.getLogger("telemetry.history")

# Span names and attributes of the writer (telemetry.semconv).
SPAN_WRITE: Final = SpanName.CALLLOG_WRITE
SPAN_BUFFER: Final = SpanName.CALLLOG_BUFFER
ATTR_RECORDS: Final = Attr.CALLLOG_BATCH_RECORDS
ATTR_CALLS: Final = Attr.CALLLOG_BATCH_CALLS
ATTR_SOURCE: Final = Attr.CALLLOG_BATCH_SOURCE  # memory | redis
MAX_LINKS: Final = 64

_DRAIN_RELEASE: Final = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
)


class Mode(StrEnum):
    """Where records go now."""

    POSTGRES = "postgres"
    REDIS = "redis"
    MEMORY = "memory"


@dataclass(slots=True)
class LoggerStats:
    """Counts since start (the same numbers as the ``voxpulse.calllog.records`` counter)."""

    enqueued: int = 0
    written: int = 0  # rows that reached PostgreSQL (directly or from a buffer)
    buffered_redis: int = 0
    buffered_memory: int = 0  # records held in memory while both stores were down
    flushed_redis: int = 0
    flushed_memory: int = 0
    dropped: int = 0  # memory bound exceeded, logger closed, or lost at shutdown
    rejected: int = 0  # invalid records (reason logged)


def _unavailable_pg(exc: BaseException) -> bool:
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.PostgresConnectionError
        | asyncpg.exceptions.OperatorInterventionError
        | asyncpg.exceptions.InsufficientResourcesError
        | asyncpg.exceptions.UndefinedTableError
        | asyncpg.exceptions.UndefinedFunctionError
        | asyncpg.exceptions.InvalidAuthorizationSpecificationError
        | asyncpg.exceptions.InvalidCatalogNameError
        | asyncpg.exceptions.ReadOnlySQLTransactionError,
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _current_ids() -> tuple[str | None, str | None]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class CallLogger:
    """Non-blocking call-history writer. See the module docstring.

    ``dsn``/``pool``: PostgreSQL (a DSN, or an asyncpg pool you own). ``redis_url``/``redis``: the
    buffer and optional (without it a PostgreSQL outage goes straight to memory).
    ``tracer_provider``/``meter_provider``: defaults are the global ones (telemetry.configure()).
    """

    DEFAULT_BATCH_SIZE: Final = 1000

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: Any = None,
        redis_url: str | None = None,
        redis: aioredis.Redis | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = 0.2,
        max_memory_records: int = 100_000,
        redis_key: str = "voxpulse:calllog:buffer",
        redis_ttl_s: int = 3600,
        auto_migrate: bool = True,
        connect_timeout: float = 2.0,
        command_timeout: float = 10.0,
        retry_max_s: float = 2.0,
        pool_max_size: int = 2,
        agent_version: str | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if dsn is None and pool is None:
            raise ValueError("CallLogger needs a dsn or a pool")
        if batch_size < 1 or max_memory_records < 1:
            raise ValueError("batch_size and max_memory_records must be >= 1")
        self._dsn = dsn
        self._pool: Any = pool
        self._own_pool = pool is None
        self._redis_url = redis_url
        self._redis: aioredis.Redis | None = redis
        self._own_redis = redis is None
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_memory_records = max_memory_records
        self.redis_key = redis_key
        self._lock_key = f"{redis_key}:drain-lock"
        self.redis_ttl_s = redis_ttl_s
        self._auto_migrate = auto_migrate
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._retry_max_s = retry_max_s
        self._pool_max_size = pool_max_size
        self.agent_version = agent_version
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("telemetry.history")
        self._meter_provider = meter_provider

        self._pending: collections.deque[Record] = collections.deque()
        self._staged: list[Row] = []  # prepared rows taken from _pending, not yet written/pushed
        self._held = 0  # records at the head of memory counted as buffered/memory
        self._calls: dict[str, CallStarted] = {}  # open calls, to complete their CallEnded
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._busy = False

        self._pg_ok = False
        self._pg_retry_at = 0.0
        self._pg_delay = 0.0
        self._migrated = not auto_migrate
        self._known_months: set[dt.date] = set()
        self._hot = (0.0, 0.0, dt.date(1970, 1, 1))  # [lo, hi) epoch seconds of the month seen last
        self._redis_ok = False
        self._redis_retry_at = 0.0
        self._redis_delay = 0.0
        self._redis_backlog = True  # unknown at start: check once
        self._mode = Mode.POSTGRES
        self._last_reason = ""
        self._overflow_logged_at = -1e9
        self._overflow_since_log = 0
        self._overflow_why = ""

        self.stats = LoggerStats()

    # -- construction helpers -----------------------------------------------------------------

    @classmethod
    def from_env(cls, **kwargs: Any) -> CallLogger:
        """DSN from ``VOXPULSE_DATABASE_URL`` or ``DATABASE_URL``, Redis from ``VOXPULSE_REDIS_URL``
        or ``REDIS_URL`` (optional)."""
        dsn = os.environ.get("VOXPULSE_DATABASE_URL") or os.environ.get("DATABASE_URL")
        if not dsn:
            raise RuntimeError("set DATABASE_URL (or VOXPULSE_DATABASE_URL) for the call history")
        redis_url = os.environ.get("VOXPULSE_REDIS_URL") or os.environ.get("REDIS_URL")
        return cls(dsn, redis_url=redis_url, **kwargs)

    # -- state ---------------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def in_memory(self) -> int:
        """Records held in this process (queued or staged), not yet written or buffered."""
        return len(self._pending) + len(self._staged)

    @property
    def redis_backlog(self) -> bool:
        """True while the Redis buffer may hold records not yet written to PostgreSQL."""
        return self._redis_backlog and self._redis is not None

    # -- agent-facing API: enqueue only ---------------------------------------------------------

    def enqueue(self, record: Record) -> bool:
        """Queue one record; never blocks, never raises. False when it was dropped (counted)."""
        self.stats.enqueued += 1
        if self._closed:
            self._drop(1, "the call logger is closed")
            return False
        if len(self._pending) + len(self._staged) >= self.max_memory_records:
            self._drop(1, f"memory buffer full ({self.max_memory_records} records)")
            return False
        self._pending.append(record)
        wake = self._wake
        if wake is not None and len(self._pending) >= self.batch_size and not wake.is_set():
            try:
                if asyncio.get_running_loop() is self._loop:
                    wake.set()
            except RuntimeError:  # another thread: the writer polls every flush_interval
                pass
        return True

    def log_call_start(
        self,
        call_id: str,
        *,
        phone: str | None = None,
        caller_name: str | None = None,
        direction: str = "inbound",
        room: str | None = None,
        agent_version: str | None = None,
        scenario: str | None = None,
        started_at: float | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> bool:
        """A call began. Trace ids default to the current span's (call it inside the call scope)."""
        if trace_id is None:
            trace_id, cur_span = _current_ids()
            span_id = span_id or cur_span
        rec = CallStarted(
            call_id, time.time() if started_at is None else started_at, phone, caller_name, direction,
            room, agent_version or self.agent_version, scenario, trace_id, span_id,
        )
        if len(self._calls) >= 10_000:  # calls that never ended: forget the oldest
            self._calls.pop(next(iter(self._calls)))
        self._calls[call_id] = rec
        return self.enqueue(rec)

    def log_turn(
        self,
        call_id: str,
        turn_index: int,
        speaker: str,
        text: str,
        *,
        ts: float | None = None,
        stt_ms: float | None = None,
        llm_ms: float | None = None,
        tts_ms: float | None = None,
        ttfw_ms: float | None = None,
        interrupted: bool = False,
    ) -> bool:
        """One utterance (``speaker``: user, agent or system) with its stage latencies in ms."""
        start = self._calls.get(call_id)
        if start is not None:
            trace_id, span_id = start.trace_id, start.span_id
        else:
            trace_id, span_id = _current_ids()
        return self.enqueue(
            TurnRecord(
                call_id, turn_index, speaker, text, time.time() if ts is None else ts, stt_ms, llm_ms,
                tts_ms, ttfw_ms, interrupted, trace_id, span_id,
            )
        )

    def log_tool_call(
        self,
        call_id: str,
        name: str,
        args: Any,
        result: Any,
        *,
        success: bool = True,
        duration_ms: float | None = None,
        ts: float | None = None,
        turn_index: int | None = None,
        tool_call_id: str | None = None,
        error: str | None = None,
    ) -> bool:
        """One tool call; ``args``/``result`` are stored as JSONB (serialised by the writer: do
        not mutate them after logging)."""
        start = self._calls.get(call_id)
        if start is not None:
            trace_id, span_id = start.trace_id, start.span_id
        else:
            trace_id, span_id = _current_ids()
        return self.enqueue(
            ToolCallRecord(
                call_id, name, args, result, success, time.time() if ts is None else ts, duration_ms,
                turn_index, tool_call_id, error, trace_id, span_id,
            )
        )

    def log_call_end(
        self,
        call_id: str,
        *,
        status: str | None = None,
        outcome: str | None = None,
        scenario: str | None = None,
        transfer_reason: str | None = None,
        cost_usd: float | None = None,
        turns: int | None = None,
        orders_created: int = 0,
        fittings_booked: int = 0,
        ended_at: float | None = None,
        started_at: float | None = None,
        duration_seconds: float | None = None,
    ) -> bool:
        """A call ended. ``status`` defaults from ``outcome`` (transferred -> transferred,
        failed -> failed, else completed); identity fields come from the call's start."""
        start = self._calls.pop(call_id, None)
        if status is None:
            status = {"transferred": "transferred", "failed": "failed"}.get(outcome or "", "completed")
        rec = CallEnded(
            call_id,
            time.time() if ended_at is None else ended_at,
            started_at if started_at is not None else (start.started_at if start else None),
            status, outcome, scenario, transfer_reason, cost_usd, duration_seconds, turns,
            orders_created, fittings_booked,
            start.phone if start else None, start.caller_name if start else None,
            start.direction if start else None, start.room if start else None,
            start.agent_version if start else self.agent_version,
            start.trace_id if start else None, start.span_id if start else None,
        )
        return self.enqueue(rec)

    def bind_call(self, scope: Any) -> None:
        """Log a ``telemetry.call()`` scope: its start now, its end from ``scope.on_end``.

        Duck-typed on CallScope (call_id, caller, direction, room, started_at, trace_id, span,
        scenario, outcome, transfer_reason, cost_usd, turns, on_end)."""
        span_id = None
        with contextlib.suppress(Exception):
            ctx = scope.span.get_span_context()
            span_id = format(ctx.span_id, "016x") if ctx.is_valid else None
        self.log_call_start(
            scope.call_id, phone=getattr(scope, "caller", None),
            direction=getattr(scope, "direction", "inbound") or "inbound", room=getattr(scope, "room", None),
            scenario=getattr(scope, "scenario", None), started_at=getattr(scope, "started_at", None) or None,
            trace_id=getattr(scope, "trace_id", None) or None, span_id=span_id,
        )
        scope.on_end(self._on_scope_end)

    def _on_scope_end(self, scope: Any) -> None:
        outcome = getattr(scope, "outcome", None)
        outcome_s = getattr(outcome, "value", outcome)
        self.log_call_end(
            scope.call_id, outcome=None if outcome_s is None else str(outcome_s),
            scenario=getattr(scope, "scenario", None),
            transfer_reason=getattr(scope, "transfer_reason", None),
            cost_usd=getattr(scope, "cost_usd", None), turns=getattr(scope, "turns", None),
        )

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer task. Returns at once: an unreachable database is not an error."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._redis is None and self._redis_url:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._redis = aioredis.Redis.from_url(
                self._redis_url, socket_connect_timeout=self._connect_timeout,
                socket_timeout=self._command_timeout, retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
        # A fresh context: the writer's spans must not join whichever call happened to start it.
        self._task = self._loop.create_task(self._run(), name="voxpulse-calllog-writer",
                                            context=contextvars.Context())

    async def __aenter__(self) -> CallLogger:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait (bounded) until every record enqueued so far left memory: written to PostgreSQL or
        buffered in Redis. True when it did."""
        deadline = time.monotonic() + timeout
        while self._pending or self._staged or self._busy:
            if time.monotonic() >= deadline:
                return False
            self._kick()
            await asyncio.sleep(0.005)
        return True

    async def wait_drained(self, timeout: float = 10.0) -> bool:
        """Wait (bounded) until memory AND the Redis buffer are written to PostgreSQL."""
        deadline = time.monotonic() + timeout
        while self._pending or self._staged or self._busy or not self._pg_ok or self.redis_backlog:
            if time.monotonic() >= deadline:
                return False
            self._kick()
            await asyncio.sleep(0.01)
        return True

    async def aclose(self, timeout: float = 5.0) -> None:
        """Flush what is in memory (to PostgreSQL, else Redis) within ``timeout`` seconds, then
        stop. Whatever could not be kept is counted as dropped and logged."""
        if self._closed:
            return
        self._closing = True
        self._kick()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._closed = True
        self._log_overflow()
        left = len(self._pending) + len(self._staged)
        if left:
            self._pending.clear()
            self._staged.clear()
            self._count(left, "dropped", Mode.MEMORY)
            self.stats.dropped += left
            log.error(
                "call history: %d records could not be written or buffered within %.1fs of shutdown "
                "(mode %s) and are lost", left, timeout, self._mode.value,
            )
        if self._own_pool and self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 2.0)
            with contextlib.suppress(Exception):
                self._pool.terminate()
        if self._own_redis and self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    # -- writer ------------------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._closing:
                delay = self.flush_interval
                if not self._pg_ok:
                    delay = min(delay, max(0.0, self._pg_retry_at - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                self._wake.clear()
            self._busy = True
            try:
                await self._cycle()
            except Exception:  # the writer never dies
                log.exception("call history writer: unexpected error (records kept in memory)")
                await asyncio.sleep(0.05)
            finally:
                self._busy = False
            if self._closing:
                if not self._pending and not self._staged:
                    return
                if self._mode is Mode.MEMORY:  # nothing reachable: retry until aclose's timeout
                    await asyncio.sleep(0.05)

    async def _cycle(self) -> None:
        now = time.monotonic()
        if not self._pg_ok and (now >= self._pg_retry_at or self._closing):
            await self._probe_pg()
        if self._redis is not None and not self._redis_ok and (now >= self._redis_retry_at or self._closing):
            await self._probe_redis()
        self._update_mode()
        if self._pg_ok:
            if self._redis_ok and self._redis_backlog and not self._closing:
                await self._drain_redis()
            while self._pg_ok and (self._staged or self._pending):
                self._stage(self.batch_size)
                if not self._staged:
                    continue
                batch = self._staged[: self.batch_size]
                # Pipeline: PostgreSQL works on this batch while we prepare the next one.
                write = asyncio.ensure_future(self._write_pg(batch, source="memory"))
                try:
                    await self._stage_async(len(batch) + self.batch_size)
                except BaseException:  # cancelled (aclose timeout): no orphan write left behind
                    write.cancel()
                    raise
                if not await write:
                    break
                del self._staged[: len(batch)]
                self._left_memory(len(batch))
        if not self._pg_ok and self._redis_ok:
            while self._redis_ok and (self._staged or self._pending):
                self._stage(self.batch_size)
                if not self._staged:
                    continue
                batch = self._staged[: self.batch_size]
                if not await self._push_redis(batch):
                    break
                del self._staged[: len(batch)]
                self.stats.buffered_redis += len(batch)
                self._count(len(batch), "buffered", Mode.REDIS)
                self._left_memory(len(batch))
        self._update_mode()
        if self._overflow_since_log and time.monotonic() - self._overflow_logged_at >= 10.0:
            self._log_overflow()
        if self._mode is Mode.MEMORY:
            held = len(self._staged) + len(self._pending)
            if held > self._held:
                self.stats.buffered_memory += held - self._held
                self._count(held - self._held, "buffered", Mode.MEMORY)
                self._held = held

    async def _stage_async(self, limit: int) -> None:
        """_stage() in slices, yielding to the loop between them (the write in flight progresses,
        the calls' tasks never wait behind a long preparation)."""
        while len(self._staged) < limit and self._pending:
            self._stage(min(limit, len(self._staged) + 64))
            await asyncio.sleep(0)

    def _stage(self, limit: int) -> None:
        """Move records from the queue into prepared rows until ``limit`` rows are staged
        (rejected records are logged and counted once, here)."""
        staged = self._staged
        pending = self._pending
        rejected = 0
        while len(staged) < limit and pending:
            rec = pending.popleft()
            try:
                staged.append(prepare(rec))
            except RejectedRecord as exc:
                rejected += 1
                log.warning(
                    "call history: rejected %s record of call %r: %s",
                    type(rec).__name__, getattr(rec, "call_id", None), exc,
                )
            except Exception as exc:  # a bug or a hostile object: reject, never crash the writer
                rejected += 1
                log.warning("call history: rejected %s record: %s", type(rec).__name__, _reason(exc))
        if rejected:
            self.stats.rejected += rejected
            self._count(rejected, "rejected", Mode.POSTGRES)
            self._left_memory(rejected)

    def _left_memory(self, n: int) -> None:
        moved = min(n, self._held)
        if moved:
            self._held -= moved
            self.stats.flushed_memory += moved
            self._count(moved, "flushed", Mode.MEMORY)

    # -- PostgreSQL --------------------------------------------------------------------------------

    async def _probe_pg(self) -> None:
        try:
            with suppress_instrumentation():
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn, min_size=0, max_size=self._pool_max_size, timeout=self._connect_timeout,
                        command_timeout=self._command_timeout,
                    )
                async with asyncio.timeout(self._connect_timeout * 2):
                    async with self._pool.acquire() as conn:
                        await conn.fetchval("SELECT 1")
                        if not self._migrated:
                            await migrate(conn)
                            self._migrated = True
        except Exception as exc:
            self._pg_down(exc)
            return
        self._pg_ok = True
        self._pg_delay = 0.0

    def _pg_down(self, exc: BaseException) -> None:
        self._pg_ok = False
        self._pg_delay = min(self._retry_max_s, max(0.05, self._pg_delay * 2))
        self._pg_retry_at = time.monotonic() + self._pg_delay
        self._last_reason = f"PostgreSQL unreachable ({_reason(exc)})"
        if isinstance(exc, asyncpg.exceptions.UndefinedTableError
                      | asyncpg.exceptions.UndefinedFunctionError):
            self._migrated = not self._auto_migrate
            self._known_months.clear()

    def _links(self, rows: Sequence[Row]) -> tuple[list[Link], int]:
        seen: dict[str, Link] = {}
        calls: set[str] = set()
        for r in rows:
            if r[1] in calls:
                continue
            call_id, trace_id, span_id = row_trace(r)
            calls.add(call_id)
            if trace_id and span_id and trace_id not in seen and len(seen) < MAX_LINKS:
                with contextlib.suppress(ValueError):
                    ctx = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                                      trace_flags=TraceFlags(TraceFlags.SAMPLED))
                    seen[trace_id] = Link(ctx, {Attr.CALL_ID: call_id})
        return list(seen.values()), len(calls)

    async def _write_pg(self, rows: list[Row], *, source: str) -> bool:
        """Write rows (bisecting around rows PostgreSQL refuses). False: PostgreSQL unavailable."""
        links, ncalls = self._links(rows)
        with self._tracer.start_as_current_span(
            SPAN_WRITE, links=links,
            attributes={ATTR_RECORDS: len(rows), ATTR_CALLS: ncalls, ATTR_SOURCE: source,
                        Attr.CALLLOG_BUFFER: Mode.POSTGRES.value},
        ) as span:
            try:
                written = await self._write_bisect(rows)
            except Exception as exc:
                if not _unavailable_pg(exc):
                    raise
                span.set_attribute(Attr.ERROR_TYPE, type(exc).__name__)
                self._pg_down(exc)
                self._update_mode()
                return False
        self.stats.written += written
        self._count(written, "written", Mode.POSTGRES)
        return True

    async def _write_bisect(self, rows: list[Row]) -> int:
        try:
            await self._write_once(rows)
            return len(rows)
        except Exception as exc:
            if _unavailable_pg(exc) or not isinstance(exc, asyncpg.PostgresError | ValueError | TypeError):
                raise
            if len(rows) == 1:
                self.stats.rejected += 1
                self._count(1, "rejected", Mode.POSTGRES)
                kind = {"s": "call start", "e": "call end", "t": "turn", "c": "tool call"}.get(rows[0][0])
                log.warning("call history: PostgreSQL refused a %s row of call %r: %s",
                            kind, rows[0][1], _reason(exc))
                return 0
            mid = len(rows) // 2
            return await self._write_bisect(rows[:mid]) + await self._write_bisect(rows[mid:])

    def _months(self, rows: list[Row]) -> set[dt.date]:
        """UTC months of the rows' partition keys: a range check per row, month_of() only when a
        row falls outside the month seen last."""
        lo, hi, cur = self._hot
        out: set[dt.date] = set()
        for r in rows:
            t = row_ts(r)
            if t is None:
                continue
            if not lo <= t < hi:
                cur = month_of(t)
                nxt = dt.date(cur.year + cur.month // 12, cur.month % 12 + 1, 1)
                lo = dt.datetime(cur.year, cur.month, 1, tzinfo=dt.UTC).timestamp()
                hi = dt.datetime(nxt.year, nxt.month, 1, tzinfo=dt.UTC).timestamp()
            out.add(cur)
        self._hot = (lo, hi, cur)
        return out

    async def _write_once(self, rows: list[Row]) -> None:
        pool = self._pool
        months = self._months(rows)
        missing = months - self._known_months
        async with asyncio.timeout(self._command_timeout + self._connect_timeout):
            async with pool.acquire() as conn:
                if missing:
                    await ensure_partitions(conn, missing)
                    self._known_months |= missing
                try:
                    stats = await write_rows(conn, rows)
                except asyncpg.exceptions.CheckViolationError as exc:
                    if "no partition" not in str(exc):
                        raise
                    # a partition dropped behind our back (or a cache gone stale): create, retry once
                    await ensure_partitions(conn, months)
                    self._known_months |= months
                    stats = await write_rows(conn, rows)
        if stats.ends_without_row:
            log.warning("call history: call end without a call row (start unknown): %s",
                        ", ".join(stats.ends_without_row[:10]))

    # -- Redis buffer ------------------------------------------------------------------------------

    async def _probe_redis(self) -> None:
        assert self._redis is not None
        try:
            with suppress_instrumentation():
                async with asyncio.timeout(self._connect_timeout * 2):
                    await self._redis.ping()
        except Exception as exc:
            self._redis_down(exc)
            return
        self._redis_ok = True
        self._redis_delay = 0.0

    def _redis_down(self, exc: BaseException) -> None:
        self._redis_ok = False
        self._redis_delay = min(self._retry_max_s, max(0.05, self._redis_delay * 2))
        self._redis_retry_at = time.monotonic() + self._redis_delay
        if not self._pg_ok:
            self._last_reason = f"{self._last_reason}; Redis unreachable ({_reason(exc)})"

    async def _push_redis(self, rows: list[Row]) -> bool:
        assert self._redis is not None
        payload = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows]
        links, ncalls = self._links(rows)
        with self._tracer.start_as_current_span(
            SPAN_BUFFER, links=links,
            attributes={ATTR_RECORDS: len(rows), ATTR_CALLS: ncalls, ATTR_SOURCE: "memory",
                        Attr.CALLLOG_BUFFER: Mode.REDIS.value},
        ) as span:
            try:
                async with asyncio.timeout(self._command_timeout):
                    async with self._redis.pipeline(transaction=True) as pipe:
                        pipe.rpush(self.redis_key, *payload)
                        pipe.expire(self.redis_key, self.redis_ttl_s)
                        await pipe.execute()
            except (redis_exc.RedisError, OSError, TimeoutError) as exc:
                span.set_attribute(Attr.ERROR_TYPE, type(exc).__name__)
                self._redis_down(exc)
                self._update_mode()
                return False
        self._redis_backlog = True
        return True

    async def _drain_redis(self) -> None:
        """Write the Redis buffer to PostgreSQL, oldest first, under a drain lock."""
        assert self._redis is not None
        r = self._redis
        token = uuid.uuid4().hex
        try:
            with suppress_instrumentation():
                if not await r.set(self._lock_key, token, nx=True, px=30_000):
                    return  # another process drains it
        except (redis_exc.RedisError, OSError, TimeoutError) as exc:
            self._redis_down(exc)
            return
        try:
            while self._pg_ok and self._redis_ok:
                try:
                    raw = await r.lrange(self.redis_key, 0, self.batch_size - 1)
                except (redis_exc.RedisError, OSError, TimeoutError) as exc:
                    self._redis_down(exc)
                    return
                if not raw:
                    self._redis_backlog = False
                    return
                rows: list[Row] = []
                for item in raw:
                    try:
                        row = json.loads(item)
                    except ValueError:
                        row = None
                    if valid_row(row):
                        rows.append(row)
                    else:
                        self.stats.rejected += 1
                        self._count(1, "rejected", Mode.REDIS)
                        log.warning("call history: unreadable record in the Redis buffer skipped")
                if rows and not await self._write_pg(rows, source="redis"):
                    return
                try:
                    await r.ltrim(self.redis_key, len(raw), -1)
                    await r.pexpire(self._lock_key, 30_000)
                except (redis_exc.RedisError, OSError, TimeoutError) as exc:
                    # written but not trimmed: the next drain replays them (idempotent)
                    self._redis_down(exc)
                    return
                self.stats.flushed_redis += len(rows)
                self._count(len(rows), "flushed", Mode.REDIS)
        finally:
            if self._redis_ok:
                with contextlib.suppress(Exception), suppress_instrumentation():
                    await r.eval(_DRAIN_RELEASE, 1, self._lock_key, token)

    # -- accounting -------------------------------------------------------------------------------

    def _update_mode(self) -> None:
        if self._pg_ok:
            mode = Mode.POSTGRES
        elif self._redis is not None and self._redis_ok:
            mode = Mode.REDIS
        else:
            mode = Mode.MEMORY
        if mode is self._mode:
            return
        old, self._mode = self._mode, mode
        if mode is Mode.POSTGRES:
            log.warning("call history: mode %s -> postgres (PostgreSQL reachable again; %d in memory%s)",
                        old.value, self.in_memory,
                        ", draining the Redis buffer" if self.redis_backlog else "")
        elif mode is Mode.REDIS:
            log.warning("call history: mode %s -> redis (%s); buffering in Redis (TTL %ds)",
                        old.value, self._last_reason, self.redis_ttl_s)
        else:
            log.warning("call history: mode %s -> memory (%s); holding up to %d records in memory",
                        old.value, self._last_reason or "no Redis configured", self.max_memory_records)

    def _drop(self, n: int, why: str) -> None:
        self.stats.dropped += n
        self._count(n, "dropped", Mode.MEMORY)
        self._overflow_since_log += n
        self._overflow_why = why
        if time.monotonic() - self._overflow_logged_at >= 10.0:
            self._log_overflow()

    def _log_overflow(self) -> None:
        """One line per 10 s of drops (and a final one), with the running total."""
        if self._overflow_since_log:
            log.error("call history: dropped %d record(s): %s (total dropped %d)",
                      self._overflow_since_log, self._overflow_why, self.stats.dropped)
            self._overflow_logged_at = time.monotonic()
            self._overflow_since_log = 0

    def _count(self, n: int, result: str, buffer: Mode) -> None:
        if n <= 0:
            return
        try:
            if self._meter_provider is not None:
                from telemetry.metrics import instruments_for

                instruments_for(self._meter_provider).calllog_records.add(
                    n, {Attr.CALLLOG_RESULT: result, Attr.CALLLOG_BUFFER: buffer.value})
            else:
                from telemetry import metrics as tm

                tm.calllog_records(n, result=result, buffer=buffer.value)
        except Exception:  # metrics must never break the writer
            log.debug("calllog metric failed", exc_info=True)

