"""The call history's PostgreSQL writer: a pool, probes with back-off, migration on first contact,
partitions created on demand, and batches written with bisection around rows PostgreSQL refuses."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

import asyncpg
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import Tracer

from telemetry.history._accounting import Accounting, Mode
from telemetry.history._backoff import Backoff, failure_reason
from telemetry.history.rows import Row, batch_links, row_ts, write_rows
from telemetry.history.schema import ensure_partitions, migrate, month_of
from telemetry.semconv import Attr, SpanName, error_type

__all__ = ["PostgresWriter", "unavailable"]

log = logging.getLogger("telemetry.history")

_ROW_KINDS: Final = {"s": "call start", "e": "call end", "t": "turn", "c": "tool call"}


def unavailable(exc: BaseException) -> bool:
    """PostgreSQL cannot take writes now (as opposed to refusing one row). InternalClientError is a
    connection left mid-operation by a server that went away ("cannot switch to state ...; another
    operation is in progress"): an outage too, the probe gets a fresh connection."""
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | asyncpg.exceptions.PostgresConnectionError
        | asyncpg.exceptions.OperatorInterventionError
        | asyncpg.exceptions.InsufficientResourcesError
        | asyncpg.exceptions.UndefinedTableError
        | asyncpg.exceptions.UndefinedFunctionError
        | asyncpg.exceptions.InvalidAuthorizationSpecificationError
        | asyncpg.exceptions.InvalidCatalogNameError
        | asyncpg.exceptions.ReadOnlySQLTransactionError,
    )


class PostgresWriter:
    """Writes prepared rows to PostgreSQL. ``on_down(exc)`` is told why it became unreachable."""

    def __init__(
        self,
        dsn: str | None,
        pool: Any,
        *,
        pool_max_size: int,
        connect_timeout: float,
        command_timeout: float,
        auto_migrate: bool,
        retry_max_s: float,
        tracer: Tracer,
        accounting: Accounting,
        on_down: Callable[[BaseException], None],
    ) -> None:
        self._dsn = dsn
        self.pool: Any = pool
        self._own_pool = pool is None
        self._pool_max_size = pool_max_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._auto_migrate = auto_migrate
        self._migrated = not auto_migrate
        self._known_months: set[dt.date] = set()
        self._hot = (0.0, 0.0, dt.date(1970, 1, 1))  # [lo, hi) epoch seconds of the month seen last
        self._tracer = tracer
        self._acc = accounting
        self._on_down = on_down
        self.state = Backoff(retry_max_s)

    @property
    def ok(self) -> bool:
        return self.state.ok

    async def probe(self) -> None:
        """Connects (and migrates, the first time) if it can; marks the writer up or down."""
        try:
            with suppress_instrumentation():
                if self.pool is None:
                    self.pool = await asyncpg.create_pool(
                        self._dsn, min_size=0, max_size=self._pool_max_size, timeout=self._connect_timeout,
                        command_timeout=self._command_timeout,
                    )
                async with asyncio.timeout(self._connect_timeout * 2):
                    async with self.pool.acquire() as conn:
                        await conn.fetchval("SELECT 1")
                        if not self._migrated:
                            await migrate(conn)
                            self._migrated = True
        except Exception as exc:  # unreachable, refused, timed out: retried after the back-off
            self._down(exc)
            return
        self.state.up()

    def _down(self, exc: BaseException) -> None:
        self.state.down()
        if isinstance(exc, asyncpg.exceptions.UndefinedTableError | asyncpg.exceptions.UndefinedFunctionError):
            self._migrated = not self._auto_migrate  # the schema went away: migrate again
            self._known_months.clear()
        self._on_down(exc)

    async def write(self, rows: list[Row], *, source: str) -> bool:
        """Writes rows (bisecting around rows PostgreSQL refuses) in a ``voxpulse.calllog.write``
        span linked to their calls. False: PostgreSQL unavailable (the rows were not written)."""
        links, ncalls = batch_links(rows)
        with self._tracer.start_as_current_span(
            SpanName.CALLLOG_WRITE, links=links,
            attributes={Attr.CALLLOG_BATCH_RECORDS: len(rows), Attr.CALLLOG_BATCH_CALLS: ncalls,
                        Attr.CALLLOG_BATCH_SOURCE: source, Attr.CALLLOG_BUFFER: Mode.POSTGRES.value},
        ) as span:
            try:
                written = await self._write_bisect(rows)
            except Exception as exc:
                if not unavailable(exc):
                    raise
                span.set_attribute(Attr.ERROR_TYPE, error_type(exc))
                self._down(exc)
                return False
        self._acc.stats.written += written
        self._acc.count(written, "written", Mode.POSTGRES)
        return True

    async def _write_bisect(self, rows: list[Row]) -> int:
        try:
            await self._write_once(rows)
            return len(rows)
        except Exception as exc:
            if unavailable(exc) or not isinstance(exc, asyncpg.PostgresError | ValueError | TypeError):
                raise
            if len(rows) == 1:
                self._acc.stats.rejected += 1
                self._acc.count(1, "rejected", Mode.POSTGRES)
                log.warning("call history: PostgreSQL refused a %s row of call %r: %s",
                            _ROW_KINDS.get(rows[0][0]), rows[0][1], failure_reason(exc))
                return 0
            mid = len(rows) // 2
            return await self._write_bisect(rows[:mid]) + await self._write_bisect(rows[mid:])

    def _months(self, rows: Sequence[Row]) -> set[dt.date]:
        """UTC months of the rows' partition keys: a range check per row, month_of() only when a
        row falls outside the month seen last (or within its last microsecond, which the stored
        value may round up into the next month)."""
        lo, hi, cur = self._hot
        out: set[dt.date] = set()
        for r in rows:
            t = row_ts(r)
            if t is None:
                continue
            if not lo <= t < hi - 1e-6:
                cur = month_of(t)
                nxt = dt.date(cur.year + cur.month // 12, cur.month % 12 + 1, 1)
                lo = dt.datetime(cur.year, cur.month, 1, tzinfo=dt.UTC).timestamp()
                hi = dt.datetime(nxt.year, nxt.month, 1, tzinfo=dt.UTC).timestamp()
            out.add(cur)
        self._hot = (lo, hi, cur)
        return out

    async def _write_once(self, rows: list[Row]) -> None:
        pool = self.pool
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

    async def close(self) -> None:
        """Closes the pool if the writer made it (a pool given by the caller stays open)."""
        if self._own_pool and self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 2.0)
            with contextlib.suppress(Exception):
                self.pool.terminate()
