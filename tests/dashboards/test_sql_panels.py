"""Every SQL panel query of the dashboards runs on the REAL PostgreSQL (migrated call-history schema)
and returns rows, with Grafana's macros and variables expanded as Grafana would (grafana/queries.py).
"""

from __future__ import annotations

import datetime as dt
import json
from types import ModuleType

import asyncpg
import pytest

pytestmark = pytest.mark.db



async def seed(conn: asyncpg.Connection, NOW: dt.datetime) -> str:
    await conn.execute("TRUNCATE calls, call_turns, call_tool_calls, customers, alerts_history, daily_stats "
                       "RESTART IDENTITY CASCADE")
    outcomes = ["resolved_by_bot", "transferred", "resolved_by_bot", "abandoned"]
    for i in range(8):
        started = NOW - dt.timedelta(minutes=50 - i * 5)
        active = i == 7
        await conn.execute(
            """INSERT INTO calls (call_id, started_at, trace_id, phone, direction, status, scenario, outcome,
                                  transfer_reason, ended_at, duration_seconds, cost_usd, turns, app, room,
                                  agent_version)
               VALUES ($1, $2, $3, $4, 'inbound', $5, $6, $7, $8, $9, $10, $11, 3,
                       jsonb_build_object('orders_created', $12::int, 'fittings_booked', $13::int), $1, '1.0')""",
            f"call-{i}", started, f"{i:032x}", f"+38050000000{i}", "active" if active else "completed",
            ["order", "fitting", "order_status"][i % 3], None if active else outcomes[i % 4],
            "no_stock" if outcomes[i % 4] == "transferred" else None,
            None if active else started + dt.timedelta(seconds=90), None if active else 90.0,
            None if active else 0.05 + i / 100, i % 2, (i + 1) % 2)
        for turn in range(3):
            ts = started + dt.timedelta(seconds=10 * turn)
            await conn.execute(
                """INSERT INTO call_turns (call_id, turn_index, speaker, ts, text, stt_ms, llm_ms, tts_ms, ttfw_ms)
                   VALUES ($1, $2, 'user', $3, 'Добрий день', 120, NULL, NULL, NULL),
                          ($1, $2, 'agent', $3 + interval '2 seconds', 'Вітаю!', NULL, 600, 200, $4)""",
                f"call-{i}", turn, ts, 800.0 + 300 * i + turn)
        await conn.execute(
            """INSERT INTO call_tool_calls (call_id, ts, seq, turn_index, name, args, result, success, duration_ms)
               VALUES ($1, $2, $3, 1, 'search_tyres', $4::jsonb, $5::jsonb, true, 240)""",
            f"call-{i}", started + dt.timedelta(seconds=11), i, json.dumps({"size": "205/55 R16"}),
            json.dumps({"found": 3}))
    await conn.execute(
        """INSERT INTO alerts_history (fingerprint, alertname, severity, service, status, summary, starts_at)
           VALUES ('f1', 'VoiceStageErrors', 'critical', 'voice-agent', 'firing', 'errors', $1)""",
        NOW - dt.timedelta(minutes=5))
    return "call-6"


async def test_every_sql_panel_returns_rows(migrated_db: str, queries: ModuleType) -> None:
    NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
    conn = await asyncpg.connect(migrated_db)
    try:
        call_id = await seed(conn, NOW)
        # both trace-store sets carry the same SQL: run each distinct query once
        every = [q for q in queries.panel_queries() if q.language == "sql"]
        sql = list({(q.dashboard, q.panel, q.query): q for q in every}.values())
        assert len(sql) >= 15 and len(every) == 2 * len(sql)
        for period in ("day", "week", "month"):
            for q in sql:
                text = queries.expand(q, variables={"call_id": call_id, "period": period},
                                      start=NOW - dt.timedelta(hours=6), end=NOW + dt.timedelta(minutes=1))
                assert "$" not in text, (q.panel, text)
                rows = await conn.fetch(text)
                assert rows, f"{q.dashboard} / {q.panel}: no rows\n{text}"
                if q.panel_type in ("stat", "gauge"):
                    assert all(v is not None for v in rows[0].values()), (q.panel, dict(rows[0]))
                if q.format == "time_series":
                    assert "time" in list(rows[0].keys()), q.panel
        # The call-explorer tables really filter by the selected call.
        by_panel = {q.panel: q for q in sql}
        transcript = await conn.fetch(queries.expand(by_panel["Transcript"], variables={"call_id": call_id}))
        assert len(transcript) == 6
        tools = await conn.fetch(queries.expand(by_panel["Tool calls"], variables={"call_id": call_id}))
        assert [r["name"] for r in tools] == ["search_tyres"]
        recent = await conn.fetch(queries.expand(by_panel["Recent calls"], variables={"call_id": call_id},
                                                 start=NOW - dt.timedelta(hours=6), end=NOW))
        assert [r["call_id"] for r in recent] == [call_id]
        slow = await conn.fetch(queries.expand(by_panel["Slow calls"], start=NOW - dt.timedelta(hours=6), end=NOW))
        assert slow[0]["call_id"] == "call-7" and slow[0]["trace_id"] == f"{7:032x}"
        # A quote in the call_id box cannot break out of the literal (${call_id:sqlstring}).
        evil = queries.expand(by_panel["Transcript"], variables={"call_id": "x' OR '1'='1"})
        assert await conn.fetch(evil) == []
    finally:
        await conn.close()
