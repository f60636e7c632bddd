"""The console's reads of the call history (PostgreSQL, asyncpg): calls, turns, tool calls, alerts.

Every query is a constant here; the overview hands its SQL back with its numbers, so a test (or a
curious operator) can run the same statement and get the same value. Filters are validated by
:mod:`voxpulse_console.ui.filters` before they reach this module.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

__all__ = [
    "ALERTS_SQL",
    "ANY_JUDGE",
    "OVERVIEW_SQL",
    "CallFilter",
    "CallRows",
    "History",
]

# ------------------------------------------------------------------------------------------ overview
# $1: the console's time zone (today = since local midnight there).
_TODAY: Final = "date_trunc('day', now() AT TIME ZONE $1) AT TIME ZONE $1"
OVERVIEW_SQL: Final[dict[str, str]] = {
    "active_calls": "SELECT count(*) FROM calls WHERE status = 'active' AND started_at > now() - interval '1 day'",
    "calls_today": f"SELECT count(*) FROM calls WHERE started_at >= {_TODAY}",
    "cost_today_usd": f"SELECT coalesce(sum(cost_usd), 0)::float8 FROM calls WHERE started_at >= {_TODAY}",
    "outcomes_today": (
        "SELECT coalesce(outcome, status) AS outcome, coalesce(transfer_reason, '') AS transfer_reason, "
        f"count(*) AS calls FROM calls WHERE started_at >= {_TODAY} GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
    ),
}
_NEEDS_TZ: Final = {"calls_today", "cost_today_usd", "outcomes_today"}

ALERTS_SQL: Final = """
SELECT id, fingerprint, alertname, severity, service, status, message, summary, labels, annotations,
       starts_at, triggered_at, resolved_at, generator_url, received_at
  FROM alerts_history
 WHERE ($1::text IS NULL OR status = $1)
   AND ($2::bigint IS NULL OR id < $2)
 ORDER BY id DESC
 LIMIT $3
"""

_ALERT_BY_ID: Final = """
SELECT id, fingerprint, alertname, severity, service, status, message, summary, labels, annotations,
       starts_at, triggered_at, resolved_at, generator_url, received_at
  FROM alerts_history WHERE id = $1
"""

# ------------------------------------------------------------------------------------------ calls
# A call's insights (the receiver's row, migration 0007) are keyed by the LiveKit room's id: the call's
# own call_id, or, when that is another (a SIP call id), the room id the call history recorded for it
# (calls.room_sid, migration 0008); never the room's name.
_INSIGHTS_OBJECT: Final = """jsonb_build_object(
          'tags', (SELECT coalesce(jsonb_agg(t ORDER BY t), '[]'::jsonb) FROM jsonb_object_keys(i.tags) t),
          'outcome', i.outcome,
          'failed_judges', (SELECT coalesce(jsonb_agg(e.key ORDER BY e.key), '[]'::jsonb)
                              FROM jsonb_each(i.evaluations) e WHERE e.value->>'verdict' = 'fail'),
          'audio', i.audio_bytes > 0)"""
_CALL_COLUMNS: Final = """
c.call_id, c.started_at, c.ended_at, c.status, c.outcome, c.transfer_reason, c.scenario, c.direction,
c.duration_seconds, c.cost_usd::float8 AS cost_usd, c.turns, c.phone, c.trace_id, c.agent_version,
(SELECT max(t.ttfw_ms) FROM call_turns t
  WHERE t.call_id = c.call_id AND t.ts >= c.started_at - interval '1 minute') AS max_ttfw_ms,
(c.outcome = 'failed' OR c.status = 'failed' OR EXISTS (
   SELECT 1 FROM call_tool_calls k
    WHERE k.call_id = c.call_id AND k.ts >= c.started_at - interval '1 minute' AND NOT k.success)) AS has_errors,
(SELECT """ + _INSIGHTS_OBJECT + """
   FROM insights_calls i WHERE i.call_id IN (c.call_id, c.room_sid)
  ORDER BY i.call_id = c.call_id DESC LIMIT 1) AS insights,
'history' AS source
"""
#: a call only the insights receiver knows (an agent without VoxPulse code) as a list row: what the
#: upload said (its start, length, LiveKit's outcome, tags, verdicts, audio), the rest unknown (NULL)
_RECEIVED_AT: Final = "coalesce(i.started_at, i.received_at)"
_RECEIVED_COLUMNS: Final = f"""
i.call_id, {_RECEIVED_AT} AS started_at,
{_RECEIVED_AT} + make_interval(secs => i.duration_s) AS ended_at,
NULL::text AS status, NULL::text AS outcome, NULL::text AS transfer_reason, NULL::text AS scenario,
NULL::text AS direction, i.duration_s AS duration_seconds, NULL::float8 AS cost_usd, NULL::integer AS turns,
NULL::text AS phone, NULL::text AS trace_id, NULL::text AS agent_version, NULL::float8 AS max_ttfw_ms,
false AS has_errors, {_INSIGHTS_OBJECT} AS insights, 'insights' AS source
"""
#: the receiver's row is the call history's call: by call_id, or by the room id the history recorded
_NOT_IN_HISTORY: Final = ("NOT EXISTS (SELECT 1 FROM calls h WHERE h.call_id = i.call_id) "
                          "AND NOT EXISTS (SELECT 1 FROM calls h WHERE h.room_sid = i.call_id)")

_CALL_DETAIL: Final = """
SELECT c.call_id, c.started_at, c.ended_at, c.status, c.outcome, c.transfer_reason, c.scenario, c.direction,
       c.duration_seconds, c.cost_usd::float8 AS cost_usd, c.turns, c.phone, c.caller_name, c.trace_id,
       c.span_id, c.room, c.agent_version
  FROM calls c WHERE c.call_id = $1 ORDER BY c.started_at DESC LIMIT 1
"""
_TURNS: Final = """
SELECT turn_index, speaker, ts, text, stt_ms, llm_ms, tts_ms, ttfw_ms, interrupted, trace_id, span_id
  FROM call_turns WHERE call_id = $1 AND ts >= $2 ORDER BY turn_index, ts, speaker
"""
_TOOLS: Final = """
SELECT ts, seq, turn_index, name, tool_call_id, args, result, success, error, duration_ms
  FROM call_tool_calls WHERE call_id = $1 AND ts >= $2 ORDER BY ts, seq
"""
#: the insights receiver's row of a call (voxpulse_console.insights; migration 0007)
_INSIGHTS: Final = """
SELECT call_id, room_id, job_id, agent_name, sdk_version, started_at, duration_s, simulated, audio_bytes,
       audio_dropped, audio_broken, audio_problem, audio_seconds, chat_items, tags, evaluations, outcome,
       outcome_reason, received_at, updated_at
  FROM insights_calls
 WHERE call_id = $1
    OR call_id = (SELECT room_sid FROM calls WHERE call_id = $1 AND room_sid IS NOT NULL
                   ORDER BY started_at DESC LIMIT 1)
 ORDER BY call_id = $1 DESC LIMIT 1
"""
#: the VoxPulse call whose LiveKit room had this id (the receiver's key of a SIP call)
_CALL_BY_ROOM: Final = """
SELECT call_id FROM calls WHERE room_sid = $1 ORDER BY started_at DESC LIMIT 1
"""
#: the list rows of the calls these receiver rows belong to (the live feed): the history's call when
#: it has one, else the receiver's own
_ROWS_BY_INSIGHTS: Final = f"""
SELECT {_CALL_COLUMNS} FROM calls c WHERE c.call_id = ANY($1::text[]) OR c.room_sid = ANY($1::text[])
UNION ALL
SELECT {_RECEIVED_COLUMNS} FROM insights_calls i WHERE i.call_id = ANY($1::text[]) AND {_NOT_IN_HISTORY}
"""
_CALL_BY_TRACE: Final = """
SELECT call_id FROM calls WHERE trace_id = $1 ORDER BY started_at DESC LIMIT 1
"""
_ROWS_BY_KEY: Final = f"""
SELECT {_CALL_COLUMNS}
  FROM calls c
  JOIN unnest($1::text[], $2::timestamptz[]) AS k(call_id, started_at)
    ON c.call_id = k.call_id AND c.started_at = k.started_at
"""
_SLOWEST: Final = """
SELECT c.call_id, c.started_at, c.outcome, c.scenario, c.trace_id, m.max_ttfw_ms, m.slow_turn
  FROM (SELECT DISTINCT ON (call_id) call_id, ttfw_ms AS max_ttfw_ms, turn_index AS slow_turn
          FROM call_turns
         WHERE ts >= $1 AND ts < $2 AND ttfw_ms IS NOT NULL
         ORDER BY call_id, ttfw_ms DESC) m
  JOIN calls c ON c.call_id = m.call_id AND c.started_at >= $1 - interval '1 day'
 ORDER BY m.max_ttfw_ms DESC, c.call_id
 LIMIT $3
"""
_FILTER_VALUES: Final = """
SELECT 'scenario' AS kind, scenario AS value FROM (
    SELECT DISTINCT scenario FROM calls WHERE scenario IS NOT NULL AND started_at > now() - interval '30 days'
) s
UNION ALL
SELECT 'outcome', outcome FROM (
    SELECT DISTINCT outcome FROM calls WHERE outcome IS NOT NULL AND started_at > now() - interval '30 days'
) o
UNION ALL
SELECT 'judge', judge FROM (
    SELECT DISTINCT jsonb_object_keys(evaluations) AS judge FROM insights_calls
     WHERE received_at > now() - interval '30 days'
) j
"""


ANY_JUDGE: Final = "*"


@dataclass(frozen=True, slots=True)
class CallFilter:
    """A validated calls-list filter (see :func:`voxpulse_console.ui.filters.parse_call_filter`)."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None
    outcomes: tuple[str, ...] = ()
    scenario: str | None = None
    min_ttfw_ms: float | None = None
    errors_only: bool = False
    call_id_prefix: str | None = None
    phones: tuple[str, ...] = ()  # raw forms of one number to match exactly
    status: str | None = None
    #: LiveKit's outcome of the call (``success`` | ``fail``, the insights receiver's row)
    insight_outcome: str | None = None
    #: a judge whose verdict was ``fail`` (:data:`ANY_JUDGE`: any judge)
    failed_judge: str | None = None
    cursor: tuple[dt.datetime, str] | None = None  # (started_at, call_id) of the last row seen
    limit: int = 50


@dataclass(frozen=True, slots=True)
class CallRows:
    rows: list[dict[str, Any]]
    next_cursor: tuple[dt.datetime, str] | None


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def build_calls_query(f: CallFilter) -> tuple[str, list[Any]]:
    """The keyset-paginated calls query for a filter (newest first): SQL and its parameters."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.start is not None:
        where.append(f"c.started_at >= {arg(f.start)}")
    if f.end is not None:
        where.append(f"c.started_at < {arg(f.end)}")
    if f.cursor is not None:
        ts, cid = f.cursor
        p_ts, p_id = arg(ts), arg(cid)
        where.append(f"(c.started_at, c.call_id) < ({p_ts}, {p_id})")
        where.append(f"c.started_at <= {p_ts}")  # lets the started_at index bound the scan
    if f.outcomes:
        where.append(f"coalesce(c.outcome, c.status) = ANY({arg(list(f.outcomes))}::text[])")
    if f.scenario:
        where.append(f"c.scenario = {arg(f.scenario)}")
    if f.status:
        where.append(f"c.status = {arg(f.status)}")
    if f.call_id_prefix:
        where.append(f"c.call_id LIKE {arg(_like_prefix(f.call_id_prefix))}")
    if f.phones:
        where.append(f"c.phone = ANY({arg(list(f.phones))}::text[])")
    if f.insight_outcome:
        where.append(f"EXISTS (SELECT 1 FROM insights_calls i WHERE i.call_id IN (c.call_id, c.room_sid) "
                     f"AND i.outcome = {arg(f.insight_outcome)})")
    if f.failed_judge == ANY_JUDGE:
        where.append("EXISTS (SELECT 1 FROM insights_calls i, jsonb_each(i.evaluations) e "
                     "WHERE i.call_id IN (c.call_id, c.room_sid) AND e.value->>'verdict' = 'fail')")
    elif f.failed_judge:
        where.append(f"EXISTS (SELECT 1 FROM insights_calls i WHERE i.call_id IN (c.call_id, c.room_sid) "
                     f"AND i.evaluations -> {arg(f.failed_judge)}::text ->> 'verdict' = 'fail')")
    if f.min_ttfw_ms is not None:
        # a semi-join the planner may drive from the turns' ttfw index (few slow turns) or from the
        # calls (a low threshold)
        where.append(f"c.call_id IN (SELECT t.call_id FROM call_turns t WHERE t.ttfw_ms >= {arg(f.min_ttfw_ms)})")
    if f.errors_only:
        where.append(
            "(c.outcome = 'failed' OR c.status = 'failed' OR EXISTS (SELECT 1 FROM call_tool_calls k "
            "WHERE k.call_id = c.call_id AND k.ts >= c.started_at - interval '1 minute' AND NOT k.success))"
        )
    limit = arg(f.limit + 1)
    sql = f"SELECT {_CALL_COLUMNS} FROM calls c"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY c.started_at DESC, c.call_id DESC LIMIT {limit}"
    received = _received_where(f, arg)
    if received is None:
        return sql, args
    # the calls only the insights receiver knows, merged in by the same keyset: each side's first
    # page (each served by its own (time, call_id) index), then the page of both
    other = (f"SELECT {_RECEIVED_COLUMNS} FROM insights_calls i WHERE {' AND '.join(received)} "
             f"ORDER BY {_RECEIVED_AT} DESC, i.call_id DESC LIMIT {limit}")
    return (f"SELECT * FROM (({sql}) UNION ALL ({other})) u "
            f"ORDER BY u.started_at DESC, u.call_id DESC LIMIT {limit}"), args


def _received_where(f: CallFilter, arg: Callable[[Any], str]) -> list[str] | None:
    """The filter's WHERE clauses over ``insights_calls i`` (the calls only the receiver knows), or None
    when the filter asks for what the receiver does not know (the history's outcome, scenario, status,
    caller, time to first word, errors): no such call can match."""
    if f.outcomes or f.scenario or f.status or f.phones or f.min_ttfw_ms is not None or f.errors_only:
        return None
    where = [_NOT_IN_HISTORY]
    if f.start is not None:
        where.append(f"{_RECEIVED_AT} >= {arg(f.start)}")
    if f.end is not None:
        where.append(f"{_RECEIVED_AT} < {arg(f.end)}")
    if f.cursor is not None:
        ts, cid = f.cursor
        p_ts, p_id = arg(ts), arg(cid)
        where.append(f"({_RECEIVED_AT}, i.call_id) < ({p_ts}, {p_id})")
    if f.call_id_prefix:
        where.append(f"i.call_id LIKE {arg(_like_prefix(f.call_id_prefix))}")
    if f.insight_outcome:
        where.append(f"i.outcome = {arg(f.insight_outcome)}")
    if f.failed_judge == ANY_JUDGE:
        where.append("EXISTS (SELECT 1 FROM jsonb_each(i.evaluations) e WHERE e.value->>'verdict' = 'fail')")
    elif f.failed_judge:
        where.append(f"i.evaluations -> {arg(f.failed_judge)}::text ->> 'verdict' = 'fail'")
    return where


def _jsonish(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class History:
    """Reads of the call history through one asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, *, timezone: str = "UTC") -> None:
        self.pool = pool
        self.timezone = timezone

    async def overview(self) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            out: dict[str, Any] = {}
            for name, sql in OVERVIEW_SQL.items():
                params = [self.timezone] if name in _NEEDS_TZ else []
                if name == "outcomes_today":
                    out[name] = [dict(r) for r in await conn.fetch(sql, *params)]
                else:
                    out[name] = await conn.fetchval(sql, *params)
        return out

    async def calls(self, f: CallFilter) -> CallRows:
        sql, args = build_calls_query(f)
        async with self.pool.acquire() as conn:
            rows = [dict(r) for r in await conn.fetch(sql, *args)]
        nxt = None
        if len(rows) > f.limit:
            rows = rows[: f.limit]
            last = rows[-1]
            nxt = (last["started_at"], last["call_id"])
        return CallRows(rows, nxt)

    async def rows_by_key(self, keys: Sequence[tuple[str, dt.datetime]]) -> list[dict[str, Any]]:
        """List rows of these (call_id, started_at) pairs (the live feed's notifications)."""
        if not keys:
            return []
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_ROWS_BY_KEY, [k[0] for k in keys], [k[1] for k in keys])
        return [dict(r) for r in rows]

    async def rows_by_insights(self, call_ids: Sequence[str]) -> list[dict[str, Any]]:
        """List rows of the calls these insights rows belong to (the live feed's notifications): the
        history's call (joined by call_id or its room's id), else the receiver-only call."""
        if not call_ids:
            return []
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_ROWS_BY_INSIGHTS, list(call_ids))
        return [dict(r) for r in rows]

    async def call_id_for_room(self, room_sid: str) -> str | None:
        """The call history's call whose LiveKit room had this id (a SIP call's, under its own call_id)."""
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(_CALL_BY_ROOM, room_sid)
        return str(value) if value is not None else None

    async def call(self, call_id: str) -> dict[str, Any] | None:
        """The call's row with its turns and tool calls, or None when the history has no such call."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_CALL_DETAIL, call_id)
            if row is None:
                return None
            since = row["started_at"] - dt.timedelta(minutes=1)
            turns = await conn.fetch(_TURNS, call_id, since)
            tools = await conn.fetch(_TOOLS, call_id, since)
        out = dict(row)
        out["turn_rows"] = [dict(t) for t in turns]
        out["tool_rows"] = [dict(t) | {"args": _jsonish(t["args"]), "result": _jsonish(t["result"])} for t in tools]
        return out

    async def insights(self, call_id: str) -> dict[str, Any] | None:
        """The insights receiver's row of the call (tags, verdicts, outcome, audio), or None."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_INSIGHTS, call_id)
        if row is None:
            return None
        return dict(row) | {"tags": _jsonish(row["tags"]) or {}, "evaluations": _jsonish(row["evaluations"]) or {}}

    async def call_id_for_trace(self, trace_id: str) -> str | None:
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(_CALL_BY_TRACE, trace_id)
        return str(value) if value is not None else None

    async def slowest_calls(self, start: dt.datetime, end: dt.datetime, limit: int = 10) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_SLOWEST, start, end, limit)
        return [dict(r) for r in rows]

    async def alerts(self, *, status: str | None = None, before_id: int | None = None,
                     limit: int = 50) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(ALERTS_SQL, status, before_id, limit)
        return [_alert(r) for r in rows]

    async def alert(self, alert_id: int) -> dict[str, Any] | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_ALERT_BY_ID, alert_id)
        return _alert(row) if row is not None else None

    async def filter_values(self) -> dict[str, list[str]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_FILTER_VALUES)
        out: dict[str, list[str]] = {"scenario": [], "outcome": [], "judge": []}
        for r in rows:
            out[r["kind"]].append(r["value"])
        for v in out.values():
            v.sort()
        return out


def _alert(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["labels"] = _jsonish(d.get("labels")) or {}
    d["annotations"] = _jsonish(d.get("annotations")) or {}
    return d
