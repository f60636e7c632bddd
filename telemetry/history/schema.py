"""Schema management: versioned migrations, monthly partitions, daily_stats refresh.

Migrations are ``NNNN_name.sql`` files in a package's ``migrations`` folder, applied in order and
recorded in a table of their own (checksum included) under an advisory lock. VoxPulse's database has
one tree, ``telemetry/history/migrations`` (recorded in ``schema_migrations``): the call history's
tables and the operator console's (``alerts_history``, the live feed's triggers), applied by
:func:`migrate`, the one runner every caller uses (the writer, the alerts receiver, the web console,
``voxpulse db migrate``). :func:`apply_migrations` runs an application's own tree in a namespace of
its own.
A file edited after release may name the checksums it replaces (``-- replaces checksum: <hex>``):
databases that applied such a text are updated silently instead of warned about.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import asyncpg

from telemetry.history.records import to_datetime

__all__ = [
    "Migration",
    "apply_migrations",
    "connection",
    "ensure_partitions",
    "load_migrations",
    "migrate",
    "month_of",
    "recent_calls",
    "refresh_daily_stats",
]

log = logging.getLogger("telemetry.history")

_LOCK_KEY: Final = 0x566F7850  # "VoxP": pg_advisory_lock key of migrate()
_NAME_RE: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_REPLACES_RE: Final = re.compile(r"^-- replaces checksum: ([0-9a-f]{16})\s*$", re.MULTILINE)
_TABLE_RE: Final = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    @property
    def replaces(self) -> frozenset[str]:
        """Checksums of earlier texts of this migration (``-- replaces checksum: <hex>`` lines)."""
        return frozenset(_REPLACES_RE.findall(self.sql))


def load_migrations(package: str = "telemetry.history") -> list[Migration]:
    """A package's ``migrations/NNNN_name.sql`` files, in version order."""
    out: list[Migration] = []
    for entry in resources.files(package).joinpath("migrations").iterdir():
        m = _NAME_RE.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda x: x.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return out


@contextlib.asynccontextmanager
async def connection(dsn_or_pool: Any) -> AsyncIterator[Any]:
    """One connection from a DSN (opened and closed here), a Pool (acquired) or a Connection."""
    if isinstance(dsn_or_pool, str):
        conn = await asyncpg.connect(dsn_or_pool)
        try:
            yield conn
        finally:
            await conn.close()
    elif isinstance(dsn_or_pool, asyncpg.Pool):
        async with dsn_or_pool.acquire() as conn:
            yield conn
    else:
        yield dsn_or_pool


def month_of(ts: float | dt.datetime | dt.date) -> dt.date:
    """First day of the UTC month of an epoch-seconds timestamp, datetime or date."""
    if isinstance(ts, dt.datetime):
        d = ts.astimezone(dt.UTC) if ts.tzinfo else ts
        return dt.date(d.year, d.month, 1)
    if isinstance(ts, dt.date):
        return dt.date(ts.year, ts.month, 1)
    d = to_datetime(ts)  # the conversion the writer stores: a row lands in the month computed here
    return dt.date(d.year, d.month, 1)


def _add_months(d: dt.date, n: int) -> dt.date:
    y, m = divmod(d.month - 1 + n, 12)
    return dt.date(d.year + y, m + 1, 1)


async def apply_migrations(
    dsn_or_pool: Any, package: str, *, table: str, lock_key: int | None = None
) -> list[int]:
    """Apply ``package``'s pending migrations, recorded in ``table`` (idempotent, safe to run
    concurrently: an advisory lock, by default keyed on the table name). Returns the versions
    applied by this call (empty when the schema was up to date)."""
    if not _TABLE_RE.match(table):
        raise ValueError(f"not a plain table name: {table!r}")
    applied_now: list[int] = []
    async with connection(dsn_or_pool) as conn:
        key = lock_key if lock_key is not None else await conn.fetchval("SELECT hashtext($1)", table)
        await conn.execute("SELECT pg_advisory_lock($1)", key)
        try:
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {table} (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            rows = await conn.fetch(f"SELECT version, checksum FROM {table}")
            done = {r["version"]: r["checksum"] for r in rows}
            for mig in load_migrations(package):
                if mig.version in done:
                    if done[mig.version] in mig.replaces:
                        await conn.execute(f"UPDATE {table} SET checksum = $2 WHERE version = $1",
                                           mig.version, mig.checksum)
                    elif done[mig.version] != mig.checksum:
                        log.warning(
                            "migration %04d_%s changed after it was applied (checksum %s, applied %s)",
                            mig.version, mig.name, mig.checksum, done[mig.version],
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(mig.sql)
                    await conn.execute(
                        f"INSERT INTO {table} (version, name, checksum) VALUES ($1, $2, $3)",
                        mig.version, mig.name, mig.checksum,
                    )
                applied_now.append(mig.version)
                log.info("applied migration %s %04d_%s", package, mig.version, mig.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
    return applied_now


async def migrate(dsn_or_pool: Any, *, months_ahead: int = 2) -> list[int]:
    """Apply the call history's pending migrations (idempotent, safe to run concurrently: advisory
    lock), then make sure partitions exist for the current month and ``months_ahead`` months after it.

    Returns the versions applied by this call (empty when the schema was up to date).
    """
    async with connection(dsn_or_pool) as conn:
        applied_now = await apply_migrations(conn, "telemetry.history", table="schema_migrations",
                                             lock_key=_LOCK_KEY)
        this_month = month_of(dt.datetime.now(dt.UTC))
        await ensure_partitions(conn, [_add_months(this_month, i) for i in range(months_ahead + 1)])
    return applied_now


async def ensure_partitions(dsn_or_pool: Any, for_month: dt.date | float | Iterable[Any]) -> None:
    """Create the monthly partitions of calls, call_turns and call_tool_calls for a month (or
    months: dates, datetimes or epoch seconds). Idempotent and concurrency-safe."""
    items = [for_month] if isinstance(for_month, dt.date | float | int) else list(for_month)
    months = sorted({month_of(x) for x in items})
    async with connection(dsn_or_pool) as conn:
        for m in months:
            await conn.execute("SELECT voxpulse_ensure_month_partitions($1::date)", m)


_DAILY_SQL: Final = """
WITH c AS (
    SELECT (started_at AT TIME ZONE 'UTC')::date AS day, *
      FROM calls
     WHERE started_at >= $1 AND started_at < $2
), t AS (
    SELECT (ts AT TIME ZONE 'UTC')::date AS day, count(*) AS n
      FROM call_turns WHERE ts >= $1 AND ts < $2 GROUP BY 1
), k AS (
    SELECT (ts AT TIME ZONE 'UTC')::date AS day, count(*) AS n
      FROM call_tool_calls WHERE ts >= $1 AND ts < $2 GROUP BY 1
), a AS (  -- per day, the sum of each numeric key of the calls' app objects
    SELECT day, jsonb_object_agg(key, total) AS app
      FROM (SELECT c.day, e.key, sum(e.value::text::numeric) AS total
              FROM c, jsonb_each(c.app) AS e
             WHERE jsonb_typeof(e.value) = 'number'
             GROUP BY 1, 2) AS sums
     GROUP BY day
), days AS (
    SELECT d::date AS day FROM generate_series($3::date, $4::date, interval '1 day') AS d
)
INSERT INTO daily_stats AS s (day, calls, resolved_by_bot, transferred, abandoned, failed,
                             avg_cost, total_cost, app, avg_duration, turns, tool_calls, refreshed_at)
SELECT days.day,
       count(c.call_id),
       count(*) FILTER (WHERE c.outcome = 'resolved_by_bot'),
       count(*) FILTER (WHERE c.outcome = 'transferred' OR c.status = 'transferred'),
       count(*) FILTER (WHERE c.outcome = 'abandoned'),
       count(*) FILTER (WHERE c.outcome = 'failed' OR c.status = 'failed'),
       avg(c.cost_usd),
       coalesce(sum(c.cost_usd), 0),
       coalesce(a.app, '{}'::jsonb),
       avg(c.duration_seconds),
       coalesce(max(t.n), 0),
       coalesce(max(k.n), 0),
       now()
  FROM days
  LEFT JOIN c ON c.day = days.day
  LEFT JOIN t ON t.day = days.day
  LEFT JOIN k ON k.day = days.day
  LEFT JOIN a ON a.day = days.day
 GROUP BY days.day, a.app
ON CONFLICT (day) DO UPDATE SET
    calls = EXCLUDED.calls, resolved_by_bot = EXCLUDED.resolved_by_bot,
    transferred = EXCLUDED.transferred, abandoned = EXCLUDED.abandoned, failed = EXCLUDED.failed,
    avg_cost = EXCLUDED.avg_cost, total_cost = EXCLUDED.total_cost, app = EXCLUDED.app,
    avg_duration = EXCLUDED.avg_duration, turns = EXCLUDED.turns,
    tool_calls = EXCLUDED.tool_calls, refreshed_at = EXCLUDED.refreshed_at
"""


async def refresh_daily_stats(
    dsn_or_pool: Any, *, days: int = 7, today: dt.date | None = None
) -> int:
    """Recompute ``daily_stats`` for the last ``days`` UTC days (today included). Returns the
    number of day rows written (days without calls get zero rows, so charts have no gaps)."""
    if days < 1:
        raise ValueError("days must be >= 1")
    last = today or dt.datetime.now(dt.UTC).date()
    first = last - dt.timedelta(days=days - 1)
    lo = dt.datetime(first.year, first.month, first.day, tzinfo=dt.UTC)
    hi = dt.datetime(last.year, last.month, last.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
    async with connection(dsn_or_pool) as conn:
        status = await conn.execute(_DAILY_SQL, lo, hi, first, last)
    return int(status.split()[-1])


async def recent_calls(dsn_or_pool: Any, *, limit: int = 20) -> list[dict[str, Any]]:
    """The latest calls (newest first) with their turn and tool-call counts."""
    async with connection(dsn_or_pool) as conn:
        rows = await conn.fetch(
            """SELECT c.call_id, c.started_at, c.ended_at, c.phone, c.direction, c.status,
                      c.scenario, c.outcome, c.transfer_reason, c.duration_seconds, c.cost_usd,
                      c.trace_id,
                      (SELECT count(*) FROM call_turns t WHERE t.call_id = c.call_id) AS turns,
                      (SELECT count(*) FROM call_tool_calls k WHERE k.call_id = c.call_id) AS tool_calls
                 FROM calls c ORDER BY c.started_at DESC LIMIT $1""",
            limit,
        )
    return [dict(r) for r in rows]
