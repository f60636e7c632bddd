"""Interruptions both ways, from the session's speaking states.

- **caller** (a barge-in): the caller starts speaking while the agent speaks. How fast the agent
  yields is the time from the caller's first word to the agent's audio stopping
  (``voice.interruption.yield_time``); an agent that never stops within the caller's speech did
  not yield (no time is recorded, the event says ``yielded=false``).
- **agent**: the agent starts speaking while the caller still speaks (it talked over the caller).
- A **false** interruption is a barge-in that LiveKit resumed from (``agent_false_interruption``:
  noise or a backchannel, not a turn); it is counted again with kind ``false_interruption``, so
  the real barge-ins are ``interruption`` minus ``false_interruption``.

Each is an ``interruption`` event on the caller's turn it belongs to (a barge-in: the turn the
caller's words over the answer begin; the agent talking over the caller: the caller's turn it talked
over), ``interruption_yielded`` with the yield time on the same turn, and a point of
``voice.interruptions{voice.interruption.direction, voice.interruption.kind}`` with an exemplar to
that turn. The tracker only reads the clock values it is given, so a test drives it directly.
"""

from __future__ import annotations

from typing import Final

from opentelemetry import trace
from opentelemetry.trace import Span

from telemetry import metrics as _metrics
from telemetry.semconv import Attr, EventName

__all__ = ["INTERRUPTION_EVENT", "Interruptions"]

INTERRUPTION_EVENT: Final = EventName.INTERRUPTION


class Interruptions:
    """Counts and times the interruptions of one session (see the module docstring)."""

    def __init__(self) -> None:
        self.agent_speaking = False
        self.user_speaking = False
        self._barge_at: float | None = None  # a barge-in the agent has not yielded to yet
        self.counts: dict[tuple[str, str], int] = {}

    def user_started(self, at: float, span: Span | None) -> None:
        self.user_speaking = True
        if self.agent_speaking and span is not None:
            self._barge_at = at
            self._record(span, "caller", "interruption", {})

    def user_stopped(self, at: float, span: Span | None) -> None:
        self.user_speaking = False
        barge_at, self._barge_at = self._barge_at, None
        if barge_at is not None and self.agent_speaking and span is not None:
            # the agent talked through the whole barge-in: it did not yield
            span.add_event(EventName.INTERRUPTION_NOT_YIELDED, {Attr.INTERRUPTION_DIRECTION: "caller"},
                           timestamp=int(at * 1e9))

    def agent_started(self, at: float, span: Span | None) -> None:
        self.agent_speaking = True
        if self.user_speaking and span is not None and self._barge_at is None:
            self._record(span, "agent", "interruption", {})

    def agent_stopped(self, at: float, span: Span | None) -> None:
        """The agent's audio stopped; ``span`` is the turn open now (after a barge-in: the caller's)."""
        self.agent_speaking = False
        barge_at, self._barge_at = self._barge_at, None
        if barge_at is not None and span is not None:
            took = max(at - barge_at, 0.0)
            span.add_event(EventName.INTERRUPTION_YIELDED, {
                Attr.INTERRUPTION_DIRECTION: "caller", Attr.INTERRUPTION_YIELD_TIME: round(took, 4),
            }, timestamp=int(at * 1e9))
            with trace.use_span(span, end_on_exit=False):
                _metrics._interruption_yield(took)

    def false_interruption(self, at: float, span: Span | None, *, resumed: bool) -> None:
        if span is not None:
            self._record(span, "caller", "false_interruption", {Attr.INTERRUPTION_RESUMED: resumed})

    def _record(self, span: Span, direction: str, kind: str, extra: dict[str, bool]) -> None:
        key = (direction, kind)
        self.counts[key] = self.counts.get(key, 0) + 1
        span.add_event(INTERRUPTION_EVENT, {Attr.INTERRUPTION_DIRECTION: direction, Attr.INTERRUPTION_KIND: kind,
                                            **extra})
        with trace.use_span(span, end_on_exit=False):  # the exemplar opens the interrupted turn
            _metrics._interruption(direction, kind)
