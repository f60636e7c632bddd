"""Records -> rows: validation/sanitising (:func:`prepare`) and the batched, idempotent SQL
(:func:`write_rows`). Prepared rows are JSON-safe lists, so the same form goes to PostgreSQL and
to the Redis buffer (and back) unchanged; a replayed row produces the same key and is skipped.
Timestamps stay epoch-second floats in rows and become ``timestamptz`` through
:func:`~telemetry.history.records.to_datetime` when written (never PostgreSQL's ``to_timestamp``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry.trace import Link, SpanContext, TraceFlags

from telemetry.history.records import CallEnded, CallStarted, Record, ToolCallRecord, TurnRecord, to_datetime
from telemetry.history.sanitize import (
    MAX_SHORT_CHARS,
    MAX_TEXT_CHARS,
    RejectedRecord,
    check_id,
    check_int,
    check_number,
    check_ts,
    clean_optional,
    clean_text,
    to_json,
    to_jsonable,
)
from telemetry.semconv import Attr

__all__ = [
    "KIND_END",
    "KIND_START",
    "KIND_TOOL",
    "KIND_TURN",
    "Row",
    "WriteStats",
    "batch_links",
    "prepare",
    "row_trace",
    "row_ts",
    "turn_values",
    "upgrade_row",
    "valid_row",
    "write_rows",
]

# A prepared row: [kind, col1, col2, ...] with JSON-safe values (timestamps as epoch floats).
Row = list[Any]

KIND_START: Final = "s"
KIND_END: Final = "e"
KIND_TURN: Final = "t"
KIND_TOOL: Final = "c"

_DIRECTIONS: Final = frozenset({"inbound", "outbound"})
_STATUSES: Final = frozenset({"active", "completed", "failed", "transferred"})
_SPEAKERS: Final = frozenset({"user", "agent", "system"})
_SPEAKER_ALIASES: Final = {"assistant": "agent", "caller": "user", "customer": "user", "bot": "agent"}


_HEX_OK: dict[str, str | None] = {}


def _hex(value: object, width: int) -> str | None:
    if not isinstance(value, str) or len(value) != width:
        return None
    hit = _HEX_OK.get(value, "")
    if hit != "":
        return hit  # the same call's ids repeat on every row
    try:
        int(value, 16)
        out: str | None = value.lower()
    except ValueError:
        out = None
    if len(_HEX_OK) > 4096:
        _HEX_OK.clear()
    _HEX_OK[value] = out
    return out


def _direction(value: object) -> str | None:
    if value is None:
        return None
    v = clean_text(value, 16).lower()
    if v not in _DIRECTIONS:
        raise RejectedRecord(f"direction must be inbound or outbound, not {v!r}")
    return v


def _num(v: object) -> float | None:
    # fast path for the common case (a finite float or None); x - x is NaN for NaN and +-inf
    if type(v) is float:
        return v if v - v == 0.0 else None
    return None if v is None else check_number(v)


def _text(v: object, limit: int) -> str:
    # fast path: plain ASCII without NUL, or text that is valid UTF-8 without NUL
    if type(v) is str and len(v) <= limit and "\x00" not in v:
        if v.isascii():
            return v
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return clean_text(v, limit)
        return v
    return clean_text(v if v is not None else "", limit)


def _app(value: object) -> str | None:
    """The application's per-call data as a JSON object text (None: nothing to merge)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RejectedRecord(f"app must be a mapping of names to JSON values, not {type(value).__name__}")
    if not value:
        return None
    return to_json(to_jsonable(value))


def _turn_fast(rec: TurnRecord) -> Row | None:
    """The hot path (most records are well-formed turns); None: use the checked path."""
    cid, idx, speaker, ts = rec.call_id, rec.turn_index, rec.speaker, rec.ts
    if (
        type(cid) is str and 0 < len(cid) <= MAX_SHORT_CHARS and cid.isascii() and "\x00" not in cid
        and type(idx) is int and 0 <= idx < 2**31 and speaker in _SPEAKERS
        and type(ts) is float and 946_684_800.0 <= ts < 7_258_118_400.0
    ):
        return [
            KIND_TURN, cid, idx, speaker, ts, _text(rec.text, MAX_TEXT_CHARS), _num(rec.stt_ms),
            _num(rec.llm_ms), _num(rec.tts_ms), _num(rec.ttfw_ms), bool(rec.interrupted),
            _hex(rec.trace_id, 32), _hex(rec.span_id, 16),
        ]
    return None


def prepare(rec: Record) -> Row:
    """Validate and sanitise one record into a row. Raises :class:`RejectedRecord` (with the
    reason) for a record that cannot be stored; never anything else for odd values."""
    if type(rec) is TurnRecord:
        row = _turn_fast(rec)
        if row is not None:
            return row
    if isinstance(rec, TurnRecord):
        speaker = clean_text(rec.speaker, 16).lower() if rec.speaker is not None else "user"
        speaker = _SPEAKER_ALIASES.get(speaker, speaker)
        if speaker not in _SPEAKERS:
            raise RejectedRecord(f"speaker must be user, agent or system, not {speaker!r}")
        idx = check_int(rec.turn_index)
        if idx is None or idx < 0:
            raise RejectedRecord(f"turn_index must be a non-negative int, not {rec.turn_index!r}")
        return [
            KIND_TURN, check_id(rec.call_id), idx, speaker, check_ts(rec.ts, "ts"),
            clean_text(rec.text if rec.text is not None else "", MAX_TEXT_CHARS),
            check_number(rec.stt_ms), check_number(rec.llm_ms), check_number(rec.tts_ms),
            check_number(rec.ttfw_ms), bool(rec.interrupted), _hex(rec.trace_id, 32), _hex(rec.span_id, 16),
        ]
    if isinstance(rec, ToolCallRecord):
        seq = check_int(rec.seq)
        if seq is None:
            raise RejectedRecord(f"seq must be an int, not {rec.seq!r}")
        return [
            KIND_TOOL, check_id(rec.call_id), check_ts(rec.ts, "ts"), seq, check_int(rec.turn_index),
            clean_text(rec.name if rec.name is not None else "", 256) or "<unnamed>",
            clean_optional(rec.tool_call_id), to_json(rec.args), to_json(rec.result), bool(rec.success),
            None if rec.error is None else clean_text(rec.error, 4096), check_number(rec.duration_ms),
            _hex(rec.trace_id, 32), _hex(rec.span_id, 16),
        ]
    if isinstance(rec, CallStarted):
        return [
            KIND_START, check_id(rec.call_id), check_ts(rec.started_at, "started_at"),
            clean_optional(rec.phone, 64), clean_optional(rec.caller_name),
            _direction(rec.direction) or "inbound", clean_optional(rec.room),
            clean_optional(rec.agent_version),
            clean_optional(rec.scenario, 128), clean_optional(rec.room_sid, 128), _hex(rec.trace_id, 32),
            _hex(rec.span_id, 16),
        ]
    if isinstance(rec, CallEnded):
        ended = check_ts(rec.ended_at, "ended_at")
        started = None if rec.started_at is None else check_ts(rec.started_at, "started_at")
        status = clean_text(rec.status, 32).lower() if rec.status is not None else "completed"
        if status not in _STATUSES:
            raise RejectedRecord(f"status must be one of {sorted(_STATUSES)}, not {status!r}")
        duration = check_number(rec.duration_seconds)
        if duration is None and started is not None:
            duration = max(0.0, ended - started)
        return [
            KIND_END, check_id(rec.call_id), ended, started, status, clean_optional(rec.outcome, 64),
            clean_optional(rec.scenario, 128), clean_optional(rec.transfer_reason, 256),
            check_number(rec.cost_usd), duration, check_int(rec.turns), _app(rec.app),
            clean_optional(rec.phone, 64), clean_optional(rec.caller_name),
            _direction(rec.direction), clean_optional(rec.room), clean_optional(rec.agent_version),
            _hex(rec.trace_id, 32), _hex(rec.span_id, 16),
        ]
    raise RejectedRecord(f"not a call-history record: {type(rec).__name__}")


_TS_INDEX: Final = {KIND_START: 2, KIND_END: 3, KIND_TURN: 4, KIND_TOOL: 2}


def row_ts(row: Row) -> float | None:
    """Partition timestamp of a row (None: a call end whose start is unknown)."""
    ts: float | None = row[_TS_INDEX[row[0]]]
    return ts


def row_trace(row: Row) -> tuple[str, str | None, str | None]:
    """(call_id, trace_id, span_id) of a row, for the batch span's links."""
    return row[1], row[-2], row[-1]


MAX_LINKS: Final = 64


def batch_links(rows: Sequence[Row]) -> tuple[list[Link], int]:
    """One span link per call of a batch (to its root span; up to :data:`MAX_LINKS`), and the
    number of distinct calls."""
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


_ROW_LENGTHS: Final = {KIND_START: 12, KIND_END: 19, KIND_TURN: 13, KIND_TOOL: 14}
_END_APP: Final = 11  # index of the app JSON in a call-end row


def valid_row(row: object) -> bool:
    """Shape check for rows read back from the Redis buffer."""
    if not isinstance(row, list) or not row:
        return False
    n = _ROW_LENGTHS.get(row[0])
    return n is not None and len(row) == n


def upgrade_row(row: object) -> object:
    """A row buffered in Redis by an earlier version, in today's shape (others unchanged): call ends
    carried ``orders_created`` and ``fittings_booked`` where they now carry the ``app`` object; call
    starts carried no ``room_sid`` (before the trace and span ids)."""
    if isinstance(row, list) and len(row) == 11 and row[0] == KIND_START:
        return [*row[:9], None, *row[9:]]
    if isinstance(row, list) and len(row) == 20 and row[0] == KIND_END:
        orders, fittings = row[_END_APP], row[_END_APP + 1]
        counters = {k: v for k, v in (("orders_created", orders), ("fittings_booked", fittings))
                    if isinstance(v, int) and v}
        return [*row[:_END_APP], json.dumps(counters) if counters else None, *row[_END_APP + 2:]]
    return row


_INSERT_STARTS: Final = """
INSERT INTO calls (call_id, started_at, phone, caller_name, direction, room, agent_version, scenario,
                   room_sid, trace_id, span_id)
SELECT u.call_id, u.started_at, u.phone, u.caller_name, u.direction, u.room,
       u.agent_version, u.scenario, u.room_sid, u.trace_id, u.span_id
  FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
              $8::text[], $9::text[], $10::text[], $11::text[])
       AS u(call_id, started_at, phone, caller_name, direction, room, agent_version, scenario,
            room_sid, trace_id, span_id)
ON CONFLICT (call_id, started_at) DO NOTHING
"""

_UPSERT_ENDS: Final = """
INSERT INTO calls AS c (call_id, ended_at, started_at, status, outcome, scenario, transfer_reason,
                        cost_usd, duration_seconds, turns, app, phone, caller_name, direction, room,
                        agent_version, trace_id, span_id)
SELECT u.call_id, u.ended_at, u.started_at, u.status, u.outcome, u.scenario, u.transfer_reason,
       u.cost_usd, u.duration_seconds, u.turns, coalesce(u.app::jsonb, '{}'), u.phone, u.caller_name,
       coalesce(u.direction, 'inbound'), u.room, u.agent_version, u.trace_id, u.span_id
  FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::float8[], $9::float8[], $10::int[], $11::text[], $12::text[], $13::text[],
              $14::text[], $15::text[], $16::text[], $17::text[], $18::text[])
       AS u(call_id, ended_at, started_at, status, outcome, scenario, transfer_reason, cost_usd,
            duration_seconds, turns, app, phone, caller_name, direction, room, agent_version, trace_id,
            span_id)
ON CONFLICT (call_id, started_at) DO UPDATE SET
    ended_at = EXCLUDED.ended_at,
    status = EXCLUDED.status,
    outcome = coalesce(EXCLUDED.outcome, c.outcome),
    scenario = coalesce(EXCLUDED.scenario, c.scenario),
    transfer_reason = coalesce(EXCLUDED.transfer_reason, c.transfer_reason),
    cost_usd = coalesce(EXCLUDED.cost_usd, c.cost_usd),
    duration_seconds = coalesce(EXCLUDED.duration_seconds, c.duration_seconds),
    turns = coalesce(EXCLUDED.turns, c.turns),
    app = c.app || EXCLUDED.app,
    room = coalesce(c.room, EXCLUDED.room),
    agent_version = coalesce(c.agent_version, EXCLUDED.agent_version),
    trace_id = coalesce(c.trace_id, EXCLUDED.trace_id),
    span_id = coalesce(c.span_id, EXCLUDED.span_id),
    updated_at = now()
"""

# A call end whose start time is unknown: update the row by call_id (any partition).
_UPDATE_ENDS_BY_ID: Final = """
UPDATE calls AS c SET
    ended_at = u.ended_at, status = u.status,
    outcome = coalesce(u.outcome, c.outcome), scenario = coalesce(u.scenario, c.scenario),
    transfer_reason = coalesce(u.transfer_reason, c.transfer_reason),
    cost_usd = coalesce(u.cost_usd, c.cost_usd),
    duration_seconds = coalesce(u.duration_seconds, extract(epoch FROM u.ended_at - c.started_at)),
    turns = coalesce(u.turns, c.turns), app = c.app || coalesce(u.app::jsonb, '{}'), updated_at = now()
  FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[],
              $8::float8[], $9::int[], $10::text[])
       AS u(call_id, ended_at, status, outcome, scenario, transfer_reason, cost_usd,
            duration_seconds, turns, app)
 WHERE c.call_id = u.call_id
RETURNING c.call_id
"""

_INSERT_TURNS: Final = """
INSERT INTO call_turns (call_id, turn_index, speaker, ts, text, stt_ms, llm_ms, tts_ms, ttfw_ms,
                        interrupted, trace_id, span_id)
SELECT u.call_id, u.turn_index, u.speaker, u.ts, u.text, u.stt_ms, u.llm_ms, u.tts_ms,
       u.ttfw_ms, u.interrupted, u.trace_id, u.span_id
  FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[], $5::text[], $6::float8[],
              $7::float8[], $8::float8[], $9::float8[], $10::bool[], $11::text[], $12::text[])
       AS u(call_id, turn_index, speaker, ts, text, stt_ms, llm_ms, tts_ms, ttfw_ms, interrupted,
            trace_id, span_id)
ON CONFLICT DO NOTHING
"""

_INSERT_TOOLS: Final = """
INSERT INTO call_tool_calls (call_id, ts, seq, turn_index, name, tool_call_id, args, result, success,
                             error, duration_ms, trace_id, span_id)
SELECT u.call_id, u.ts, u.seq, u.turn_index, u.name, u.tool_call_id, u.args::jsonb,
       u.result::jsonb, u.success, u.error, u.duration_ms, u.trace_id, u.span_id
  FROM unnest($1::text[], $2::timestamptz[], $3::int8[], $4::int[], $5::text[], $6::text[], $7::text[],
              $8::text[], $9::bool[], $10::text[], $11::float8[], $12::text[], $13::text[])
       AS u(call_id, ts, seq, turn_index, name, tool_call_id, args, result, success, error,
            duration_ms, trace_id, span_id)
ON CONFLICT DO NOTHING
"""

# One turn per statement: the benchmark's baseline ($4 is a timestamptz: see turn_values()).
INSERT_TURN_ONE: Final = """
INSERT INTO call_turns (call_id, turn_index, speaker, ts, text, stt_ms, llm_ms, tts_ms, ttfw_ms,
                        interrupted, trace_id, span_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT DO NOTHING
"""


# Large batches of turns / tool calls go through COPY into a per-session temp table, then one
# INSERT ... SELECT ... ON CONFLICT DO NOTHING (binary COPY encodes faster than unnest arrays).
COPY_MIN_ROWS: Final = 32
TURN_COLUMNS: Final = ("call_id", "turn_index", "speaker", "ts", "text", "stt_ms", "llm_ms", "tts_ms",
                       "ttfw_ms", "interrupted", "trace_id", "span_id")
TOOL_COLUMNS: Final = ("call_id", "ts", "seq", "turn_index", "name", "tool_call_id", "args", "result",
                       "success", "error", "duration_ms", "trace_id", "span_id")
_STAGE_TABLES: Final = """
CREATE TEMP TABLE IF NOT EXISTS voxpulse_stage_turns_v2 (
    call_id text, turn_index int, speaker text, ts timestamptz, text text, stt_ms float8, llm_ms float8,
    tts_ms float8, ttfw_ms float8, interrupted bool, trace_id text, span_id text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS voxpulse_stage_tools_v2 (
    call_id text, ts timestamptz, seq int8, turn_index int, name text, tool_call_id text, args text,
    result text, success bool, error text, duration_ms float8, trace_id text, span_id text
) ON COMMIT DELETE ROWS
"""
_INSERT_TURNS_STAGED: Final = """
INSERT INTO call_turns (call_id, turn_index, speaker, ts, text, stt_ms, llm_ms, tts_ms, ttfw_ms,
                        interrupted, trace_id, span_id)
SELECT call_id, turn_index, speaker, ts, text, stt_ms, llm_ms, tts_ms, ttfw_ms,
       interrupted, trace_id, span_id
  FROM voxpulse_stage_turns_v2
ON CONFLICT DO NOTHING
"""
_INSERT_TOOLS_STAGED: Final = """
INSERT INTO call_tool_calls (call_id, ts, seq, turn_index, name, tool_call_id, args, result, success,
                             error, duration_ms, trace_id, span_id)
SELECT call_id, ts, seq, turn_index, name, tool_call_id, args::jsonb, result::jsonb,
       success, error, duration_ms, trace_id, span_id
  FROM voxpulse_stage_tools_v2
ON CONFLICT DO NOTHING
"""


@dataclass(slots=True)
class WriteStats:
    rows: int = 0
    ends_without_row: list[str] = field(default_factory=list)


# Positions (in a row without its kind) of the epoch-second timestamps, per kind.
_TS_COLUMNS: Final = {KIND_START: (1,), KIND_END: (1, 2), KIND_TURN: (3,), KIND_TOOL: (1,)}


def _values(row: Row, ts_columns: tuple[int, ...]) -> list[Any]:
    """The row's values without its kind, timestamps converted by to_datetime()."""
    out = row[1:]
    for i in ts_columns:
        if out[i] is not None:
            out[i] = to_datetime(out[i])
    return out


def turn_values(row: Row) -> list[Any]:
    """A turn row's values as INSERT_TURN_ONE takes them."""
    return _values(row, _TS_COLUMNS[KIND_TURN])


def _columns(rows: Sequence[Row], ts_columns: tuple[int, ...] = ()) -> list[list[Any]]:
    return [list(col) for col in zip(*(_values(r, ts_columns) for r in rows), strict=True)]


async def write_rows(conn: Any, rows: Sequence[Row]) -> WriteStats:
    """Write prepared rows in one transaction, one statement per kind (starts, ends, turns, tool
    calls, in that order). Idempotent: replaying any subset changes nothing."""
    starts: list[Row] = []
    ends: dict[tuple[str, float], Row] = {}
    ends_by_id: dict[str, Row] = {}
    turns: list[Row] = []
    tools: list[Row] = []
    for r in rows:
        k = r[0]
        if k == KIND_TURN:
            turns.append(r)
        elif k == KIND_TOOL:
            tools.append(r)
        elif k == KIND_START:
            starts.append(r)
        elif r[3] is not None:
            ends[(r[1], r[3])] = r  # the last end of a call wins (ON CONFLICT DO UPDATE once)
        else:
            ends_by_id[r[1]] = r
    stats = WriteStats(rows=len(rows))
    big = len(turns) >= COPY_MIN_ROWS or len(tools) >= COPY_MIN_ROWS
    if big:
        await conn.execute(_STAGE_TABLES)
    async with conn.transaction():
        if starts:
            await conn.execute(_INSERT_STARTS, *_columns(starts, _TS_COLUMNS[KIND_START]))
        if ends:
            await conn.execute(_UPSERT_ENDS, *_columns(list(ends.values()), _TS_COLUMNS[KIND_END]))
        turn_ts, tool_ts = _TS_COLUMNS[KIND_TURN], _TS_COLUMNS[KIND_TOOL]
        if len(turns) >= COPY_MIN_ROWS:
            await conn.copy_records_to_table(
                "voxpulse_stage_turns_v2", records=[_values(r, turn_ts) for r in turns], columns=TURN_COLUMNS)
            await conn.execute(_INSERT_TURNS_STAGED)
        elif turns:
            await conn.execute(_INSERT_TURNS, *_columns(turns, turn_ts))
        if len(tools) >= COPY_MIN_ROWS:
            await conn.copy_records_to_table(
                "voxpulse_stage_tools_v2", records=[_values(r, tool_ts) for r in tools], columns=TOOL_COLUMNS)
            await conn.execute(_INSERT_TOOLS_STAGED)
        elif tools:
            await conn.execute(_INSERT_TOOLS, *_columns(tools, tool_ts))
        if ends_by_id:
            vals = list(ends_by_id.values())
            # call_id, ended_at, then status .. app (the end's started_at is unknown: None)
            cols = _columns([[r[0], *r[1:3], *r[4:_END_APP + 1]] for r in vals], (1,))
            found = await conn.fetch(_UPDATE_ENDS_BY_ID, *cols)
            hit = {f["call_id"] for f in found}
            stats.ends_without_row = [r[1] for r in vals if r[1] not in hit]
    return stats

