"""Call history in PostgreSQL (asyncpg), per-call sessions in Redis, zero-loss degradation.

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

from telemetry.history.cli import register_cli
from telemetry.history.logger import CallLogger, LoggerStats, Mode
from telemetry.history.records import CallEnded, CallStarted, Record, ToolCallRecord, TurnRecord
from telemetry.history.sanitize import RejectedRecord, clean_text, to_jsonable
from telemetry.history.schema import (
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
    "clean_text",
    "ensure_partitions",
    "instrument",
    "load_migrations",
    "migrate",
    "recent_calls",
    "refresh_daily_stats",
    "register_cli",
    "to_jsonable",
]


def instrument(tracer_provider: TracerProvider | None = None) -> None:
    """Turn on the asyncpg and Redis instrumentors (idempotent): database spans for the writer's
    batches and Redis spans for sessions/buffer."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    pg = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not pg.is_instrumented_by_opentelemetry:
        pg.instrument(tracer_provider=tracer_provider)
    rd = RedisInstrumentor()
    if not rd.is_instrumented_by_opentelemetry:
        rd.instrument(tracer_provider=tracer_provider)
