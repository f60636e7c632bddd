"""Fixtures shared by every test directory. Their helpers live in :mod:`tests.support`.

* ``base_dsn`` / ``redis_url``: the real PostgreSQL and Redis of scripts/services.sh, checked to
  answer (skipped without them, failing under ``VOXPULSE_REQUIRE_DB``).
* ``migrated_db``: a throw-away database with the call history's and the console's schemas (the
  dashboards query both), one per test module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support import database_url, throwaway_database, unavailable
from tests.support import redis_url as redis_setting


@pytest.fixture(scope="session")
def base_dsn() -> str:
    """The PostgreSQL DSN of scripts/services.sh, once it answers."""
    import asyncpg

    dsn = database_url()
    if not dsn:
        unavailable("DB", "no DATABASE_URL (environment or the env file of scripts/services.sh start)")

    async def ping() -> None:
        conn = await asyncpg.connect(dsn, timeout=3)
        await conn.close()

    try:
        asyncio.run(ping())
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable("DB", f"PostgreSQL unreachable ({exc!r}); start it with scripts/services.sh start")
    return dsn


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis URL of scripts/services.sh, once it answers."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    url = redis_setting()
    if not url:
        unavailable("DB", "no REDIS_URL (environment or the env file of scripts/services.sh start)")

    async def ping() -> None:
        r = aioredis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            await r.ping()
        finally:
            await r.aclose()

    try:
        asyncio.run(ping())
    except (OSError, RedisError) as exc:
        unavailable("DB", f"Redis unreachable ({exc!r}); start it with scripts/services.sh start")
    return url


@pytest.fixture(scope="module")
def migrated_db(base_dsn: str) -> Iterator[str]:
    """A throw-away database with the one migration tree's schema (call history, console), for this module."""
    with throwaway_database("voxpulse_test") as dsn:
        yield dsn
