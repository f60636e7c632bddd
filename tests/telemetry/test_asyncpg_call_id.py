"""call_id reaches spans made by the asyncpg instrumentor, against the real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

import telemetry
from telemetry.semconv import Attr
from telemetry.testing import capture_telemetry

pytestmark = pytest.mark.db


async def test_asyncpg_spans_belong_to_the_call_and_carry_call_id(base_dsn: str) -> None:
    import asyncpg

    with capture_telemetry(livekit=False) as cap:
        conn = await asyncpg.connect(base_dsn, timeout=5)
        try:
            async with telemetry.call("pg-call") as call:
                await conn.fetchval("SELECT 1")

                async def in_task() -> None:
                    await conn.fetchval("SELECT 2")

                await asyncio.create_task(in_task())
        finally:
            await conn.close()
    db_spans = [s for s in cap.spans() if s.attributes.get("db.system") == "postgresql"
                or s.attributes.get("db.system.name") == "postgresql"]
    in_call = [s for s in db_spans if s.context.trace_id == int(call.trace_id, 16)]
    assert len(in_call) == 2, [s.name for s in db_spans]
    assert all(s.attributes[Attr.CALL_ID] == "pg-call" for s in in_call)
