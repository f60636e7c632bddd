"""A turn of the call: its state while it is open, what is measured for it, and the glue from LiveKit's
metrics to its measures.

* :class:`_Turn`: one caller utterance and the agent's answer while the turn is open (its span, the
  timestamps of both ends of its time to first word, the texts, tool calls, LiveKit's checked delays);
* :class:`MeasuredTurn`: what is kept of a closed turn (``SessionInstrumentation.turns``);
* the turn's measures from LiveKit's metrics, each duration through the data-quality guard
  (``telemetry._quality``): its time to first word (:func:`complete_ttfw`; slow from
  :func:`slow_turn_threshold_s` on), its ``speech_to_text`` span (:func:`stt_span`), the answer's
  metrics (:func:`reply_metrics`), the start and first token/audio of each LLM/TTS request
  (:func:`request_marks`), and its anatomy, the time to first word in parts (:func:`turn_anatomy`,
  computed by ``telemetry.livekit._anatomy``).

``_session.SessionInstrumentation`` owns the open turn and calls these from its event handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from telemetry import _env, _quality
from telemetry import metrics as _metrics
from telemetry._errors import internal_error
from telemetry.livekit._anatomy import Segment, TurnMarks, anatomy, named_share
from telemetry.semconv import TTFW_OBJECTIVE_S, Attr, SpanName, Stage, TurnSegment

if TYPE_CHECKING:
    from telemetry.livekit._budgets import BudgetWatch
    from telemetry.livekit._greeting import Greeting
    from telemetry.livekit._ttfw import _TtfwProbe

__all__ = [
    "MeasuredTurn", "SoFar", "complete_ttfw", "measured", "reply_metrics", "request_marks", "slow_turn_threshold_s",
    "stt_span", "turn_anatomy",
]

# the call's duration so far at LiveKit's timestamp (SessionInstrumentation._so_far): the bound
# no duration measured in the call can exceed
SoFar = Callable[[float | None], float | None]


def _ns(t: float) -> int:
    return int(t * 1_000_000_000)


def _provider_model(component: object) -> tuple[str, str]:
    """(provider, model) of an STT, LLM or TTS (a plugin's, or a fallback adapter's)."""
    if component is None:
        return "unknown", "unknown"
    return str(getattr(component, "provider", "unknown")), str(getattr(component, "model", "unknown"))


@dataclass
class _Turn:
    index: int
    span: Span
    started_at: float
    user_text: str = ""
    stopped_speaking_at: float | None = None
    started_speaking_at: float | None = None
    ttfw_s: float | None = None
    agent_started_at: float | None = None
    agent_text: str = ""
    answered: bool = False
    interrupted: bool = False
    tool_calls: int = 0
    tool_names: list[str] = field(default_factory=list)
    stt_done: bool = False
    idle_at: float | None = None  # the agent went back to listening after answering
    provider_failed: bool = False  # an STT/LLM/TTS error the framework could not recover from
    heard_end: float | None = None  # start of TTFW: the caller's speech end as the agent knows it
    ttfw_method: str = "vad"
    audible_out_at: float | None = None  # end of TTFW: the first audible frame reaches the room
    ttfw_agent_s: float | None = None
    ttfw_network_s: float | None = None
    ttfw_start: float | None = None  # heard_end, or the VAD's end of speech without an audible frame
    vad_end_at: float | None = None  # the VAD's end-of-speech event
    user_delays: dict[str, float] = field(default_factory=dict)  # LiveKit's checked user-message delays
    reply_metrics: dict[str, float] | None = None  # the first answer's checked metrics
    tool_spans: list[tuple[float, float]] = field(default_factory=list)
    llm_requests: list[tuple[float, float]] = field(default_factory=list)  # (start, first token)
    tts_requests: list[tuple[float, float]] = field(default_factory=list)  # (start, first audio)


@dataclass(frozen=True, slots=True)
class MeasuredTurn:
    """What the integration measured for one turn (``SessionInstrumentation.turns``: for the
    simulator, tests and the CLI). Not to be confused with ``telemetry.history.TurnRecord``, a row
    of the call history."""

    index: int
    ttfw_s: float | None
    user_text: str
    agent_text: str
    tool_calls: tuple[str, ...]
    stopped_speaking_at: float | None
    agent_started_at: float | None
    ttfw_agent_s: float | None = None  # measured at the agent (voice.ttfw.agent_ms)
    ttfw_network_s: float | None = None  # estimated media latency both ways (voice.ttfw.network_ms)
    ttfw_method: str | None = None  # voice.ttfw.method
    heard_end: float | None = None  # when the caller's speech ended, as the agent knows it
    segments: tuple[Segment, ...] = ()  # the anatomy of ttfw_s (voice.turn.segment.*), summing to it


def measured(t: _Turn, segments: tuple[Segment, ...]) -> MeasuredTurn:
    """What is kept of the closed turn ``t``."""
    return MeasuredTurn(
        index=t.index, ttfw_s=t.ttfw_s, user_text=t.user_text, agent_text=t.agent_text,
        tool_calls=tuple(t.tool_names), stopped_speaking_at=t.stopped_speaking_at,
        agent_started_at=t.agent_started_at, ttfw_agent_s=t.ttfw_agent_s,
        ttfw_network_s=t.ttfw_network_s, ttfw_method=t.ttfw_method if t.ttfw_s is not None else None,
        heard_end=t.heard_end, segments=segments,
    )


def slow_turn_threshold_s() -> float:
    """The slow-turn threshold (``VOXPULSE_TTFW_OBJECTIVE_S``, default the time-to-first-word
    objective), read when a session is instrumented; an invalid value is contained (the default then):
    it must not break a call."""
    try:
        return _env.number(_env.VOXPULSE_TTFW_OBJECTIVE_S)
    except Exception as exc:  # TelemetryConfigError
        internal_error("livekit.slow_turn_threshold", exc)
        return TTFW_OBJECTIVE_S


def complete_ttfw(
    t: _Turn, *, last_user_stop: float | None, probe: _TtfwProbe, slow_turn_s: float, budgets: BudgetWatch,
    so_far: SoFar,
) -> None:
    """Sets the turn's time to first word once both ends are known (once per turn)."""
    if t.ttfw_s is not None or t.audible_out_at is None:
        return
    start = t.heard_end if t.heard_end is not None else (t.stopped_speaking_at or last_user_stop)
    if start is None:
        return
    agent_s = _quality.interval("livekit.ttfw", start, t.audible_out_at,
                                within_s=so_far(t.audible_out_at), span=t.span)
    if agent_s is None:
        return  # a data error: no time to first word for this turn
    network_s = probe.network_s() if probe.measures_output else 0.0
    ttfw = agent_s + network_s
    t.ttfw_s, t.ttfw_agent_s, t.ttfw_network_s, t.ttfw_start = ttfw, agent_s, network_s, start
    t.span.set_attributes({
        Attr.TURN_TTFW: round(ttfw, 4),
        Attr.TURN_TTFW_AT_AGENT: round(agent_s, 4),
        Attr.TURN_MEDIA_LATENCY: round(network_s, 4),
        Attr.TURN_TTFW_METHOD: t.ttfw_method,
        Attr.TURN_SLOW: ttfw >= slow_turn_s,
    })
    with trace.use_span(t.span, end_on_exit=False):  # exemplar -> this turn
        _metrics.record_time_to_first_word(ttfw)
    budgets.check_turn(t.span, t.index, ttfw)


def stt_span(
    t: _Turn, delay: float | None, created_at: float, *, stt: object, call_id: str, tracer: Tracer, so_far: SoFar,
) -> None:
    """One ``speech_to_text`` span per user turn: end of speech -> final transcript
    (``delay``: LiveKit's transcription delay, checked; ``stt``: the session's STT)."""
    provider, model = _provider_model(stt)
    stop = t.stopped_speaking_at
    if stop is None:
        stop = created_at
    final_at = stop + delay if delay is not None else created_at
    start = min(stop, final_at)
    speech_s = _quality.interval("livekit.user.speaking", t.started_speaking_at or stop, stop,
                                 within_s=so_far(created_at), span=t.span)
    attrs: dict[str, AttributeValue] = {
        Attr.CALL_ID: call_id,
        Attr.STAGE: Stage.STT.value,
        Attr.PROVIDER: provider,
        Attr.MODEL: model,
        Attr.STT_TRANSCRIPT: t.user_text,
        Attr.TURN_INDEX: t.index,
    }
    if speech_s is not None:
        attrs[Attr.STT_AUDIO_SECONDS] = round(speech_s, 3)
    if delay is not None:
        attrs[Attr.STREAM_TTFC] = round(delay, 4)
    span = tracer.start_span(
        SpanName.STT, context=trace.set_span_in_context(t.span), kind=SpanKind.CLIENT,
        attributes=attrs, start_time=_ns(start),
    )
    span.end(end_time=_ns(max(final_at, start)))
    if delay is not None:
        with trace.use_span(span, end_on_exit=False):
            _metrics.record_time_to_first_chunk(Stage.STT, delay, provider=provider, model=model)


def reply_metrics(t: _Turn, m: Mapping[str, Any], so_far: SoFar) -> dict[str, float]:
    """The answer's metrics the anatomy reads, each duration through the data-quality guard."""
    raw = TurnMarks.reply_metrics(m)
    out: dict[str, float] = {}
    for key, value in raw.items():
        if key == "started_speaking_at":
            out[key] = value
            continue
        checked = _quality.duration(f"livekit.{key}", value, within_s=so_far(raw.get("started_speaking_at")),
                                    span=t.span)
        if checked is not None:
            out[key] = checked
    return out


def request_marks(
    into: _Turn | Greeting, stage: Stage, mtr: Any, first_s: float, so_far: SoFar, span: Span,
) -> None:
    """(start, first token/audio) of one LLM or TTS request on the agent's clock, for the anatomy of
    a turn or the greeting: LiveKit stamps the metrics when the request ended (``timestamp``) with
    its length."""
    took = _quality.duration(f"livekit.{stage.value}.duration", getattr(mtr, "duration", None),
                             within_s=so_far(None), span=span)
    ended = getattr(mtr, "timestamp", None)
    if took is None or not isinstance(ended, int | float):
        return
    start = float(ended) - took
    (into.llm_requests if stage is Stage.LLM else into.tts_requests).append((start, start + first_s))


def turn_anatomy(t: _Turn, budgets: BudgetWatch) -> tuple[Segment, ...]:
    """The turn's time to first word in parts (telemetry.livekit._anatomy), on its span and in the
    segment histogram (exemplars to the turn); the segment budgets checked."""
    if t.ttfw_s is None or t.ttfw_start is None or t.audible_out_at is None:
        return ()
    net = t.ttfw_network_s or 0.0
    reply = t.reply_metrics or {}
    marks = TurnMarks(
        heard_end=t.ttfw_start, audible_out=t.audible_out_at, transport_in_s=net / 2, transport_out_s=net / 2,
        vad_end_at=t.vad_end_at, stopped_speaking_at=t.stopped_speaking_at,
        transcription_delay=t.user_delays.get("transcription_delay"),
        end_of_turn_delay=t.user_delays.get("end_of_turn_delay"),
        on_user_turn_completed_delay=t.user_delays.get("on_user_turn_completed_delay"),
        tools=[(a, b) for a, b in t.tool_spans if a < t.audible_out_at],
        started_speaking_at=reply.get("started_speaking_at", t.agent_started_at),
        playback_latency=reply.get("playback_latency"),
        tts_node_ttfb=reply.get("tts_node_ttfb"), llm_node_ttfs=reply.get("llm_node_ttfs"),
        llm_node_ttft=reply.get("llm_node_ttft"), llm_requests=t.llm_requests, tts_requests=t.tts_requests,
    )
    overlapped: list[TurnSegment] = []
    parts = tuple(anatomy(marks, overlapped=overlapped))
    budgets.check_segments(t.span, t.index, {p.segment: p.seconds for p in parts})
    attrs: dict[str, AttributeValue] = {s.segment.attribute: round(s.seconds, 6) for s in parts}
    attrs[Attr.TURN_NAMED_SHARE] = round(named_share(parts), 4)
    if overlapped:
        attrs[Attr.TURN_OVERLAPPED] = [s.value for s in overlapped]
    t.span.set_attributes(attrs)
    with trace.use_span(t.span, end_on_exit=False):  # exemplars -> this turn
        for part in parts:
            _metrics._turn_segment(part.segment, part.seconds)
    return parts
