"""The greeting: the agent's first speech after the caller joined, measured like a turn.

A caller who joins waits for the agent's first word as they wait after each of their own lines. The
wait starts when the caller joined the room (the participant's ``joined_at``, stamped by the LiveKit
server on its clock) and ends at the greeting's first word at the caller's ear (the probe's first
audible frame into the room, plus the media path out). The join is on another process's clock: it is
used only when it is not later than the moment the agent learned of the caller
(``telemetry._quality.same_clock``); otherwise, or when the caller joined more than
:data:`SETUP_MAX_S` before the agent's session started (a caller who was in the room before this job,
not waiting for it), the wait starts at the session's start (``voice.greeting.start``: ``joined`` or
``session``).

Its parts (``telemetry.livekit._anatomy.greeting_anatomy``): ``call_setup`` until the agent's
session started, then the reply's parts as in a turn. All of it goes on a ``greeting`` span under the
call (``voice.greeting.time_to_first_word``, the parts as ``voice.turn.segment.<part>``), in the
``voice.greeting.*`` histograms, and in the console's lane before the first turn.

Only a greeting spoken before the caller's first turn is one: an agent that waits for the caller to
speak first has none.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from telemetry import _quality
from telemetry import metrics as _metrics
from telemetry.livekit._anatomy import GreetingMarks, Segment, TurnMarks, greeting_anatomy, named_share
from telemetry.semconv import Attr, SpanName

if TYPE_CHECKING:
    from livekit.agents import AgentSession
    from opentelemetry.trace import Span

    from telemetry.livekit._turns import SoFar

__all__ = ["SETUP_MAX_S", "Greeting"]

# A caller who joined this long before the agent's session started was in the room before the job
# (a web client, a test room): the greeting's wait starts at the session's start.
SETUP_MAX_S: Final = 30.0


def _ns(t: float) -> int:
    return int(t * 1_000_000_000)


@dataclass
class Greeting:
    """The greeting of one call while it is measured (``SessionInstrumentation`` feeds it)."""

    session_started_at: float  # the instrumentation's entry (before ``session.start()``)
    joined_at: float | None = None  # the caller's join, checked against the agent's clock
    ready_at: float | None = None  # the agent's session started: its first state change
    reply: dict[str, float] | None = None  # the greeting message's checked metrics
    llm_requests: list[tuple[float, float]] = field(default_factory=list)
    tts_requests: list[tuple[float, float]] = field(default_factory=list)
    audible_out_at: float | None = None  # the greeting's first audible frame into the room
    transport_out_s: float = 0.0
    method: str = "audio"
    done: bool = False  # recorded, or over (the caller spoke first, the call ended)
    segments: tuple[Segment, ...] = ()
    ttfw_s: float | None = None

    @property
    def pending(self) -> bool:
        """Still collecting: not recorded, the call and the caller's first line still ahead."""
        return not self.done

    @property
    def listening(self) -> bool:
        """Waiting for the greeting's first audible frame."""
        return not self.done and self.audible_out_at is None

    @property
    def complete(self) -> bool:
        """Heard, and its message's metrics arrived (LiveKit adds the message once it was spoken)."""
        return self.audible_out_at is not None and self.reply is not None

    def session_ready(self, at: float, session: AgentSession[Any], span: Span) -> None:
        """The agent's session changed state for the first time: it runs; the caller is known."""
        if self.ready_at is not None:
            return
        self.ready_at = at
        joined = _joined_at(session)
        seen = time.time()
        if joined is not None and _quality.same_clock("livekit.participant.joined_at", joined, seen, span=span):
            self.joined_at = joined

    def reply_metrics(self, m: Mapping[str, Any], so_far: float | None, span: Span) -> None:
        """The greeting message's metrics (the first assistant message before any caller turn)."""
        if self.reply is not None or not m.get("started_speaking_at"):
            return
        out: dict[str, float] = {}
        for key, value in TurnMarks.reply_metrics(m).items():
            checked = value if key == "started_speaking_at" else _quality.duration(
                f"livekit.{key}", value, within_s=so_far, span=span)
            if checked is not None:
                out[key] = checked
        self.reply = out

    def heard(self, audible_out: float, transport_out_s: float, method: str) -> None:
        """The greeting's first audible frame went into the room at ``audible_out``."""
        if self.listening:
            self.audible_out_at, self.transport_out_s, self.method = audible_out, transport_out_s, method

    def close(self, *, call_span: Span, call_id: str, tracer: Tracer, so_far: SoFar) -> None:
        """Records the greeting, once: its span, its attributes and histograms (nothing when no greeting
        was heard)."""
        if self.done:
            return
        self.done = True
        if self.audible_out_at is None:
            return
        audible_out, transport_out_s = self.audible_out_at, self.transport_out_s
        start, how = self.session_started_at, "session"
        if self.joined_at is not None and self.joined_at >= self.session_started_at - SETUP_MAX_S:
            start, how = self.joined_at, "joined"
        waited = _quality.interval("livekit.greeting", start, audible_out, within_s=so_far(audible_out),
                                   span=call_span)
        if waited is None:
            return
        reply = self.reply or {}
        marks = GreetingMarks(
            start=start, audible_out=audible_out, transport_out_s=transport_out_s,
            ready_at=self.ready_at,
            started_speaking_at=reply.get("started_speaking_at"), playback_latency=reply.get("playback_latency"),
            tts_node_ttfb=reply.get("tts_node_ttfb"), llm_node_ttfs=reply.get("llm_node_ttfs"),
            llm_node_ttft=reply.get("llm_node_ttft"), llm_requests=self.llm_requests, tts_requests=self.tts_requests,
        )
        self.segments = tuple(greeting_anatomy(marks))
        self.ttfw_s = waited + transport_out_s
        attrs: dict[str, AttributeValue] = {
            Attr.CALL_ID: call_id, Attr.GREETING_TTFW: round(self.ttfw_s, 4), Attr.GREETING_START: how,
            Attr.TURN_TTFW_METHOD: self.method, Attr.TURN_NAMED_SHARE: round(named_share(self.segments), 4),
        }
        attrs.update({s.segment.attribute: round(s.seconds, 6) for s in self.segments})
        span = tracer.start_span(SpanName.GREETING, context=trace.set_span_in_context(call_span),
                                 kind=SpanKind.INTERNAL, attributes=attrs, start_time=_ns(start))
        with trace.use_span(span, end_on_exit=False):  # exemplars -> the greeting
            _metrics._greeting(self.ttfw_s, ((s.segment, s.seconds) for s in self.segments))
        span.end(end_time=_ns(audible_out + transport_out_s))


def _joined_at(session: AgentSession[Any]) -> float | None:
    """The caller's join (seconds since the epoch, LiveKit's clock), or None without a room."""
    try:
        participant = session.room_io.linked_participant
    except Exception:  # no RoomIO (offline) or not linked yet
        return None
    joined = getattr(participant, "joined_at", None)
    return joined.timestamp() if isinstance(joined, dt.datetime) else None
