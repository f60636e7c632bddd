"""Everything the console needs in the database: the call history's schema, then the console's own
migrations (``voxpulse_console/migrations``, recorded in ``console_schema_migrations``: alerts_history,
the live feed's NOTIFY triggers, the calls list's indexes). See :func:`voxpulse_console.alert_receiver.migrate`."""

from __future__ import annotations

from typing import Any

__all__ = ["migrate_console"]


async def migrate_console(conn: Any) -> list[int]:
    """Apply the history's and the console's pending migrations through ``conn`` (an asyncpg
    connection or pool, or a DSN). Returns the console versions applied now."""
    from voxpulse_console.alert_receiver import migrate

    return await migrate(conn)
