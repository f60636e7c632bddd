"""LiveKit Agents integration: the one module that knows LiveKit's internals.

One call instruments an ``AgentSession`` for one phone call::

    async with instrument_session(session, call_id=ctx.room.name) as call:
        await session.start(agent, room=ctx.room)
    # leaves when the session closed (hang-up, transfer, shutdown)

``configure()`` routes LiveKit Agents' own tracer into our provider (:func:`_route_tracer`) and the
tool decorators leave LiveKit's ``RunContext`` argument out of the recorded tool arguments; both
live here, so a LiveKit API change touches this one module.

What it does, per call (several concurrent sessions in one process never mix: every piece of state
lives on the :class:`SessionInstrumentation` of its session, and every span it creates names its
parent explicitly):

* opens the call scope (``telemetry.call``) with the call_id: given, else the job's room name,
  else generated. ``session.start()`` runs inside the scope, so LiveKit's own spans
  (``agent_session``, ``llm_request``, ``function_tool``, ``tts_request``, ...) join the call's trace
  (``telemetry.configure`` routes LiveKit's tracer to our provider) and carry call_id;
* a ``turn`` span per caller utterance and the agent's answer (``voice.turn.index``,
  ``voice.turn.time_to_first_word`` in seconds, tool-call count, the texts under PII keys);
* a ``speech_to_text`` span per user turn (LiveKit has none): from the end of the caller's speech
  to the final transcript, with provider, model and audio seconds;
* time to first word per turn, measured live: end of caller speech (the VAD-anchored
  ``stopped_speaking_at`` LiveKit puts on the user message) to the first agent audio frame (the
  sink's playback start, which flips the agent to "speaking");
* LiveKit's metric events -> ``voice.stage.time_to_first_chunk`` (LLM ttft, TTS ttfb, STT
  end-of-speech -> final transcript);
* usage and cost per call from a :class:`telemetry.pricing.PriceTable` (``call.add_cost`` per
  provider/model);
* anomalous tool calls (a tool the agent does not have; the same tool hammered in one turn) ->
  ``voice.tool.anomalies`` (a made-up tool name is labelled ``_OTHER`` there; the real name stays
  on the span event);
* the call outcome when the session closes (a transfer set earlier wins);
* the call-history logger, if given (:class:`CallLog`), fed with call start/end, turns and tool calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Protocol, runtime_checkable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from telemetry import metrics as _metrics
from telemetry._errors import internal_errors
from telemetry._state import STATE
from telemetry.calls import CallScope
from telemetry.decorators import _skip_framework_argument
from telemetry.pricing import DEFAULT_PRICES, PriceTable
from telemetry.redaction import ContentMode
from telemetry.semconv import OTHER, Attr, CallOutcome, SpanName, Stage, error_type

__all__ = [
    "CallLog",
    "MeasuredTurn",
    "SessionInstrumentation",
    "instrument_session",
]

_logger = logging.getLogger("voxpulse.livekit")

# repeated calls of one tool within one turn that look like enumeration / data dumping
_REPEATED_TOOL_THRESHOLD: Final = 4


# ------------------------------------------------------------------------------------------------
# usage -> cost
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _UsageCost:
    stage: Stage
    provider: str
    model: str
    usd: float
    input_tokens: int = 0
    output_tokens: int = 0
    characters: int = 0
    audio_seconds: float = 0.0


def _usage_costs(usage: Any, prices: PriceTable) -> list[_UsageCost]:
    """Applies the price table to a LiveKit ``AgentSessionUsage`` (one entry per provider/model)."""
    out: list[_UsageCost] = []
    for u in getattr(usage, "model_usage", ()):
        kind = getattr(u, "type", "")
        provider, model = str(getattr(u, "provider", "") or "unknown"), str(getattr(u, "model", "") or "unknown")
        if kind == "llm_usage":
            it, ot = int(u.input_tokens), int(u.output_tokens)
            usd = prices.cost(Stage.LLM, provider, model, input_tokens=it, output_tokens=ot)
            out.append(_UsageCost(Stage.LLM, provider, model, usd, input_tokens=it, output_tokens=ot))
        elif kind == "tts_usage":
            chars, secs = int(u.characters_count), float(u.audio_duration)
            usd = prices.cost(Stage.TTS, provider, model, characters=chars, audio_seconds=0.0,
                              input_tokens=int(u.input_tokens), output_tokens=int(u.output_tokens))
            out.append(_UsageCost(Stage.TTS, provider, model, usd, characters=chars, audio_seconds=secs))
        elif kind == "stt_usage":
            secs = float(u.audio_duration)
            usd = prices.cost(Stage.STT, provider, model, audio_seconds=secs,
                              input_tokens=int(u.input_tokens), output_tokens=int(u.output_tokens))
            out.append(_UsageCost(Stage.STT, provider, model, usd, audio_seconds=secs))
    return out


# ------------------------------------------------------------------------------------------------
# call-history sink
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# the per-session instrumentation
# ------------------------------------------------------------------------------------------------
def _ns(t: float) -> int:
    return int(t * 1_000_000_000)


def _provider_model(component: Any) -> tuple[str, str]:
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


class SessionInstrumentation:
    """Instruments ``session`` (a LiveKit ``AgentSession``) for one call: ``async with`` it and
    start the session inside (``instrument_session`` is this class). On exit it waits for the
    session to close (``wait_for_close``), sets the outcome, cost and turn count on the call's root
    span and ends it.

    ``call_id`` defaults to the job's room name, else a generated id; ``caller`` to the SIP
    participant's phone number when the job's room has one. ``price_table`` prices the session's
    usage (default :data:`telemetry.pricing.DEFAULT_PRICES`); ``call_log`` (e.g.
    ``telemetry.history.CallLogger``) receives the call's start and end, its turns and tool calls.
    """

    def __init__(
        self,
        session: Any,
        *,
        call_id: str | None = None,
        direction: str = "inbound",
        caller: str | None = None,
        room: str | None = None,
        scenario: str | None = None,
        price_table: PriceTable | None = None,
        call_log: CallLog | None = None,
        wait_for_close: bool = True,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        self.session = session
        self.prices = price_table or DEFAULT_PRICES
        self.call_log = call_log
        self.wait_for_close = wait_for_close
        job_room, job_caller = _from_job()
        self.scope: CallScope = CallScope(
            call_id or job_room, direction=direction, caller=caller or job_caller, room=room or job_room,
            scenario=scenario, attributes=attributes,
        )
        self.turns: list[MeasuredTurn] = []
        self.close_reason: str | None = None
        self.anomalies: list[tuple[str, str]] = []
        self._costs: list[_UsageCost] = []
        self._turn: _Turn | None = None
        self._user_speech_started: float | None = None
        self._last_user_stop: float | None = None
        self._known_tools: set[str] | None = None
        self._closed = asyncio.Event()
        self._parent_ctx: otel_context.Context | None = None
        self._handlers: list[tuple[str, Any]] = []
        self._tracer = STATE.tracer
        self._finished = False

    # -- public -----------------------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        return self.scope.call_id

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def __aenter__(self) -> CallScope:
        scope = await self.scope.__aenter__()
        self._tracer = STATE.tracer
        self._parent_ctx = trace.set_span_in_context(scope.span)
        self._subscribe()
        if self.call_log is not None:
            with internal_errors("livekit.call_log.start"):
                self.call_log.bind_call(scope)
        return scope

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is None and self.wait_for_close and _session_started(self.session):
                await self._closed.wait()
        except asyncio.CancelledError:
            exc = exc or asyncio.CancelledError()
            raise
        finally:
            self._finish(exc)
            await self.scope.__aexit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    # -- events -----------------------------------------------------------------------------------
    def _subscribe(self) -> None:
        handlers: dict[str, Any] = {
            "user_state_changed": self._on_user_state,
            "agent_state_changed": self._on_agent_state,
            "conversation_item_added": self._on_item,
            "function_tools_executed": self._on_tools,
            "error": self._on_error,
            "close": self._on_close,
        }
        for name, fn in handlers.items():
            self.session.on(name, fn)
            self._handlers.append((name, fn))
        # AgentSession.on() logs a deprecation warning for every "metrics_collected" subscriber;
        # the event itself is the only live source of LLM ttft / TTS ttfb per request.
        emitter_on = _base_emitter_on(self.session)
        emitter_on("metrics_collected", self._on_metrics)
        self._handlers.append(("metrics_collected", self._on_metrics))

    def _unsubscribe(self) -> None:
        for name, fn in self._handlers:
            with contextlib.suppress(KeyError, ValueError):
                self.session.off(name, fn)
        self._handlers.clear()

    def _on_user_state(self, ev: Any) -> None:
        with internal_errors("livekit.user_state"):
            now = float(getattr(ev, "created_at", time.time()))
            if ev.new_state == "speaking":
                self._user_speech_started = now
                t = self._turn
                if t is None or t.answered or t.agent_started_at is not None:
                    self._open_turn(now)
            elif ev.old_state == "speaking":
                self._last_user_stop = now

    def _on_agent_state(self, ev: Any) -> None:
        with internal_errors("livekit.agent_state"):
            t = self._turn
            if ev.new_state == "listening" and t is not None and t.agent_started_at is not None:
                t.idle_at = float(getattr(ev, "created_at", time.time()))
            if ev.new_state == "speaking" and t is not None and t.agent_started_at is None and t.user_text:
                now = float(getattr(ev, "created_at", time.time()))
                t.agent_started_at = now
                stop = t.stopped_speaking_at or self._last_user_stop
                if stop is not None:
                    ttfw = max(0.0, now - stop)
                    t.ttfw_s = ttfw
                    t.span.set_attribute(Attr.TURN_TTFW, ttfw)
                    with trace.use_span(t.span, end_on_exit=False):  # exemplar -> this turn
                        _metrics.record_time_to_first_word(ttfw)

    def _on_item(self, ev: Any) -> None:
        with internal_errors("livekit.conversation_item"):
            item = ev.item
            if getattr(item, "type", None) != "message":
                return
            role = getattr(item, "role", None)
            text = getattr(item, "text_content", None) or ""
            m: Mapping[str, Any] = getattr(item, "metrics", None) or {}
            if role == "user":
                self._on_user_message(text, m, float(getattr(item, "created_at", time.time())))
            elif role == "assistant":
                self._on_assistant_message(item, text, m)

    def _on_user_message(self, text: str, m: Mapping[str, Any], created_at: float) -> None:
        t = self._turn
        started = m.get("started_speaking_at") or self._user_speech_started or created_at
        if t is None or t.answered or t.agent_started_at is not None:
            t = self._open_turn(float(started))
        t.user_text = f"{t.user_text} {text}".strip() if t.user_text else text
        stopped = m.get("stopped_speaking_at") or self._last_user_stop
        if stopped is not None:
            t.stopped_speaking_at = float(stopped)
        t.started_speaking_at = float(started)
        t.span.set_attribute(Attr.TURN_USER_TEXT, t.user_text)
        if not t.stt_done and self.session.stt is not None:
            t.stt_done = True
            self._stt_span(t, m, created_at)
        if self.call_log is not None:
            delay = m.get("transcription_delay")
            with internal_errors("livekit.call_log.turn"):
                self.call_log.log_turn(
                    self.call_id, t.index, "user", text, ts=created_at,
                    stt_ms=round(float(delay) * 1000, 1) if delay is not None else None,
                )

    def _stt_span(self, t: _Turn, m: Mapping[str, Any], created_at: float) -> None:
        """One ``speech_to_text`` span per user turn: end of speech -> final transcript."""
        provider, model = _provider_model(self.session.stt)
        stop = t.stopped_speaking_at
        delay = m.get("transcription_delay")
        if stop is None:
            stop = created_at
        final_at = stop + float(delay) if delay is not None else created_at
        start = min(stop, final_at)
        speech_s = max(0.0, stop - (t.started_speaking_at or stop))
        attrs: dict[str, AttributeValue] = {
            Attr.CALL_ID: self.call_id,
            Attr.STAGE: Stage.STT.value,
            Attr.PROVIDER: provider,
            Attr.MODEL: model,
            Attr.STT_AUDIO_SECONDS: round(speech_s, 3),
            Attr.STT_TRANSCRIPT: t.user_text,
            Attr.TURN_INDEX: t.index,
        }
        if delay is not None:
            attrs[Attr.STREAM_TTFC] = round(float(delay), 4)
        span = self._tracer.start_span(
            SpanName.STT, context=trace.set_span_in_context(t.span), kind=SpanKind.CLIENT,
            attributes=attrs, start_time=_ns(start),
        )
        span.end(end_time=_ns(max(final_at, start)))
        if delay is not None:
            with trace.use_span(span, end_on_exit=False):
                _metrics.record_time_to_first_chunk(Stage.STT, float(delay), provider=provider, model=model)

    def _on_assistant_message(self, item: Any, text: str, m: Mapping[str, Any]) -> None:
        t = self._turn
        interrupted = bool(getattr(item, "interrupted", False))
        if t is None or not t.user_text:
            return  # greeting or an agent-initiated message: not a turn
        t.agent_text = f"{t.agent_text} {text}".strip() if t.agent_text else text
        t.answered = not interrupted
        t.interrupted = t.interrupted or interrupted
        t.span.set_attribute(Attr.TURN_AGENT_TEXT, t.agent_text)
        if interrupted:
            t.span.set_attribute(Attr.CANCELLED, True)
        if self.call_log is not None:
            ttft, ttfb = m.get("llm_node_ttft"), m.get("tts_node_ttfb")
            with internal_errors("livekit.call_log.turn"):
                self.call_log.log_turn(
                    self.call_id, t.index, "agent", text, ts=float(getattr(item, "created_at", time.time())),
                    llm_ms=round(float(ttft) * 1000, 1) if ttft is not None else None,
                    tts_ms=round(float(ttfb) * 1000, 1) if ttfb is not None else None,
                    ttfw_ms=round(t.ttfw_s * 1000, 1) if t.ttfw_s is not None else None,
                    interrupted=interrupted,
                )

    def _on_tools(self, ev: Any) -> None:
        with internal_errors("livekit.tools"):
            known = self._tool_names()
            t = self._turn
            for fc, out in ev.zipped():
                name = str(fc.name)
                if t is not None:
                    t.tool_calls += 1
                    t.tool_names.append(name)
                    t.span.set_attribute(Attr.TURN_TOOL_CALLS, t.tool_calls)
                reason: str | None = None
                if known is not None and name not in known:
                    reason = "unknown_tool"
                elif t is not None and t.tool_names.count(name) == _REPEATED_TOOL_THRESHOLD:
                    reason = "repeated"
                if reason is not None:
                    # the metric label stays bounded: a name the model made up is "_OTHER"
                    self._anomaly(name, reason, t, label=name if known is None or name in known else OTHER)
                if self.call_log is not None:
                    success = out is not None and not bool(getattr(out, "is_error", False))
                    started = float(getattr(fc, "created_at", 0.0) or 0.0)
                    ended = float(getattr(out, "created_at", 0.0) or 0.0) if out is not None else 0.0
                    # raw values: the call history is where they stay searchable (it masks its logs)
                    with internal_errors("livekit.call_log.tool"):
                        self.call_log.log_tool_call(
                            self.call_id, name, _loads(str(fc.arguments or "{}")),
                            _loads(str(getattr(out, "output", "") or "")), success=success,
                            duration_ms=round((ended - started) * 1000, 1) if started and ended else None,
                            ts=started or time.time(), turn_index=t.index if t is not None else None,
                            tool_call_id=str(getattr(fc, "call_id", "") or "") or None,
                            error=None if success else str(getattr(out, "output", ""))[:500],
                        )

    def _anomaly(self, tool: str, reason: str, t: _Turn | None, *, label: str) -> None:
        self.anomalies.append((tool, reason))
        _logger.warning("anomalous tool call", extra={"call_id": self.call_id, "tool": tool, "reason": reason})
        target = t.span if t is not None else self.scope.span
        target.add_event("tool_anomaly", {Attr.TOOL_NAME: tool, Attr.TOOL_ANOMALY: reason})
        target.set_attribute(Attr.TOOL_ANOMALY, reason)
        with trace.use_span(target, end_on_exit=False):
            _metrics.tool_anomaly(label, reason)

    def _tool_names(self) -> set[str] | None:
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

    def _on_metrics(self, ev: Any) -> None:
        with internal_errors("livekit.metrics"):
            mtr = ev.metrics
            kind = getattr(mtr, "type", "")
            meta = getattr(mtr, "metadata", None)
            provider = getattr(meta, "model_provider", None) if meta is not None else None
            model = getattr(meta, "model_name", None) if meta is not None else None
            if kind == "llm_metrics" and float(mtr.ttft) >= 0 and not mtr.cancelled:
                _metrics.record_time_to_first_chunk(Stage.LLM, float(mtr.ttft), provider=provider, model=model)
            elif kind == "tts_metrics" and float(mtr.ttfb) >= 0 and not mtr.cancelled:
                _metrics.record_time_to_first_chunk(Stage.TTS, float(mtr.ttfb), provider=provider, model=model)

    def _on_error(self, ev: Any) -> None:
        with internal_errors("livekit.error"):
            err = getattr(ev, "error", None)
            recoverable = bool(getattr(err, "recoverable", True))
            if not recoverable:
                provider, model = _provider_model(getattr(ev, "source", None))
                target = self._turn.span if self._turn is not None else self.scope.span
                target.add_event("provider_error", {
                    Attr.ERROR_TYPE: error_type(err) if err is not None else OTHER,
                    Attr.PROVIDER: provider, Attr.MODEL: model,
                })
                if self._turn is not None:
                    self._turn.provider_failed = True

    def _on_close(self, ev: Any) -> None:
        with internal_errors("livekit.close"):
            reason = getattr(ev, "reason", None)
            self.close_reason = str(getattr(reason, "value", reason)) if reason is not None else None
            error = getattr(ev, "error", None)
            if error is not None or self.close_reason == "error":
                self.scope.set_outcome(CallOutcome.FAILED)
                self.scope.span.set_status(Status(StatusCode.ERROR, f"session closed: {self.close_reason}"))
                cause = getattr(error, "error", error)
                self.scope.span.set_attribute(Attr.ERROR_TYPE, error_type(cause) if cause is not None else OTHER)
            elif self.close_reason == "task_completed":
                self.scope.set_outcome(CallOutcome.RESOLVED_BY_BOT)
            else:
                t = self._turn
                unanswered = t is not None and (not t.answered or t.interrupted)
                if t is not None and unanswered and t.provider_failed and not t.agent_text:
                    # the caller gave up on an answer the providers could not produce
                    self.scope.set_outcome(CallOutcome.FAILED)
                elif (not self.turns and t is None) or unanswered:
                    self.scope.set_outcome(CallOutcome.ABANDONED)
                else:
                    self.scope.set_outcome(CallOutcome.RESOLVED_BY_BOT)
            self._closed.set()

    # -- turns ------------------------------------------------------------------------------------
    def _open_turn(self, started_at: float) -> _Turn:
        self._close_turn(started_at)
        index = self.scope.next_turn()
        span = self._tracer.start_span(
            SpanName.TURN, context=self._parent_ctx, kind=SpanKind.INTERNAL,
            attributes={Attr.CALL_ID: self.call_id, Attr.STAGE: Stage.TURN.value, Attr.TURN_INDEX: index},
            start_time=_ns(started_at),
        )
        self._turn = _Turn(index=index, span=span, started_at=started_at)
        return self._turn

    def _close_turn(self, at: float | None = None) -> None:
        t = self._turn
        if t is None:
            return
        self._turn = None
        t.span.set_attribute(Attr.TURN_TOOL_CALLS, t.tool_calls)
        end = t.idle_at if t.idle_at is not None else (at if at is not None else time.time())
        t.span.end(end_time=_ns(max(end, t.started_at)))
        self.turns.append(
            MeasuredTurn(
                index=t.index, ttfw_s=t.ttfw_s, user_text=t.user_text, agent_text=t.agent_text,
                tool_calls=tuple(t.tool_names), stopped_speaking_at=t.stopped_speaking_at,
                agent_started_at=t.agent_started_at,
            )
        )

    # -- end of call ------------------------------------------------------------------------------
    def _finish(self, exc: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._unsubscribe()
        with internal_errors("livekit.finish"):
            self._close_turn()
            if not self._closed.is_set():
                if isinstance(exc, asyncio.CancelledError):
                    self.scope.set_outcome(CallOutcome.ABANDONED)
                elif exc is not None:
                    self.scope.set_outcome(CallOutcome.FAILED)
            usage = getattr(self.session, "usage", None)
            if usage is not None:
                self._costs = _usage_costs(usage, self.prices)
                with trace.use_span(self.scope.span, end_on_exit=False):
                    for c in self._costs:
                        self.scope.add_cost(c.usd, stage=c.stage, provider=c.provider, model=c.model)


instrument_session = SessionInstrumentation
"""``instrument_session(session, call_id=..., ...)``: see :class:`SessionInstrumentation` (an alias)."""


# ------------------------------------------------------------------------------------------------
# LiveKit internals
# ------------------------------------------------------------------------------------------------
def _route_tracer(tracer_provider: trace.TracerProvider, content: ContentMode) -> None:
    """Routes LiveKit Agents' own spans into our provider (metrics follow the global provider);
    ``configure()`` and ``capture_telemetry()`` call it. Nothing happens without livekit-agents.

    LiveKit's content attributes (prompts, chat context, transcripts, tool arguments, serialised on
    the event loop for every LLM request) are captured only with ``content="full"``; otherwise our
    own spans carry the redacted transcripts and tool arguments (turn, speech_to_text,
    execute_tool), which costs far less CPU per call.
    """
    if "livekit.agents" not in sys.modules and importlib.util.find_spec("livekit.agents") is None:
        return
    from livekit.agents import telemetry as lk_telemetry
    from livekit.agents.telemetry import gen_ai as lk_gen_ai

    # allow_pii=True: LiveKit's own filter would strip every key with a `pii` segment (ours too) and
    # every exception message; our exporter redacts instead (telemetry.redaction).
    lk_telemetry.set_tracer_provider(tracer_provider, allow_pii=True)
    lk_gen_ai.set_capture_content(content == "full")


def _is_run_context(name: str, value: object) -> bool:
    """LiveKit passes a tool its ``RunContext`` (conventionally ``ctx`` or ``run_ctx``): framework
    state, not the model's arguments. Matched by type name, so livekit-agents is not imported."""
    return name == "run_ctx" or type(value).__name__ == "RunContext"


_skip_framework_argument(_is_run_context)


def _from_job() -> tuple[str | None, str | None]:
    """(room name, caller phone) from the current LiveKit job, if any."""
    try:
        from livekit.agents import get_job_context

        ctx = get_job_context(required=False)
    except Exception:  # no livekit or no job: not an error
        return None, None
    if ctx is None:
        return None, None
    room_name: str | None = None
    caller: str | None = None
    try:
        room_name = str(ctx.room.name) or None
        for p in ctx.room.remote_participants.values():
            attrs = getattr(p, "attributes", None) or {}
            phone = attrs.get("sip.phoneNumber")
            if phone:
                caller = str(phone)
                break
    except Exception:  # an unconnected room has no name yet
        pass
    return room_name, caller


def _session_started(session: Any) -> bool:
    return bool(getattr(session, "_started", True))


def _base_emitter_on(session: Any) -> Any:
    """``EventEmitter.on`` of the session, bypassing AgentSession's deprecation-logging override."""
    for cls in type(session).__mro__[1:]:
        fn = cls.__dict__.get("on")
        if fn is not None:
            return lambda event, cb: fn(session, event, cb)
    return session.on


def _loads(text: str) -> Any:
    """A tool's JSON arguments/result as data; plain text stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
