"""The real PostgreSQL and Redis that scripts/services.sh runs, and throw-away databases on them.

A setting comes from the environment (scripts/test.sh loads the env file), else from the env file
scripts/services.sh writes (``$VOXPULSE_STATE_DIR/stack/services.env``, default ``.voxpulse/``), so a
plain ``pytest`` after ``scripts/services.sh start`` finds them too.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .repo import ROOT
from .require import unavailable

__all__ = ["database_url", "env_file", "redis_url", "setting", "state_dir", "throwaway_database", "with_database"]


def state_dir() -> Path:
    """``$VOXPULSE_STATE_DIR`` (relative to the repository), default ``.voxpulse``."""
    state = Path(os.environ.get("VOXPULSE_STATE_DIR") or ROOT / ".voxpulse")
    return state if state.is_absolute() else ROOT / state


def env_file(path: Path | None = None) -> dict[str, str]:
    """``KEY=value`` lines of scripts/services.sh's env file (``path``: another state dir's)."""
    f = path or state_dir() / "stack" / "services.env"
    out: dict[str, str] = {}
    if f.is_file():
        for line in f.read_text(encoding="utf-8").splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                out[key.strip()] = value.strip()
    return out


def setting(*names: str) -> str | None:
    """The first of ``names`` set in the environment, else in the env file."""
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    saved = env_file()
    return next((saved[n] for n in names if saved.get(n)), None)


def database_url() -> str | None:
    return setting("VOXPULSE_DATABASE_URL", "DATABASE_URL")


def redis_url() -> str | None:
    return setting("VOXPULSE_REDIS_URL", "REDIS_URL")


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name``."""
    u = urlsplit(dsn)
    return urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def _where(dsn: str) -> str:
    u = urlsplit(dsn)
    return f"PostgreSQL at {u.hostname}:{u.port}"


async def drop_database(conn: Any, name: str) -> None:
    """Drop the database ``name`` from ``conn`` (an asyncpg connection to another database): first
    this role's own sessions on it (a test's leftovers, each ended and waited for), then the database.
    Not ``WITH (FORCE)``: FORCE must be allowed to end every session on the database, and an
    autovacuum worker busy there belongs to no role the tests' user may end, so PostgreSQL refuses
    the drop ("must be a member of the role whose process is being terminated"); a plain DROP stops
    autovacuum there itself and waits for it."""
    await conn.execute("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                       "WHERE datname = $1 AND pid <> pg_backend_pid() AND usename = current_user", name)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@contextmanager
def throwaway_database(prefix: str, *, migrate: bool = True) -> Iterator[str]:
    """A new database on the real PostgreSQL, dropped afterwards; yields its DSN. Migrated to the
    database's schema (the one migration tree: the call history and the console's tables) unless
    ``migrate=False``. Without a reachable server the test is skipped, or fails under
    ``VOXPULSE_REQUIRE_DB``."""
    import asyncpg

    base = database_url()
    if not base:
        unavailable("DB", "no DATABASE_URL (environment or the env file of scripts/services.sh start)")
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(base, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(base, timeout=5)
        try:
            await drop_database(conn, name)
        finally:
            await conn.close()

    try:
        asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable("DB", f"{_where(base)} unusable ({exc!r}); start it with scripts/services.sh start")
    dsn = with_database(base, name)
    try:
        if migrate:
            from telemetry.history import migrate as run_migrations

            asyncio.run(run_migrations(dsn))
        yield dsn
    finally:
        asyncio.run(drop())
