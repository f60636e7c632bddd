"""Call-history records: what the agent hands to :class:`~telemetry.history.CallLogger`.

Records are frozen and cheap to build (plain values, epoch-second floats). They hold RAW values:
phone numbers, transcripts and tool arguments stay searchable in PostgreSQL; redaction applies
only to telemetry export (spans, logs), never to the history store.

Timestamps are epoch seconds (``time.time()``); :func:`to_datetime` is the one conversion to the
stored ``timestamptz`` (microseconds), used for every column, so a record's instant is stored the
same way whichever path writes it.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "CallEnded",
    "CallStarted",
    "CallStatus",
    "Record",
    "Speaker",
    "ToolCallRecord",
    "TurnRecord",
    "to_datetime",
]

Speaker: TypeAlias = Literal["user", "agent", "system"]
CallStatus: TypeAlias = Literal["active", "completed", "failed", "transferred"]

# Tool calls have no natural key; a per-process sequence (with call_id and ts) makes one that a
# replay of the same record reproduces exactly.
_SEQ: Final = itertools.count(1)


def _next_seq() -> int:
    return next(_SEQ)


def to_datetime(ts: float) -> dt.datetime:
    """Epoch seconds -> the UTC ``datetime`` stored for it: whole microseconds, the fraction rounded
    half to even (what ``datetime.fromtimestamp`` does).

    Every timestamp reaches PostgreSQL through here. PostgreSQL's own ``to_timestamp(float8)``
    rounds ``ts * 1e6`` instead, and for some floats (a fraction of .5 µs after binary rounding) the
    two differ by 1 µs: the same instant stored two ways.
    """
    return dt.datetime.fromtimestamp(ts, dt.UTC)


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A call began: inserts its ``calls`` row (status ``active``) and counts its customer."""

    call_id: str
    started_at: float  # epoch seconds
    phone: str | None = None
    caller_name: str | None = None
    direction: str = "inbound"
    room: str | None = None
    agent_version: str | None = None
    scenario: str | None = None
    trace_id: str | None = None  # 32 hex chars
    span_id: str | None = None  # 16 hex chars (the call's root span)
    #: the LiveKit room's id (``RM_...``; not its name), when the call's call_id is another (a SIP call id)
    room_sid: str | None = None


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A call ended: updates (or, when its start never arrived, inserts) the ``calls`` row.

    ``app`` is merged into the row's ``app`` JSON object (keys given here win). ``started_at`` is
    the row's partition key; :meth:`CallLogger.log_call_end` fills it (and the
    other identity fields) from the call's :class:`CallStarted` when not given.
    """

    call_id: str
    ended_at: float
    started_at: float | None = None
    status: str = "completed"
    outcome: str | None = None
    scenario: str | None = None
    transfer_reason: str | None = None
    cost_usd: float | None = None
    duration_seconds: float | None = None
    turns: int | None = None
    app: Mapping[str, Any] | None = None  # the application's own data (CallScope.app), JSON values
    phone: str | None = None
    caller_name: str | None = None
    direction: str | None = None
    room: str | None = None
    agent_version: str | None = None
    trace_id: str | None = None
    span_id: str | None = None


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One utterance of a turn (the caller's or the agent's) with its stage latencies."""

    call_id: str
    turn_index: int
    speaker: str  # Speaker
    text: str
    ts: float
    stt_ms: float | None = None
    llm_ms: float | None = None
    tts_ms: float | None = None
    ttfw_ms: float | None = None
    interrupted: bool = False
    trace_id: str | None = None
    span_id: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool (function) call. ``args``/``result``: any JSON-like value; stored as JSONB."""

    call_id: str
    name: str
    args: Any
    result: Any
    success: bool
    ts: float
    duration_ms: float | None = None
    turn_index: int | None = None
    tool_call_id: str | None = None
    error: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    seq: int = field(default_factory=_next_seq)


Record: TypeAlias = CallStarted | CallEnded | TurnRecord | ToolCallRecord
