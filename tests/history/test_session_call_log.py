"""instrument_session keeps the call history itself when a database is configured (DATABASE_URL):
one CallLogger per call, started on entry and closed (its records written) on exit; ``call_log=False``
opts out, and a logger passed in stays the caller's. Against the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncpg
import pytest
from livekit.agents import AgentSession

from telemetry.history import CallLogger
from telemetry.history.rows import row_trace, upgrade_row, valid_row
from telemetry.livekit import instrument_session
from telemetry.semconv import Attr, CallOutcome
from telemetry.testing import capture_telemetry


@pytest.fixture
def database(history_db: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("VOXPULSE_DATABASE_URL", raising=False)
    monkeypatch.delenv("VOXPULSE_REDIS_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", history_db)
    monkeypatch.setenv("REDIS_URL", redis_url)
    return history_db


async def _calls(pg: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await pg.fetch("SELECT call_id, phone, outcome, agent_version FROM calls ORDER BY call_id"))


async def test_a_call_with_a_database_is_written_to_the_history(database: str, pg: asyncpg.Connection) -> None:
    with capture_telemetry(livekit=False, libraries=False):
        instr = instrument_session(AgentSession(), call_id="auto-1", caller="+380501234567")
        async with instr as call:
            logger = instr.call_log
            assert isinstance(logger, CallLogger), "opened for the call"
            call.set_outcome(CallOutcome.RESOLVED_BY_BOT)
    # closed on exit: nothing left in memory, and the call's start and end are in PostgreSQL
    assert logger.in_memory == 0 and logger.stats.dropped == 0
    rows = await _calls(pg)
    assert [(r["call_id"], r["phone"], r["outcome"]) for r in rows] == [
        ("auto-1", "+380501234567", "resolved_by_bot")]
    logger.log_turn("auto-1", 0, "user", "late")  # a closed logger takes nothing more
    assert logger.stats.dropped == 1


async def test_call_log_false_opts_out(database: str, pg: asyncpg.Connection) -> None:
    with capture_telemetry(livekit=False, libraries=False):
        instr = instrument_session(AgentSession(), call_id="auto-2", call_log=False)
        async with instr:
            assert instr.call_log is None
    assert await _calls(pg) == []


async def test_a_logger_passed_in_stays_open(database: str, pg: asyncpg.Connection) -> None:
    own = CallLogger.from_env()
    await own.start()
    try:
        with capture_telemetry(livekit=False, libraries=False):
            async with instrument_session(AgentSession(), call_id="auto-3", call_log=own):
                pass
        assert own.log_turn("auto-3", 0, "user", "still open"), "the caller's logger is not closed for it"
        assert await own.flush()
    finally:
        await own.aclose()
    assert [r["call_id"] for r in await _calls(pg)] == ["auto-3"]


async def test_without_a_database_there_is_no_history(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "VOXPULSE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with capture_telemetry(livekit=False, libraries=False):
        instr = instrument_session(AgentSession(), call_id="auto-4")
        async with instr:
            assert instr.call_log is None


async def test_a_sip_call_records_its_rooms_id_not_its_name(database: str, pg: asyncpg.Connection) -> None:
    """A SIP call's call_id is the SIP call id; the history keeps its LiveKit room's id (``lk.room_sid``,
    the key LiveKit's observability upload arrives under) beside it, so the console joins the two. The
    room's name (a SIP dispatch builds it from the caller's number) is stored masked and is no key."""
    with capture_telemetry(livekit=False, libraries=False):
        async with instrument_session(AgentSession(), call_id="SCL_abc", caller="+380501234567",
                                      room="call-+380501234567", attributes={Attr.ROOM_SID: "RM_abc"}):
            pass
    row = await pg.fetchrow("SELECT call_id, room_sid, room FROM calls")
    assert row is not None and (row["call_id"], row["room_sid"]) == ("SCL_abc", "RM_abc")
    assert "501234567" not in row["room"]


def test_a_call_start_buffered_by_an_earlier_version_is_read_back() -> None:
    """Redis may hold call starts of the shape before ``room_sid``: read back with none."""
    old = ["s", "c-1", 1.0, None, None, "inbound", None, None, None, "ab" * 16, "cd" * 8]
    assert not valid_row(old)
    new = upgrade_row(old)
    assert valid_row(new) and new == [*old[:9], None, *old[9:]]
    assert row_trace(new) == ("c-1", "ab" * 16, "cd" * 8)  # (call_id, trace_id, span_id) stay at the end
