"""CallLogger: the agent enqueues, a background task writes; PostgreSQL -> Redis -> memory.

The agent-facing methods (:meth:`CallLogger.log_turn` and friends, :meth:`CallLogger.enqueue`)
only append to an in-memory deque: no awaits, no I/O, a few microseconds. One writer task
(started by :meth:`CallLogger.start`) batches records by size and time and writes them with one
statement per table (``INSERT ... SELECT FROM unnest(...) ON CONFLICT``), so replays never
duplicate.

Degradation (docs/call-history.md, "Degradation modes"):

* ``postgres`` -- normal: batches go to PostgreSQL.
* ``redis``    -- PostgreSQL unreachable: batches go to a Redis list (TTL 1 h, refreshed on every
  push); when PostgreSQL answers again the list is written back in order (under a Redis lock, so
  one process drains at a time), then new records.
* ``memory``   -- PostgreSQL and Redis unreachable: records stay in the bounded in-memory queue
  and are written (or pushed to Redis) when either returns.

Calls never block or fail because of either. Records beyond ``max_memory_records`` are dropped,
counted (``voxpulse.calllog.records{result=dropped,buffer=memory}``) and logged; nothing is lost
silently. One log line per mode change.

This module is the queue, the writer task and the mode machine; the stores are
:mod:`telemetry.history._postgres` and :mod:`telemetry.history._redis_buffer` (each with a
:class:`~telemetry.history._backoff.Backoff`), the counts :mod:`telemetry.history._accounting`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import time
from typing import TYPE_CHECKING, Any, Final

import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from telemetry import _env
from telemetry._errors import internal_error
from telemetry.history._accounting import Accounting, LoggerStats, Mode
from telemetry.history._backoff import failure_reason
from telemetry.history._postgres import PostgresWriter
from telemetry.history._redis_buffer import RedisBuffer
from telemetry.history.records import CallEnded, CallStarted, Record, ToolCallRecord, TurnRecord
from telemetry.history.rows import Row, prepare
from telemetry.history.sanitize import RejectedRecord
from telemetry.redaction import redact
from telemetry.semconv import SpanName

if TYPE_CHECKING:
    from collections.abc import Mapping

    from telemetry.calls import CallScope

__all__ = ["CallLogger", "LoggerStats", "Mode"]

log = logging.getLogger("telemetry.history")

SPAN_WRITE: Final = SpanName.CALLLOG_WRITE  # a batch written to PostgreSQL (telemetry.semconv)
SPAN_BUFFER_PUSH: Final = SpanName.CALLLOG_BUFFER_PUSH  # a batch pushed to the Redis buffer


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
        self._redis_url = redis_url
        self._own_redis = redis is None
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_memory_records = max_memory_records
        self.redis_key = redis_key
        self.redis_ttl_s = redis_ttl_s
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._retry_max_s = retry_max_s
        self.agent_version = agent_version
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("telemetry.history")
        self._acc = Accounting(meter_provider)
        self.stats: LoggerStats = self._acc.stats
        self._pg = PostgresWriter(
            dsn, pool, pool_max_size=pool_max_size, connect_timeout=connect_timeout,
            command_timeout=command_timeout, auto_migrate=auto_migrate, retry_max_s=retry_max_s,
            tracer=self._tracer, accounting=self._acc, on_down=self._pg_down,
        )
        self._redis: RedisBuffer | None = self._redis_buffer(redis) if redis is not None else None

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

        self._mode = Mode.POSTGRES
        self._last_reason = ""
        self._overflow_logged_at = -1e9
        self._overflow_since_log = 0
        self._overflow_why = ""

    # -- construction helpers -----------------------------------------------------------------

    @classmethod
    def from_env(cls, **kwargs: Any) -> CallLogger:
        """DSN from ``VOXPULSE_DATABASE_URL`` or ``DATABASE_URL``, Redis from ``VOXPULSE_REDIS_URL``
        or ``REDIS_URL`` (optional); see docs/configuration.md."""
        dsn = _env.text(_env.DATABASE_URL)
        if not dsn:
            raise RuntimeError("set DATABASE_URL (or VOXPULSE_DATABASE_URL) for the call history")
        return cls(dsn, redis_url=_env.text(_env.REDIS_URL), **kwargs)

    def _redis_buffer(self, client: aioredis.Redis) -> RedisBuffer:
        return RedisBuffer(
            client, key=self.redis_key, ttl_s=self.redis_ttl_s, batch_size=self.batch_size,
            connect_timeout=self._connect_timeout, command_timeout=self._command_timeout,
            retry_max_s=self._retry_max_s, tracer=self._tracer, accounting=self._acc, on_down=self._redis_down,
        )

    def _pg_down(self, exc: BaseException) -> None:
        self._last_reason = f"PostgreSQL unreachable ({failure_reason(exc)})"

    def _redis_down(self, exc: BaseException) -> None:
        if not self._pg.ok:
            self._last_reason = f"{self._last_reason}; Redis unreachable ({failure_reason(exc)})"

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
        return self._redis is not None and self._redis.backlog

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
        room_sid: str | None = None,
    ) -> bool:
        """A call began. Trace ids default to the current span's (call it inside the call scope).
        ``room_sid``: the LiveKit room's id, when ``call_id`` is another (a SIP call id).

        The room name is stored masked: LiveKit's SIP dispatch names rooms after the caller's
        number, which belongs in ``phone`` only."""
        if room:
            room = redact(room)
        if trace_id is None:
            trace_id, cur_span = _current_ids()
            span_id = span_id or cur_span
        rec = CallStarted(
            call_id, time.time() if started_at is None else started_at, phone, caller_name, direction,
            room, agent_version or self.agent_version, scenario, trace_id, span_id, room_sid,
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
        app: Mapping[str, Any] | None = None,
        ended_at: float | None = None,
        started_at: float | None = None,
        duration_seconds: float | None = None,
    ) -> bool:
        """A call ended. ``status`` defaults from ``outcome`` (transferred -> transferred,
        failed -> failed, else completed); identity fields come from the call's start. ``app``:
        the application's own data for the call (JSON values), merged into ``calls.app``."""
        start = self._calls.pop(call_id, None)
        if status is None:
            status = {"transferred": "transferred", "failed": "failed"}.get(outcome or "", "completed")
        rec = CallEnded(
            call_id,
            time.time() if ended_at is None else ended_at,
            started_at if started_at is not None else (start.started_at if start else None),
            status, outcome, scenario, transfer_reason, cost_usd, duration_seconds, turns, app,
            start.phone if start else None, start.caller_name if start else None,
            start.direction if start else None, start.room if start else None,
            start.agent_version if start else self.agent_version,
            start.trace_id if start else None, start.span_id if start else None,
        )
        return self.enqueue(rec)

    def bind_call(self, scope: CallScope) -> None:
        """Log a ``telemetry.call()`` scope: its start now, its end (outcome, cost, turns, its
        ``app`` data) from ``scope.on_end``."""
        ctx = scope.span.get_span_context()
        self.log_call_start(
            scope.call_id, phone=scope.caller, direction=scope.direction, room=scope.room,
            scenario=scope.scenario, started_at=scope.started_at or None, trace_id=scope.trace_id or None,
            span_id=format(ctx.span_id, "016x") if ctx.is_valid else None, room_sid=scope.room_sid,
        )
        scope.on_end(self._on_scope_end)

    def _on_scope_end(self, scope: CallScope) -> None:
        self.log_call_end(
            scope.call_id, outcome=scope.outcome.value if scope.outcome is not None else None,
            scenario=scope.scenario, transfer_reason=scope.transfer_reason, cost_usd=scope.cost_usd,
            turns=scope.turns, app=dict(scope.app) or None,
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

            self._redis = self._redis_buffer(aioredis.Redis.from_url(
                self._redis_url, socket_connect_timeout=self._connect_timeout,
                socket_timeout=self._command_timeout, retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            ))
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
        while self._pending or self._staged or self._busy or not self._pg.ok or self.redis_backlog:
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
            self._acc.count(left, "dropped", Mode.MEMORY)
            self.stats.dropped += left
            log.error(
                "call history: %d records could not be written or buffered within %.1fs of shutdown "
                "(mode %s) and are lost", left, timeout, self._mode.value,
            )
        await self._pg.close()
        if self._own_redis and self._redis is not None:
            await self._redis.close()

    # -- writer ------------------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._closing:
                delay = self.flush_interval
                if not self._pg.ok:
                    delay = min(delay, max(0.0, self._pg.state.retry_at - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                self._wake.clear()
            self._busy = True
            try:
                await self._cycle()
            except Exception as exc:  # a bug: the writer never dies (records stay in memory); tests see it
                internal_error("history.writer", exc)
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
        pg, buffer = self._pg, self._redis
        if pg.state.due(now, closing=self._closing):
            await pg.probe()
        if buffer is not None and buffer.state.due(now, closing=self._closing):
            await buffer.probe()
        self._update_mode()
        if pg.ok:
            if buffer is not None and buffer.ok and buffer.backlog and not self._closing:
                await buffer.drain(lambda rows: self._write_pg(rows, source="redis"), lambda: pg.ok)
            while pg.ok and (self._staged or self._pending):
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
        if not pg.ok and buffer is not None and buffer.ok:
            while buffer.ok and (self._staged or self._pending):
                self._stage(self.batch_size)
                if not self._staged:
                    continue
                batch = self._staged[: self.batch_size]
                if not await buffer.push(batch):
                    self._update_mode()
                    break
                del self._staged[: len(batch)]
                self.stats.buffered_redis += len(batch)
                self._acc.count(len(batch), "buffered", Mode.REDIS)
                self._left_memory(len(batch))
        self._update_mode()
        if self._overflow_since_log and time.monotonic() - self._overflow_logged_at >= 10.0:
            self._log_overflow()
        if self._mode is Mode.MEMORY:
            held = len(self._staged) + len(self._pending)
            if held > self._held:
                self.stats.buffered_memory += held - self._held
                self._acc.count(held - self._held, "buffered", Mode.MEMORY)
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
            except Exception as exc:  # a hostile object (a __str__ that raises...): reject, never crash
                rejected += 1
                log.warning("call history: rejected %s record: %s", type(rec).__name__, failure_reason(exc))
        if rejected:
            self.stats.rejected += rejected
            self._acc.count(rejected, "rejected", Mode.POSTGRES)
            self._left_memory(rejected)

    def _left_memory(self, n: int) -> None:
        moved = min(n, self._held)
        if moved:
            self._held -= moved
            self.stats.flushed_memory += moved
            self._acc.count(moved, "flushed", Mode.MEMORY)

    # -- stores ----------------------------------------------------------------------------------

    async def _write_pg(self, rows: list[Row], *, source: str) -> bool:
        """Rows to PostgreSQL; when it turned out unavailable, the mode follows at once."""
        if await self._pg.write(rows, source=source):
            return True
        self._update_mode()
        return False

    # -- accounting -------------------------------------------------------------------------------

    def _update_mode(self) -> None:
        if self._pg.ok:
            mode = Mode.POSTGRES
        elif self._redis is not None and self._redis.ok:
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
        self._acc.count(n, "dropped", Mode.MEMORY)
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
