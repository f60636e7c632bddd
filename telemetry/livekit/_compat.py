"""What LiveKit Agents 1.8 does not offer publicly, read in one place (only read, never written)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from livekit.agents import AgentSession
    from livekit.agents.voice.events import EventTypes

__all__ = ["base_emitter_on", "session_started"]


def session_started(session: AgentSession[Any]) -> bool:
    """Whether ``session.start()`` ran (LiveKit 1.8 has no public flag: its ``_started``, only read)."""
    return bool(getattr(session, "_started", True))


def base_emitter_on(session: AgentSession[Any]) -> Callable[[EventTypes, Callable[[Any], None]], object]:
    """``EventEmitter.on`` of the session, bypassing AgentSession's deprecation-logging override."""
    for cls in type(session).__mro__[1:]:
        fn = cls.__dict__.get("on")
        if fn is not None:
            return lambda event, cb: fn(session, event, cb)
    return session.on
