"""The call history's outage buffer: a Redis list of prepared rows (TTL refreshed on every push),
written back to PostgreSQL oldest first under a drain lock, so one process drains at a time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

import redis.asyncio as aioredis
import redis.exceptions as redis_exc
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import Tracer

from telemetry.history._accounting import Accounting, Mode
from telemetry.history._backoff import Backoff
from telemetry.history.rows import Row, batch_links, upgrade_row, valid_row
from telemetry.semconv import Attr, SpanName, error_type

__all__ = ["RedisBuffer"]

log = logging.getLogger("telemetry.history")

_ERRORS: Final = (redis_exc.RedisError, OSError, TimeoutError)
_LOCK_TTL_MS: Final = 30_000
_DRAIN_RELEASE: Final = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
)


class RedisBuffer:
    """Pushes rows while PostgreSQL is down, drains them back when it returns.
    ``on_down(exc)`` is told why Redis became unreachable."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key: str,
        ttl_s: int,
        batch_size: int,
        connect_timeout: float,
        command_timeout: float,
        retry_max_s: float,
        tracer: Tracer,
        accounting: Accounting,
        on_down: Callable[[BaseException], None],
    ) -> None:
        self.client = client
        self.key = key
        self._lock_key = f"{key}:drain-lock"
        self.ttl_s = ttl_s
        self._batch_size = batch_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._tracer = tracer
        self._acc = accounting
        self._on_down = on_down
        self.state = Backoff(retry_max_s)
        self.backlog = True  # the list may hold rows not yet written (unknown at start: check once)

    @property
    def ok(self) -> bool:
        return self.state.ok

    def _down(self, exc: BaseException) -> None:
        self.state.down()
        self._on_down(exc)

    async def probe(self) -> None:
        try:
            with suppress_instrumentation():
                async with asyncio.timeout(self._connect_timeout * 2):
                    await self.client.ping()
        except Exception as exc:  # unreachable, refused, timed out: retried after the back-off
            self._down(exc)
            return
        self.state.up()

    async def push(self, rows: list[Row]) -> bool:
        """Appends rows to the list in a ``voxpulse.calllog.buffer_push`` span linked to their calls.
        False: Redis unavailable (nothing was pushed)."""
        payload = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows]
        links, ncalls = batch_links(rows)
        with self._tracer.start_as_current_span(
            SpanName.CALLLOG_BUFFER_PUSH, links=links,
            attributes={Attr.CALLLOG_BATCH_RECORDS: len(rows), Attr.CALLLOG_BATCH_CALLS: ncalls,
                        Attr.CALLLOG_BATCH_SOURCE: "memory", Attr.CALLLOG_BUFFER: Mode.REDIS.value},
        ) as span:
            try:
                async with asyncio.timeout(self._command_timeout):
                    async with self.client.pipeline(transaction=True) as pipe:
                        pipe.rpush(self.key, *payload)
                        pipe.expire(self.key, self.ttl_s)
                        await pipe.execute()
            except _ERRORS as exc:
                span.set_attribute(Attr.ERROR_TYPE, error_type(exc))
                self._down(exc)
                return False
        self.backlog = True
        return True

    async def drain(self, write: Callable[[list[Row]], Awaitable[bool]], pg_ok: Callable[[], bool]) -> None:
        """Writes the list to PostgreSQL with ``write``, oldest first, a batch at a time, while
        PostgreSQL (``pg_ok``) and Redis stay up; each batch is trimmed only once written (a crash
        in between replays it: harmless, writes are idempotent)."""
        r = self.client
        token = uuid.uuid4().hex
        try:
            with suppress_instrumentation():
                if not await r.set(self._lock_key, token, nx=True, px=_LOCK_TTL_MS):
                    return  # another process drains it
        except _ERRORS as exc:
            self._down(exc)
            return
        try:
            while pg_ok() and self.ok:
                try:
                    # the buffer's own polling is no call's work: traced, it made one root span per
                    # poll with neither a call_id nor a link (an orphan exemplar); the batch it feeds
                    # is traced as voxpulse.calllog.write, linked to its calls
                    with suppress_instrumentation():
                        raw = await r.lrange(self.key, 0, self._batch_size - 1)
                except _ERRORS as exc:
                    self._down(exc)
                    return
                if not raw:
                    self.backlog = False
                    return
                rows = self._parse(raw)
                if rows and not await write(rows):
                    return
                try:
                    with suppress_instrumentation():
                        await r.ltrim(self.key, len(raw), -1)
                        await r.pexpire(self._lock_key, _LOCK_TTL_MS)
                except _ERRORS as exc:
                    # written but not trimmed: the next drain replays them (idempotent)
                    self._down(exc)
                    return
                self._acc.stats.flushed_redis += len(rows)
                self._acc.count(len(rows), "flushed", Mode.REDIS)
        finally:
            if self.ok:
                with contextlib.suppress(Exception), suppress_instrumentation():
                    await r.eval(_DRAIN_RELEASE, 1, self._lock_key, token)

    def _parse(self, raw: list[bytes | str]) -> list[Row]:
        rows: list[Row] = []
        for item in raw:
            try:
                row = upgrade_row(json.loads(item))
            except ValueError:
                row = None
            if valid_row(row):
                rows.append(row)  # type: ignore[arg-type]
            else:
                self._acc.stats.rejected += 1
                self._acc.count(1, "rejected", Mode.REDIS)
                log.warning("call history: unreadable record in the Redis buffer skipped")
        return rows

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()
