"""Call history in PostgreSQL (asyncpg), per-call sessions in Redis, zero-loss degradation.

Needs the ``history`` extra (``pip install 'voxpulse-otel[history]'``).

    logger = CallLogger.from_env()          # DATABASE_URL, REDIS_URL
    await logger.start()
    logger.log_call_start("room-42", phone="+380501234567", room="room-42")
    logger.log_turn("room-42", 0, "user", "Добрий день", stt_ms=180.0)
    logger.log_tool_call("room-42", "find_tyres", {"size": "205/55 R16"}, {"found": 3}, duration_ms=240.0)
    logger.log_call_end("room-42", outcome="resolved_by_bot", cost_usd=0.041)
    await logger.aclose(timeout=5.0)

See docs/call-history.md for the schema, partitions, degradation modes and trace linkage.
"""

from opentelemetry.trace import TracerProvider

from telemetry import _env
from telemetry._instrumentation import instrument_libraries
from telemetry.history.commands import register_cli
from telemetry.history.logger import CallLogger, LoggerStats, Mode
from telemetry.history.records import CallEnded, CallStarted, Record, ToolCallRecord, TurnRecord, to_datetime
from telemetry.history.sanitize import RejectedRecord, clean_text, to_jsonable
from telemetry.history.schema import (
    apply_migrations,
    ensure_partitions,
    load_migrations,
    migrate,
    recent_calls,
    refresh_daily_stats,
)
from telemetry.history.sessions import SessionStore

__all__ = [
    "CallEnded",
    "CallLogger",
    "CallStarted",
    "LoggerStats",
    "Mode",
    "Record",
    "RejectedRecord",
    "SessionStore",
    "ToolCallRecord",
    "TurnRecord",
    "apply_migrations",
    "clean_text",
    "database_url",
    "ensure_partitions",
    "instrument",
    "load_migrations",
    "migrate",
    "recent_calls",
    "redis_url",
    "refresh_daily_stats",
    "register_cli",
    "to_datetime",
    "to_jsonable",
]


def database_url(explicit: str | None = None) -> str | None:
    """The PostgreSQL DSN: ``explicit``, else ``VOXPULSE_DATABASE_URL``, else ``DATABASE_URL``, else None.
    The one lookup of it (the console's alerts receiver and CLI use it too)."""
    return _env.text(_env.DATABASE_URL, explicit)


def redis_url(explicit: str | None = None) -> str | None:
    """The Redis URL: ``explicit``, else ``VOXPULSE_REDIS_URL``, else ``REDIS_URL``, else None."""
    return _env.text(_env.REDIS_URL, explicit)


def instrument(tracer_provider: TracerProvider | None = None) -> None:
    """Turn on the asyncpg and Redis instrumentors: database spans for the writer's batches and
    Redis spans for sessions/buffer. ``configure()`` already does it; with no provider, instrumentors
    already on are left as they are."""
    instrument_libraries(tracer_provider)
