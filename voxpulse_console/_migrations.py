"""The console's own schema additions (``voxpulse_console/migrations/NNNN_name.sql``).

They sit on top of the call history's schema (:func:`telemetry.history.migrate`, applied first) and
are tracked in their own table, ``voxpulse_console_migrations``, so the library's and the console's
version numbers never collide. Idempotent and safe to run from several processes at once (an
advisory lock).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

__all__ = ["ConsoleMigration", "load_console_migrations", "migrate_console"]

log = logging.getLogger("voxpulse.console.migrations")

_LOCK_KEY: Final = 0x566F7843  # "VoxC"
_NAME_RE: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class ConsoleMigration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]


def load_console_migrations() -> list[ConsoleMigration]:
    out = []
    for entry in resources.files("voxpulse_console").joinpath("migrations").iterdir():
        m = _NAME_RE.match(entry.name)
        if m:
            out.append(ConsoleMigration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda x: x.version)
    return out


async def migrate_console(conn: Any) -> list[int]:
    """Apply the history's migrations, then the console's pending ones. Returns the console
    versions applied now. ``conn``: an asyncpg connection."""
    from telemetry.history import migrate

    await migrate(conn)
    applied: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS voxpulse_console_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM voxpulse_console_migrations")}
        for mig in load_console_migrations():
            if mig.version in done:
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO voxpulse_console_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    mig.version, mig.name, mig.checksum,
                )
            applied.append(mig.version)
            log.info("applied console migration %04d_%s", mig.version, mig.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied
