"""call_id reaches spans made by the asyncpg instrumentor, against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import os

import pytest

import telemetry
from telemetry.semconv import Attr
from telemetry.testing import capture_telemetry

pytestmark = pytest.mark.db


async def _connect() -> object:
    import asyncpg

    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        if os.environ.get("VOXPULSE_REQUIRE_DB"):
            pytest.fail("DATABASE_URL is not set (scripts/services.sh start writes .voxpulse/services/env)")
        pytest.skip("DATABASE_URL not set; run scripts/services.sh start")
    try:
        return await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("VOXPULSE_REQUIRE_DB"):
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")


async def test_asyncpg_spans_belong_to_the_call_and_carry_call_id() -> None:
    with capture_telemetry(livekit=False) as cap:
        conn = await _connect()
        try:
            async with telemetry.call("pg-call") as call:
                await conn.fetchval("SELECT 1")  # type: ignore[attr-defined]

                async def in_task() -> None:
                    await conn.fetchval("SELECT 2")  # type: ignore[attr-defined]

                await asyncio.create_task(in_task())
        finally:
            await conn.close()  # type: ignore[attr-defined]
    db_spans = [s for s in cap.spans() if s.attributes.get("db.system") == "postgresql"
                or s.attributes.get("db.system.name") == "postgresql"]
    in_call = [s for s in db_spans if s.context.trace_id == int(call.trace_id, 16)]
    assert len(in_call) == 2, [s.name for s in db_spans]
    assert all(s.attributes[Attr.CALL_ID] == "pg-call" for s in in_call)
