"""Schema, migrations (and the upgrade of a first-release database), partitions, daily_stats, CLI."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time

import asyncpg
import pytest

from telemetry.history import (
    CallLogger,
    ensure_partitions,
    load_migrations,
    migrate,
    recent_calls,
    refresh_daily_stats,
    register_cli,
)
from tests.support import drop_database

pytestmark = pytest.mark.db


def _ts(y: int, m: int, d: int, h: int = 12) -> float:
    return dt.datetime(y, m, d, h, tzinfo=dt.UTC).timestamp()


async def _partition_of(pg, table: str, where: str) -> str:  # type: ignore[no-untyped-def]
    return str(await pg.fetchval(f"SELECT tableoid::regclass::text FROM {table} WHERE {where}"))


def test_migrations_are_numbered_and_packaged() -> None:
    migs = load_migrations()
    assert [m.version for m in migs] == list(range(1, len(migs) + 1))
    assert migs[0].name == "init" and "PARTITION BY RANGE" in migs[0].sql


async def test_migrate_is_idempotent_and_safe_concurrently(session_db, pg) -> None:  # type: ignore[no-untyped-def]
    results = await asyncio.gather(*(migrate(session_db) for _ in range(4)))
    assert all(r == [] for r in results)  # the session fixture already applied everything
    rows = await pg.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in load_migrations()]
    for t in ("calls", "call_turns", "call_tool_calls"):
        assert await pg.fetchval("SELECT relkind FROM pg_class WHERE relname = $1", t) == b"p"
    now = dt.datetime.now(dt.UTC)
    assert await pg.fetchval("SELECT to_regclass($1)", f"calls_{now:%Y_%m}") is not None


async def test_fresh_database_gets_the_whole_schema(base_dsn) -> None:  # type: ignore[no-untyped-def]
    name = f"voxpulse_fresh_{int(time.time() * 1000)}"
    admin = await asyncpg.connect(base_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = base_dsn.rsplit("/", 1)[0] + "/" + name
        assert await migrate(dsn) == [m.version for m in load_migrations()]
        assert await migrate(dsn) == []
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = {r["tablename"] for r in rows}
        finally:
            await conn.close()
        assert {"customers", "daily_stats", "schema_migrations", "alerts_history"} <= tables  # one tree
        assert "console_schema_migrations" not in tables  # no second runner's record
    finally:
        await drop_database(admin, name)
        await admin.close()


async def test_a_database_of_the_first_release_is_upgraded_with_its_data(base_dsn) -> None:  # type: ignore[no-untyped-def]
    """0001 as released (alerts_history in it, the tyre shop's counters as columns), then migrate():
    the counters move into calls.app / daily_stats.app, 0001's edited text is recognised by the
    checksum it replaces (no warning), the alerts_history it finds is adopted, and the console's former
    migration namespace (console_schema_migrations) is folded into the one tree."""
    (first, *_) = load_migrations()
    (released,) = first.replaces
    admin = await asyncpg.connect(base_dsn)
    name = f"voxpulse_upgrade_{int(time.time() * 1000)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = base_dsn.rsplit("/", 1)[0] + "/" + name
        conn = await asyncpg.connect(dsn)
        try:
            # the released schema: 0001 (with the counters' columns) plus the alerts_history it created
            await conn.execute(first.sql)
            await conn.execute(alert_receiver_sql())
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                "  checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            await conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (1, 'init', $1)",
                               released)
            # the console's former namespace, as its receiver left it (its alerts_history is the above)
            await conn.execute(
                "CREATE TABLE console_schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                "  checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            await conn.execute("INSERT INTO console_schema_migrations (version, name, checksum)"
                               " VALUES (1, 'alerts_history', 'x')")
            t = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)
            await conn.execute("SELECT voxpulse_ensure_month_partitions($1::date)", t.date())
            await conn.execute("INSERT INTO calls (call_id, started_at, orders_created) VALUES ('old-1', $1, 2),"
                               " ('old-2', $1, 0)", t)
            await conn.execute("INSERT INTO daily_stats (day, calls, orders, fittings) VALUES ($1, 2, 2, 1)", t.date())
            await conn.execute("INSERT INTO alerts_history (fingerprint, alertname, status, starts_at)"
                               " VALUES ('fp', 'Old', 'firing', $1)", t)

            assert await migrate(dsn) == [m.version for m in load_migrations()][1:]
            apps = {r["call_id"]: json.loads(r["app"]) for r in await conn.fetch("SELECT call_id, app FROM calls")}
            assert apps == {"old-1": {"orders_created": 2}, "old-2": {}}
            assert json.loads(await conn.fetchval("SELECT app FROM daily_stats")) == {
                "orders_created": 2, "fittings_booked": 1}
            assert await conn.fetchval("SELECT checksum FROM schema_migrations WHERE version = 1") == first.checksum
            # the console's migrations applied in the one tree: the table adopted with its rows, the
            # former namespace gone, nothing left to apply
            assert await conn.fetchval("SELECT alertname FROM alerts_history") == "Old"
            assert await conn.fetchval("SELECT to_regclass('console_schema_migrations')") is None
            assert await conn.fetchval("SELECT count(*) FROM pg_trigger WHERE tgname = 'voxpulse_console_live'"
                                       " AND tgrelid IN ('calls'::regclass, 'alerts_history'::regclass)") == 2
            assert await migrate(dsn) == []
        finally:
            await conn.close()
    finally:
        await drop_database(admin, name)
        await admin.close()


def alert_receiver_sql() -> str:
    from telemetry.history import load_migrations as load

    (alerts,) = [m for m in load() if m.name == "alerts_history"]  # the table as 0001's released text made it
    return alerts.sql


async def test_a_call_in_a_new_month_lands_in_a_partition_created_on_demand(history_db, pg, otel) -> None:  # type: ignore[no-untyped-def]
    t = _ts(2031, 7, 15)
    for tbl in ("calls", "call_turns", "call_tool_calls"):
        await pg.execute(f"DROP TABLE IF EXISTS {tbl}_2031_07")
    assert await pg.fetchval("SELECT to_regclass('calls_2031_07')") is None
    async with CallLogger(history_db, flush_interval=0.02, tracer_provider=otel.tracer_provider,
                          meter_provider=otel.meter_provider) as logger:
        logger.log_call_start("future-1", phone="+380501112233", started_at=t)
        logger.log_turn("future-1", 0, "user", "Алло", ts=t + 1)
        logger.log_tool_call("future-1", "find_tyres", {}, None, ts=t + 2)
        logger.log_call_end("future-1", outcome="resolved_by_bot", ended_at=t + 60)
        assert await logger.flush(5)
        assert await _partition_of(pg, "calls", "call_id = 'future-1'") == "calls_2031_07"
        assert await _partition_of(pg, "call_turns", "call_id = 'future-1'") == "call_turns_2031_07"
        assert await _partition_of(pg, "call_tool_calls", "call_id = 'future-1'") == "call_tool_calls_2031_07"
        # a partition dropped behind the writer's back (its cache says it exists): recreated on
        # the "no partition of relation" error, the row retried
        await pg.execute("DROP TABLE call_turns_2031_07")
        logger.log_turn("future-1", 1, "user", "Ще раз", ts=t + 3)
        assert await logger.flush(5)
        assert await _partition_of(pg, "call_turns", "turn_index = 1 AND call_id = 'future-1'") == "call_turns_2031_07"
    assert logger.stats.rejected == 0 and logger.stats.written == 5
    assert (await pg.fetchrow("SELECT duration_seconds FROM calls WHERE call_id = 'future-1'"))[0] == 60.0


async def test_ensure_partitions_accepts_dates_datetimes_and_epochs(history_db, pg) -> None:  # type: ignore[no-untyped-def]
    await ensure_partitions(history_db, [dt.date(2030, 1, 20), dt.datetime(2030, 2, 1, tzinfo=dt.UTC),
                                         _ts(2030, 3, 31, 23)])
    await ensure_partitions(history_db, dt.date(2030, 1, 1))  # again: no error
    for m in ("2030_01", "2030_02", "2030_03"):
        for t in ("calls", "call_turns", "call_tool_calls"):
            assert await pg.fetchval("SELECT to_regclass($1)", f"{t}_{m}") is not None
    # UTC month boundaries
    bound = await pg.fetchval(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'calls_2030_02'")
    assert "2030-02-01 00:00:00+00" in bound and "2030-03-01 00:00:00+00" in bound


async def test_daily_stats_refresh(history_db, pg, otel) -> None:  # type: ignore[no-untyped-def]
    d1, d2 = _ts(2026, 11, 20, 10), _ts(2026, 11, 21, 9)
    async with CallLogger(history_db, flush_interval=0.02, tracer_provider=otel.tracer_provider,
                          meter_provider=otel.meter_provider) as logger:
        specs = [("d-1", d1, "resolved_by_bot", 0.02, 1, 0), ("d-2", d1 + 60, "transferred", 0.04, 0, 1),
                 ("d-3", d1 + 120, "abandoned", None, 0, 0), ("d-4", d2, "failed", 0.01, 0, 0)]
        for cid, t, outcome, cost, orders, fittings in specs:
            logger.log_call_start(cid, phone="+380501112233", started_at=t)
            logger.log_turn(cid, 0, "user", "x", ts=t + 1)
            app = {k: v for k, v in (("orders_created", orders), ("fittings_booked", fittings)) if v}
            logger.log_call_end(cid, outcome=outcome, cost_usd=cost, ended_at=t + 100, app=app or None)
        assert await logger.flush(5)
    n = await refresh_daily_stats(history_db, days=3, today=dt.date(2026, 11, 21))
    assert n == 3
    rows = {r["day"]: r for r in await pg.fetch("SELECT * FROM daily_stats")}
    a = rows[dt.date(2026, 11, 20)]
    assert (a["calls"], a["resolved_by_bot"], a["transferred"], a["abandoned"], a["failed"]) == (3, 1, 1, 1, 0)
    assert float(a["total_cost"]) == pytest.approx(0.06) and float(a["avg_cost"]) == pytest.approx(0.03)
    assert (json.loads(a["app"]), a["avg_duration"], a["turns"]) == (
        {"orders_created": 1, "fittings_booked": 1}, 100.0, 3)
    b = rows[dt.date(2026, 11, 21)]
    assert (b["calls"], b["failed"]) == (1, 1)
    assert rows[dt.date(2026, 11, 19)]["calls"] == 0  # no gaps in the chart
    # refreshing again replaces, never adds
    await refresh_daily_stats(history_db, days=3, today=dt.date(2026, 11, 21))
    assert await pg.fetchval("SELECT calls FROM daily_stats WHERE day = '2026-11-20'") == 3


def test_cli_migrate_stats_calls(history_db, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser(prog="voxpulse")
    register_cli(parser.add_subparsers(dest="command", required=True))
    monkeypatch.setenv("DATABASE_URL", history_db)

    async def seed() -> None:
        async with CallLogger(history_db, flush_interval=0.02) as logger:
            logger.log_call_start("cli-1", phone="+380501234567")
            logger.log_call_end("cli-1", outcome="resolved_by_bot", cost_usd=0.01)
            assert await logger.flush(5)

    asyncio.run(seed())
    for argv, expect in ((["db", "migrate"], "schema up to date"), (["db", "stats", "--days", "2"], "resolved_by_bot"),
                         (["calls", "--limit", "5"], "cli-1")):
        ns = parser.parse_args(argv)
        assert ns.func(ns) == 0
        out = capsys.readouterr().out
        assert expect in out
    assert "+380501234567" not in out  # phone masked on screen
    rows = asyncio.run(recent_calls(history_db, limit=5))
    assert rows[0]["call_id"] == "cli-1" and rows[0]["phone"] == "+380501234567"  # raw in the DB
