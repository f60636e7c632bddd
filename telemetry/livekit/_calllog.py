"""The call history of an instrumented call: what the integration feeds it (:class:`CallLog`), and the
``CallLogger`` it opens and closes for the call itself when a database is configured.

``telemetry.history`` is an optional extra that builds on this package: it is looked up at run time,
never imported at the top.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Protocol, runtime_checkable

from telemetry import _env
from telemetry._errors import internal_errors
from telemetry._state import STATE
from telemetry.calls import CallScope

__all__ = ["CallLog", "close_call_log", "open_call_log"]

_logger = logging.getLogger("voxpulse.livekit")


@runtime_checkable
class CallLog(Protocol):
    """What the integration feeds the call-history logger (``telemetry.history.CallLogger``
    implements it). Every method must return at once: the logger buffers and writes in the
    background. Exceptions are contained and logged."""

    def bind_call(self, scope: CallScope) -> None:
        """Logs the call's start now and its end from ``scope.on_end`` (outcome, cost, turns)."""

    def log_turn(
        self, call_id: str, turn_index: int, speaker: str, text: str, *, ts: float | None = None,
        stt_ms: float | None = None, llm_ms: float | None = None, tts_ms: float | None = None,
        ttfw_ms: float | None = None, interrupted: bool = False,
    ) -> bool: ...

    def log_tool_call(
        self, call_id: str, name: str, args: Any, result: Any, *, success: bool = True,
        duration_ms: float | None = None, ts: float | None = None, turn_index: int | None = None,
        tool_call_id: str | None = None, error: str | None = None,
    ) -> bool: ...


async def open_call_log() -> Any:  # a telemetry.history.CallLogger (the optional extra, imported late)
    """A started CallLogger for this call, when a database is configured (``DATABASE_URL``) and the
    history extra is installed, else None. Never blocks: the writer connects in the background; an
    unreachable database degrades to Redis, then memory."""
    if not _env.text(_env.DATABASE_URL):
        return None
    with internal_errors("livekit.call_log.open"):
        try:
            # the optional extra, looked up at run time (telemetry.history builds on this package)
            history = importlib.import_module("telemetry.history")
        except ImportError:
            _logger.warning("DATABASE_URL is set but the history extra is not installed: no call history")
            return None
        logger = history.CallLogger.from_env(agent_version=STATE.service_version)
        await logger.start()
        return logger
    return None


async def close_call_log(logger: Any) -> None:
    """Writes the call's records out (bounded: what is not written in time is buffered in Redis or
    counted as dropped) and closes ``logger``, one :func:`open_call_log` opened."""
    with internal_errors("livekit.call_log.close"):
        await logger.aclose(timeout=5.0)
