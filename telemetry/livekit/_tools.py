"""The agent's tool calls in one call: counted on their turn, put in the call history, and watched for
anomalies.

:class:`ToolCalls` takes LiveKit's ``function_tools_executed`` events (``_session`` dispatches them):
each call is counted on its turn (``voice.turn.tool_calls``) with its time span (for the turn's
anatomy) and written to the call history with its raw arguments and result. An anomalous call -- a
tool the agent does not have, or the same tool called :data:`_REPEATED_TOOL_THRESHOLD` times in one
turn -- is a ``tool_anomaly`` event and attribute on the turn's span (else the call's) and one on
``voice.tool.anomalies`` (a made-up tool name is labelled ``_OTHER`` there, the metric's labels stay
bounded; the real name stays on the span event).
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace

from telemetry import _quality
from telemetry import metrics as _metrics
from telemetry._errors import internal_errors
from telemetry.calls import CallScope
from telemetry.livekit._turns import SoFar, _Turn
from telemetry.semconv import OTHER, Attr

if TYPE_CHECKING:
    from livekit.agents import AgentSession
    from livekit.agents.voice.events import FunctionToolsExecutedEvent

    from telemetry.livekit._calllog import CallLog

__all__ = ["ToolCalls"]

_logger = logging.getLogger("voxpulse.livekit")

# repeated calls of one tool within one turn that look like enumeration / data dumping
_REPEATED_TOOL_THRESHOLD: Final = 4


class ToolCalls:
    """The tool calls of the call of ``scope`` made by ``session``'s agent."""

    def __init__(self, session: AgentSession[Any], scope: CallScope) -> None:
        self.session = session
        self.scope = scope
        self.anomalies: list[tuple[str, str]] = []  # (tool, reason)
        self._known_tools: set[str] | None = None

    def executed(
        self, ev: FunctionToolsExecutedEvent, t: _Turn | None, call_log: CallLog | None, so_far: SoFar,
    ) -> None:
        """LiveKit ran the tools of ``ev`` in the open turn ``t`` (None: outside a turn)."""
        with internal_errors("livekit.tools"):
            known = self._tool_names()
            for fc, out in ev.zipped():
                name = str(fc.name)
                if t is not None:
                    t.tool_calls += 1
                    t.tool_names.append(name)
                    began = float(getattr(fc, "created_at", 0.0) or 0.0)
                    done = float(getattr(out, "created_at", 0.0) or 0.0) if out is not None else 0.0
                    if began and done and 0 <= done - began <= (so_far(done) or math.inf):
                        t.tool_spans.append((began, done))
                    t.span.set_attribute(Attr.TURN_TOOL_CALLS, t.tool_calls)
                reason: str | None = None
                if known is not None and name not in known:
                    reason = "unknown_tool"
                elif t is not None and t.tool_names.count(name) == _REPEATED_TOOL_THRESHOLD:
                    reason = "repeated"
                if reason is not None:
                    # the metric label stays bounded: a name the model made up is "_OTHER"
                    self._anomaly(name, reason, t, label=name if known is None or name in known else OTHER)
                if call_log is not None:
                    success = out is not None and not bool(getattr(out, "is_error", False))
                    started = float(getattr(fc, "created_at", 0.0) or 0.0)
                    ended = float(getattr(out, "created_at", 0.0) or 0.0) if out is not None else 0.0
                    took = _quality.interval(
                        "livekit.tool.duration", started, ended, within_s=so_far(ended),
                        span=t.span if t is not None else self.scope.span,
                    ) if started and ended else None
                    # raw values: the call history is where they stay searchable (it masks its logs)
                    with internal_errors("livekit.call_log.tool"):
                        call_log.log_tool_call(
                            self.scope.call_id, name, _loads(str(fc.arguments or "{}")),
                            _loads(str(getattr(out, "output", "") or "")), success=success,
                            duration_ms=round(took * 1000, 1) if took is not None else None,
                            ts=started or time.time(), turn_index=t.index if t is not None else None,
                            tool_call_id=str(getattr(fc, "call_id", "") or "") or None,
                            error=None if success else str(getattr(out, "output", ""))[:500],
                        )

    def _anomaly(self, tool: str, reason: str, t: _Turn | None, *, label: str) -> None:
        self.anomalies.append((tool, reason))
        _logger.warning("anomalous tool call", extra={"call_id": self.scope.call_id, "tool": tool, "reason": reason})
        target = t.span if t is not None else self.scope.span
        target.add_event("tool_anomaly", {Attr.TOOL_NAME: tool, Attr.TOOL_ANOMALY: reason})
        target.set_attribute(Attr.TOOL_ANOMALY, reason)
        with trace.use_span(target, end_on_exit=False):
            _metrics.tool_anomaly(label, reason)

    def _tool_names(self) -> set[str] | None:
        """The current agent's tools (the last ones seen when there is none now; None before any)."""
        agent = getattr(self.session, "current_agent", None)
        if agent is None:
            return self._known_tools
        names: set[str] = set()
        for tool in getattr(agent, "tools", ()) or ():
            info = getattr(tool, "info", None)
            name = getattr(info, "name", None) or getattr(tool, "id", None)
            if name:
                names.add(str(name))
        self._known_tools = names
        return names


def _loads(text: str) -> Any:  # (JSON: any shape)
    """A tool's JSON arguments/result as data; plain text stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
