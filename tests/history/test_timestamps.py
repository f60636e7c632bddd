"""One instant, stored one way: every epoch-seconds timestamp reaches PostgreSQL through
``telemetry.history.to_datetime`` (never PostgreSQL's ``to_timestamp(float8)``).

The flake this pins: ``customers.first_call_at`` (set by a trigger from the inserted call row) once
came back 1 µs off the value computed in Python from the same float. ``to_timestamp`` rounds
``(ts - 2000-01-01) * 1e6`` while Python rounds the float's fraction; for floats whose microsecond
part is .5 after binary rounding the two disagree. The tests below pick exactly such floats.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from telemetry.history import CallEnded, CallLogger, CallStarted, ToolCallRecord, TurnRecord, to_datetime
from telemetry.history.schema import month_of

BASE = 1_763_650_000.0  # November 2025


def _candidates(n: int = 4000) -> list[float]:
    """Floats that sit (after binary rounding) on or next to half a microsecond."""
    return [BASE + (k + 0.5) / 1e6 for k in range(n)]


def _pg_style(ts: float) -> dt.datetime:
    """What PostgreSQL's to_timestamp(float8) computes (rint of microseconds since 2000-01-01)."""
    us = round((ts - 946_684_800) * 1e6)
    return dt.datetime(2000, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)


def test_to_datetime_is_whole_microseconds_and_stable_across_a_json_replay() -> None:
    disagree = [t for t in _candidates() if to_datetime(t) != _pg_style(t)]
    assert disagree, "no boundary value among the candidates: the test would not exercise the rounding"
    for t in disagree[:200]:
        d = to_datetime(t)
        assert d == dt.datetime.fromtimestamp(t, dt.UTC)  # what Python code comparing with it computes
        assert abs((d - _pg_style(t)) / dt.timedelta(microseconds=1)) == 1
        assert to_datetime(json.loads(json.dumps(t))) == d  # a row replayed from the Redis buffer


def test_the_partition_month_is_the_month_of_the_stored_instant() -> None:
    end_of_month = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()
    just_before = math.nextafter(end_of_month, 0.0)  # rounds up to 2026-12-01 00:00:00.000000
    assert to_datetime(just_before) == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert month_of(just_before) == dt.date(2026, 12, 1)


@pytest.mark.db
async def test_boundary_timestamps_are_stored_as_to_datetime_gives_them(history_db, pg, otel) -> None:  # type: ignore[no-untyped-def]
    # the candidates on which PostgreSQL's own conversion disagrees, asked of PostgreSQL itself
    cands = _candidates()
    theirs = await pg.fetch("SELECT x, to_timestamp(x) AS t FROM unnest($1::float8[]) AS x", cands)
    boundary = [r["x"] for r in theirs if r["t"] != to_datetime(r["x"])][:8]
    assert len(boundary) == 8, "PostgreSQL agrees on every candidate: the test would not exercise the rounding"
    records = []
    for i, t in enumerate(boundary):
        cid = f"ts-{i}"
        records += [
            CallStarted(cid, t, phone=f"+38050111220{i}"),
            TurnRecord(cid, 0, "user", "Алло", t),
            ToolCallRecord(cid, "find_tyres", {}, None, True, t),
            CallEnded(cid, t, started_at=t, outcome="resolved_by_bot"),
        ]
    # one batch of turns large enough for the COPY path, and the unnest path for the rest
    records += [TurnRecord("ts-0", 1 + k, "agent", "x", boundary[k % 8]) for k in range(40)]
    async with CallLogger(history_db, flush_interval=0.02, tracer_provider=otel.tracer_provider,
                          meter_provider=otel.meter_provider) as logger:
        for rec in records:
            logger.enqueue(rec)
        assert await logger.flush(10)
    for i, t in enumerate(boundary):
        want = to_datetime(t)
        call = await pg.fetchrow("SELECT started_at, ended_at FROM calls WHERE call_id = $1", f"ts-{i}")
        assert (call["started_at"], call["ended_at"]) == (want, want)
        assert await pg.fetchval("SELECT ts FROM call_turns WHERE call_id = $1 AND turn_index = 0", f"ts-{i}") == want
        assert await pg.fetchval("SELECT ts FROM call_tool_calls WHERE call_id = $1", f"ts-{i}") == want
        first = await pg.fetchval("SELECT first_call_at FROM customers WHERE phone = $1", f"+38050111220{i}")
        assert first == want == dt.datetime.fromtimestamp(t, dt.UTC)
    copied = await pg.fetch("SELECT turn_index, ts FROM call_turns WHERE call_id = 'ts-0' AND turn_index > 0")
    assert len(copied) == 40
    assert all(r["ts"] == to_datetime(boundary[(r["turn_index"] - 1) % 8]) for r in copied)
