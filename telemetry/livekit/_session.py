"""The per-call instrumentation of one LiveKit ``AgentSession``: its event handlers.

:class:`SessionInstrumentation` (``instrument_session``) subscribes to the session's events and
turns them into the call's spans, metrics and call-history records; see the package docstring
(``telemetry.livekit``) for what it records. Every handler is guarded: an error in one is logged
(and, under tests, re-raised when the call scope exits), never raised into LiveKit.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from contextvars import Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from telemetry import _env, _quality
from telemetry import metrics as _metrics
from telemetry._errors import internal_error, internal_errors, raise_internal_errors
from telemetry._state import STATE
from telemetry.calls import CallScope
from telemetry.livekit._anatomy import Segment, TurnMarks, anatomy, named_share
from telemetry.livekit._budgets import BudgetBreach, BudgetHook, Budgets, BudgetWatch
from telemetry.livekit._interruptions import Interruptions
from telemetry.livekit._job import _from_job
from telemetry.livekit._pricing import _usage_costs, _UsageCost
from telemetry.livekit._tracing import _CURRENT, _SESSIONS
from telemetry.livekit._ttfw import _TtfwProbe
from telemetry.pricing import DEFAULT_PRICES, PriceTable
from telemetry.semconv import OTHER, TTFW_OBJECTIVE_S, Attr, CallOutcome, SpanName, Stage, error_type

if TYPE_CHECKING:
    from livekit.agents import AgentSession
    from livekit.agents.llm import ChatMessage
    from livekit.agents.voice.events import (
        AgentFalseInterruptionEvent,
        AgentStateChangedEvent,
        CloseEvent,
        ConversationItemAddedEvent,
        ErrorEvent,
        EventTypes,
        FunctionToolsExecutedEvent,
        MetricsCollectedEvent,
        UserStateChangedEvent,
    )

__all__ = ["CallLog", "MeasuredTurn", "SessionInstrumentation", "instrument_session"]

_logger = logging.getLogger("voxpulse.livekit")

# LiveKit's LLM ttft / TTS ttfb when nothing was generated
_NOT_MEASURED: Final = -1.0

# repeated calls of one tool within one turn that look like enumeration / data dumping
_REPEATED_TOOL_THRESHOLD: Final = 4


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


class SessionInstrumentation:
    """Instruments ``session`` (a LiveKit ``AgentSession``) for one call: ``async with`` it and
    start the session inside (``instrument_session`` is this class). On exit it waits for the
    session to close (``wait_for_close``), sets the outcome, cost and turn count on the call's root
    span and ends it.

    ``call_id`` defaults to LiveKit SIP's call id, else the room's id, else the job's id (never the
    room name: a SIP room is named after the caller's number), else a generated id; ``caller`` to
    the SIP participant's phone number when the job's room has one. ``price_table`` prices the session's
    usage (default :data:`telemetry.pricing.DEFAULT_PRICES`); ``call_log`` (e.g.
    ``telemetry.history.CallLogger``, which the caller starts and closes) receives the call's start
    and end, its turns and tool calls; left None, with a database configured (``DATABASE_URL``) a
    ``CallLogger`` is created for the call, started on entry and closed (flushed, bounded) on exit;
    ``False``: no call history.
    """

    def __init__(
        self,
        session: AgentSession[Any],
        *,
        call_id: str | None = None,
        direction: str = "inbound",
        caller: str | None = None,
        room: str | None = None,
        scenario: str | None = None,
        price_table: PriceTable | None = None,
        call_log: CallLog | Literal[False] | None = None,
        wait_for_close: bool = True,
        attributes: Mapping[str, AttributeValue] | None = None,
        budgets: Budgets | None = None,
        on_budget_exceeded: BudgetHook | None = None,
    ) -> None:
        self.session = session
        self.prices = price_table or DEFAULT_PRICES
        self.call_log: CallLog | None = call_log or None
        self._auto_call_log = call_log is None
        self._owned_call_log: Any = None  # a telemetry.history.CallLogger (the optional extra, imported late)
        self.wait_for_close = wait_for_close
        job = _from_job()
        attrs: dict[str, AttributeValue] = {k: v for k, v in (
            (Attr.SIP_CALL_ID, job.sip_call_id), (Attr.ROOM_SID, job.room_sid), (Attr.JOB_ID, job.job_id),
        ) if v}
        attrs.update(attributes or {})
        self.scope: CallScope = CallScope(
            call_id or job.call_id, direction=direction, caller=caller or job.caller, room=room or job.room_name,
            scenario=scenario, attributes=attrs,
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
        self._handlers: list[tuple[EventTypes, Callable[[Any], None]]] = []
        self._tracer = STATE.tracer
        self._finished = False
        self._errors: list[BaseException] = []  # handler errors, re-raised at exit under tests
        self._session_span_ctx: trace.SpanContext | None = None  # LiveKit's agent_session span
        self._instr_token: Token[SessionInstrumentation | None] | None = None
        self._probe = _TtfwProbe(self)
        self.interruptions = Interruptions()
        self._budgets = BudgetWatch(budgets if budgets is not None else _budgets_from_env(), self.scope.call_id)
        if on_budget_exceeded is not None:
            self._budgets.hooks.append(on_budget_exceeded)
        self._slow_turn_s = _slow_turn_threshold_s()

    # -- public -----------------------------------------------------------------------------------
    def on_budget_exceeded(self, hook: BudgetHook) -> None:
        """Calls ``hook`` with a :class:`BudgetBreach` when a turn runs over a latency budget (see
        ``telemetry.livekit._budgets``); live breaches come while the caller still waits."""
        self._budgets.hooks.append(hook)

    @property
    def budget_breaches(self) -> list[BudgetBreach]:
        """The budgets exceeded so far in this call."""
        return list(self._budgets.breaches)

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
        # LiveKit's agent_session span starts inside session.start(), in this context: the span
        # hook recognises it as this session's (turn spans are nested below it)
        self._instr_token = _CURRENT.set(self)
        self._subscribe()
        if self._auto_call_log:
            await self._open_call_log()
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
            if self._instr_token is not None:
                with contextlib.suppress(ValueError):  # exited in another context than entered
                    _CURRENT.reset(self._instr_token)
                self._instr_token = None
            try:
                await self.scope.__aexit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)
            finally:
                await self._close_call_log()  # after the scope: its end (outcome, cost) is the last record
        if self._errors and exc is None:
            raise self._errors[0]  # only under tests (see _guard): a handler of ours failed

    # -- call history ---------------------------------------------------------------------------
    async def _open_call_log(self) -> None:
        """This call's own CallLogger, when a database is configured (never blocks: the writer
        connects in the background; an unreachable database degrades to Redis, then memory)."""
        if not _env.text(_env.DATABASE_URL):
            return
        with internal_errors("livekit.call_log.open"):
            try:
                # the optional extra, looked up at run time (telemetry.history builds on this package)
                history = importlib.import_module("telemetry.history")
            except ImportError:
                _logger.warning("DATABASE_URL is set but the history extra is not installed: no call history")
                return
            logger = history.CallLogger.from_env(agent_version=STATE.service_version)
            await logger.start()
            self._owned_call_log = logger
            self.call_log = logger

    async def _close_call_log(self) -> None:
        """Writes the call's records out (bounded: what is not written in time is buffered in Redis or
        counted as dropped) and closes the logger this instrumentation opened."""
        logger, self._owned_call_log = self._owned_call_log, None
        if logger is not None:
            with internal_errors("livekit.call_log.close"):
                await logger.aclose(timeout=5.0)

    # -- events -----------------------------------------------------------------------------------
    def _subscribe(self) -> None:
        handlers: dict[EventTypes, Callable[[Any], None]] = {
            "user_state_changed": self._on_user_state,
            "agent_state_changed": self._on_agent_state,
            "conversation_item_added": self._on_item,
            "function_tools_executed": self._on_tools,
            "agent_false_interruption": self._on_false_interruption,
            "error": self._on_error,
            "close": self._on_close,
        }
        for name, fn in handlers.items():
            guarded = self._guard(name, fn)
            self.session.on(name, guarded)
            self._handlers.append((name, guarded))
        # AgentSession.on() logs a deprecation warning for every "metrics_collected" subscriber;
        # the event itself is the only live source of LLM ttft / TTS ttfb per request.
        emitter_on = _base_emitter_on(self.session)
        guarded = self._guard("metrics_collected", self._on_metrics)
        emitter_on("metrics_collected", guarded)
        self._handlers.append(("metrics_collected", guarded))

    def _guard(self, name: str, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        # (Any: the handlers take one event class each)
        """``fn`` as a LiveKit event handler that can never raise into LiveKit (an exception in a
        session event handler breaks the turn: the agent never answers). The error is logged; under
        tests it is also kept and re-raised when the call scope exits."""

        def handler(ev: Any) -> None:
            try:
                fn(ev)
            except Exception as exc:
                self._contain(f"livekit.{name}", exc)

        return handler

    def _contain(self, site: str, exc: Exception) -> None:
        """An error of ours inside a LiveKit callback: counted and logged, never raised into
        LiveKit; under tests kept and re-raised when the call scope exits."""
        if raise_internal_errors():
            self._errors.append(exc)
        else:
            internal_error(site, exc)

    def _so_far(self, at: float | None = None) -> float | None:
        """The call's duration so far, at LiveKit's timestamp ``at`` (when later than now): what no
        duration measured in the call can exceed. None before the call started."""
        started = self.scope.started_at
        if not started:
            return None
        now = time.time()
        if at is not None and math.isfinite(at) and at > now:
            now = at
        return now - started

    def _unsubscribe(self) -> None:
        for name, fn in self._handlers:
            with contextlib.suppress(KeyError, ValueError):
                self.session.off(name, fn)
        self._handlers.clear()

    def _on_user_state(self, ev: UserStateChangedEvent) -> None:
        with internal_errors("livekit.user_state"):
            now = float(getattr(ev, "created_at", time.time()))
            if ev.new_state == "speaking":
                self._user_speech_started = now
                self._budgets.disarm()  # the caller goes on: the wait starts again at the next stop
                t = self._turn
                # with tracing on, LiveKit's user_turn span opened the turn a moment ago
                if t is None or t.answered or t.agent_started_at is not None:
                    t = self._open_turn(now)
                # a barge-in is marked on the caller's turn it begins (whichever opened it)
                self.interruptions.user_started(now, t.span)
            elif ev.old_state == "speaking":
                self._last_user_stop = now
                self.interruptions.user_stopped(now, self._turn.span if self._turn is not None else None)
                self._probe.end_of_speech()
                t = self._turn
                if t is not None and t.audible_out_at is None:
                    heard = self._probe.speech_end(now)[0] or now
                    self._budgets.arm(t.span, t.index, heard, time.time,
                                      self._probe.network_s() if self._probe.measures_output else 0.0)

    def _on_agent_state(self, ev: AgentStateChangedEvent) -> None:
        with internal_errors("livekit.agent_state"):
            self._probe.install()  # the room's audio in and out exist once the session started
            t = self._turn
            at = float(getattr(ev, "created_at", time.time()))
            span = t.span if t is not None else self.scope.span
            if ev.new_state == "speaking":
                self.interruptions.agent_started(at, span)
            elif ev.old_state == "speaking":
                self.interruptions.agent_stopped(at, span)
            if ev.new_state == "listening" and t is not None and t.agent_started_at is not None:
                t.idle_at = float(getattr(ev, "created_at", time.time()))
            if ev.new_state == "speaking" and t is not None and t.agent_started_at is None and t.user_text:
                now = float(getattr(ev, "created_at", time.time()))
                t.agent_started_at = now
                if not self._probe.measures_output:
                    # no room audio source (an offline sink): the sink's playback start is the end
                    t.audible_out_at = now
                    t.ttfw_method = "playback"
                    self._complete_ttfw(t)

    def _complete_ttfw(self, t: _Turn) -> None:
        """Sets the turn's time to first word once both ends are known (once per turn)."""
        if t.ttfw_s is not None or t.audible_out_at is None:
            return
        start = t.heard_end if t.heard_end is not None else (t.stopped_speaking_at or self._last_user_stop)
        if start is None:
            return
        agent_s = _quality.interval("livekit.ttfw", start, t.audible_out_at,
                                    within_s=self._so_far(t.audible_out_at), span=t.span)
        if agent_s is None:
            return  # a data error: no time to first word for this turn
        network_s = self._probe.network_s() if self._probe.measures_output else 0.0
        ttfw = agent_s + network_s
        t.ttfw_s, t.ttfw_agent_s, t.ttfw_network_s, t.ttfw_start = ttfw, agent_s, network_s, start
        t.span.set_attributes({
            Attr.TURN_TTFW: round(ttfw, 4),
            Attr.TURN_TTFW_AT_AGENT: round(agent_s, 4),
            Attr.TURN_MEDIA_LATENCY: round(network_s, 4),
            Attr.TURN_TTFW_METHOD: t.ttfw_method,
            Attr.TURN_SLOW: ttfw >= self._slow_turn_s,
        })
        with trace.use_span(t.span, end_on_exit=False):  # exemplar -> this turn
            _metrics.record_time_to_first_word(ttfw)
        self._budgets.check_turn(t.span, t.index, ttfw)

    def _on_audible_out(self, at: float) -> None:
        """The probe saw the answer's first audible frame go into the room's audio source."""
        t = self._turn
        if t is None or t.audible_out_at is not None or not t.user_text:
            return
        t.audible_out_at = at
        self._complete_ttfw(t)

    def _on_item(self, ev: ConversationItemAddedEvent) -> None:
        with internal_errors("livekit.conversation_item"):
            item = ev.item
            if item.type != "message":
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
        lk_started, lk_stopped = m.get("started_speaking_at"), m.get("stopped_speaking_at")
        if lk_started and lk_stopped and _quality.interval(
            "livekit.user.speaking", lk_started, lk_stopped, within_s=self._so_far(created_at),
            span=t.span if t is not None else self.scope.span,
        ) is None:
            lk_started = lk_stopped = None  # impossible: the session's own speaking events instead
        started = lk_started or self._user_speech_started or created_at
        if t is None or t.answered or t.agent_started_at is not None:
            t = self._open_turn(float(started))
        t.user_text = f"{t.user_text} {text}".strip() if t.user_text else text
        stopped = lk_stopped or self._last_user_stop
        if stopped is not None:
            t.stopped_speaking_at = float(stopped)
        t.started_speaking_at = float(started)
        t.vad_end_at = self._last_user_stop
        for key in ("end_of_turn_delay", "on_user_turn_completed_delay"):
            checked = _quality.duration(f"livekit.{key}", m.get(key), within_s=self._so_far(created_at), span=t.span)
            if checked is not None:
                t.user_delays[key] = checked
        if t.audible_out_at is None:
            t.heard_end, t.ttfw_method = self._probe.speech_end(t.stopped_speaking_at)
            self._probe.arm()
        t.span.set_attribute(Attr.TURN_USER_TEXT, t.user_text)
        delay = _quality.duration("livekit.stt.transcription_delay", m.get("transcription_delay"),
                                  within_s=self._so_far(created_at), span=t.span)
        if delay is not None:
            t.user_delays["transcription_delay"] = delay
        if not t.stt_done and self.session.stt is not None:
            t.stt_done = True
            self._stt_span(t, delay, created_at)
        if self.call_log is not None:
            with internal_errors("livekit.call_log.turn"):
                self.call_log.log_turn(
                    self.call_id, t.index, "user", text, ts=created_at,
                    stt_ms=round(delay * 1000, 1) if delay is not None else None,
                )

    def _stt_span(self, t: _Turn, delay: float | None, created_at: float) -> None:
        """One ``speech_to_text`` span per user turn: end of speech -> final transcript
        (``delay``: LiveKit's transcription delay, checked)."""
        provider, model = _provider_model(self.session.stt)
        stop = t.stopped_speaking_at
        if stop is None:
            stop = created_at
        final_at = stop + delay if delay is not None else created_at
        start = min(stop, final_at)
        speech_s = _quality.interval("livekit.user.speaking", t.started_speaking_at or stop, stop,
                                     within_s=self._so_far(created_at), span=t.span)
        attrs: dict[str, AttributeValue] = {
            Attr.CALL_ID: self.call_id,
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
        span = self._tracer.start_span(
            SpanName.STT, context=trace.set_span_in_context(t.span), kind=SpanKind.CLIENT,
            attributes=attrs, start_time=_ns(start),
        )
        span.end(end_time=_ns(max(final_at, start)))
        if delay is not None:
            with trace.use_span(span, end_on_exit=False):
                _metrics.record_time_to_first_chunk(Stage.STT, delay, provider=provider, model=model)

    def _on_assistant_message(self, item: ChatMessage, text: str, m: Mapping[str, Any]) -> None:
        t = self._turn
        interrupted = bool(getattr(item, "interrupted", False))
        if t is None or not t.user_text:
            return  # greeting or an agent-initiated message: not a turn
        t.agent_text = f"{t.agent_text} {text}".strip() if t.agent_text else text
        if t.reply_metrics is None and m.get("started_speaking_at"):
            t.reply_metrics = self._reply_metrics(t, m)
        t.answered = not interrupted
        t.interrupted = t.interrupted or interrupted
        t.span.set_attribute(Attr.TURN_AGENT_TEXT, t.agent_text)
        # an interruption is on LiveKit's agent_turn below the turn (lk.interrupted,
        # lk.interruption.source, lk.playout.position): no twin of it here
        if self.call_log is not None:
            at = float(getattr(item, "created_at", time.time()))
            ttft = _quality.duration("livekit.llm.node_ttft", m.get("llm_node_ttft"), within_s=self._so_far(at),
                                     span=t.span)
            ttfb = _quality.duration("livekit.tts.node_ttfb", m.get("tts_node_ttfb"), within_s=self._so_far(at),
                                     span=t.span)
            with internal_errors("livekit.call_log.turn"):
                self.call_log.log_turn(
                    self.call_id, t.index, "agent", text, ts=at,
                    llm_ms=round(ttft * 1000, 1) if ttft is not None else None,
                    tts_ms=round(ttfb * 1000, 1) if ttfb is not None else None,
                    ttfw_ms=round(t.ttfw_s * 1000, 1) if t.ttfw_s is not None else None,
                    interrupted=interrupted,
                )

    def _on_tools(self, ev: FunctionToolsExecutedEvent) -> None:
        with internal_errors("livekit.tools"):
            known = self._tool_names()
            t = self._turn
            for fc, out in ev.zipped():
                name = str(fc.name)
                if t is not None:
                    t.tool_calls += 1
                    t.tool_names.append(name)
                    began = float(getattr(fc, "created_at", 0.0) or 0.0)
                    done = float(getattr(out, "created_at", 0.0) or 0.0) if out is not None else 0.0
                    if began and done and 0 <= done - began <= (self._so_far(done) or math.inf):
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
                if self.call_log is not None:
                    success = out is not None and not bool(getattr(out, "is_error", False))
                    started = float(getattr(fc, "created_at", 0.0) or 0.0)
                    ended = float(getattr(out, "created_at", 0.0) or 0.0) if out is not None else 0.0
                    took = _quality.interval(
                        "livekit.tool.duration", started, ended, within_s=self._so_far(ended),
                        span=t.span if t is not None else self.scope.span,
                    ) if started and ended else None
                    # raw values: the call history is where they stay searchable (it masks its logs)
                    with internal_errors("livekit.call_log.tool"):
                        self.call_log.log_tool_call(
                            self.call_id, name, _loads(str(fc.arguments or "{}")),
                            _loads(str(getattr(out, "output", "") or "")), success=success,
                            duration_ms=round(took * 1000, 1) if took is not None else None,
                            ts=started or time.time(), turn_index=t.index if t is not None else None,
                            tool_call_id=str(getattr(fc, "call_id", "") or "") or None,
                            error=None if success else str(getattr(out, "output", ""))[:500],
                        )

    def _reply_metrics(self, t: _Turn, m: Mapping[str, Any]) -> dict[str, float]:
        """The answer's metrics the anatomy reads, each duration through the data-quality guard."""
        raw = TurnMarks.reply_metrics(m)
        out: dict[str, float] = {}
        for key, value in raw.items():
            if key == "started_speaking_at":
                out[key] = value
                continue
            checked = _quality.duration(f"livekit.{key}", value, within_s=self._so_far(raw.get("started_speaking_at")),
                                        span=t.span)
            if checked is not None:
                out[key] = checked
        return out

    def _anatomy(self, t: _Turn) -> tuple[Segment, ...]:
        """The turn's time to first word in parts (telemetry.livekit._anatomy), on its span and in the
        segment histogram (exemplars to the turn)."""
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
        parts = tuple(anatomy(marks))
        self._budgets.check_segments(t.span, t.index, {p.segment: p.seconds for p in parts})
        attrs: dict[str, AttributeValue] = {s.segment.attribute: round(s.seconds, 6) for s in parts}
        attrs[Attr.TURN_NAMED_SHARE] = round(named_share(parts), 4)
        t.span.set_attributes(attrs)
        with trace.use_span(t.span, end_on_exit=False):  # exemplars -> this turn
            for part in parts:
                _metrics._turn_segment(part.segment, part.seconds)
        return parts

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

    def _on_metrics(self, ev: MetricsCollectedEvent) -> None:
        with internal_errors("livekit.metrics"):
            mtr = ev.metrics
            meta = getattr(mtr, "metadata", None)
            provider = getattr(meta, "model_provider", None) if meta is not None else None
            model = getattr(meta, "model_name", None) if meta is not None else None
            if mtr.type == "llm_metrics":
                stage, source, raw = Stage.LLM, "livekit.llm.ttft", mtr.ttft
            elif mtr.type == "tts_metrics":
                stage, source, raw = Stage.TTS, "livekit.tts.ttfb", mtr.ttfb
            else:
                return
            if raw == _NOT_MEASURED:
                return  # LiveKit's "no first token/byte" (nothing generated), not a data error
            seconds = _quality.duration(
                source, raw, within_s=self._so_far(getattr(ev, "created_at", None)),
                span=self._turn.span if self._turn is not None else self.scope.span,
            )
            if seconds is not None:
                # a request cut short by a barge-in still started and answered when it did (the
                # turn's anatomy); its time to first chunk stays out of the histogram
                self._request_marks(stage, mtr, seconds)
                if not mtr.cancelled:
                    _metrics.record_time_to_first_chunk(stage, seconds, provider=provider, model=model)

    def _on_false_interruption(self, ev: AgentFalseInterruptionEvent) -> None:
        with internal_errors("livekit.false_interruption"):
            span = self._turn.span if self._turn is not None else self.scope.span
            self.interruptions.false_interruption(float(ev.created_at), span, resumed=bool(ev.resumed))

    def _request_marks(self, stage: Stage, mtr: Any, first_s: float) -> None:
        """(start, first token/audio) of one LLM or TTS request on the agent's clock, for the turn's
        anatomy: LiveKit stamps the metrics when the request ended (``timestamp``) with its length."""
        t = self._turn
        if t is None:
            return
        took = _quality.duration(f"livekit.{stage.value}.duration", getattr(mtr, "duration", None),
                                 within_s=self._so_far(), span=t.span)
        ended = getattr(mtr, "timestamp", None)
        if took is None or not isinstance(ended, int | float):
            return
        start = float(ended) - took
        (t.llm_requests if stage is Stage.LLM else t.tts_requests).append((start, start + first_s))

    def _on_error(self, ev: ErrorEvent) -> None:
        # (LiveKit types the event's error and source "... | Any": plugins raise their own)
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

    def _on_close(self, ev: CloseEvent) -> None:
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
        parent = self._parent_ctx
        if self._session_span_ctx is not None:  # beside LiveKit's other session spans
            parent = trace.set_span_in_context(trace.NonRecordingSpan(self._session_span_ctx))
        span = self._tracer.start_span(
            SpanName.TURN, context=parent, kind=SpanKind.INTERNAL,
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
        self._budgets.disarm()
        t.span.set_attribute(Attr.TURN_TOOL_CALLS, t.tool_calls)
        segments: tuple[Segment, ...] = ()
        with internal_errors("livekit.anatomy"):
            segments = self._anatomy(t)
        end = t.idle_at if t.idle_at is not None else (at if at is not None else time.time())
        t.span.end(end_time=_ns(max(end, t.started_at)))
        self.turns.append(
            MeasuredTurn(
                index=t.index, ttfw_s=t.ttfw_s, user_text=t.user_text, agent_text=t.agent_text,
                tool_calls=tuple(t.tool_names), stopped_speaking_at=t.stopped_speaking_at,
                agent_started_at=t.agent_started_at, ttfw_agent_s=t.ttfw_agent_s,
                ttfw_network_s=t.ttfw_network_s, ttfw_method=t.ttfw_method if t.ttfw_s is not None else None,
                heard_end=t.heard_end, segments=segments,
            )
        )

    # -- LiveKit's spans (the span hook) ---------------------------------------------------------
    def _session_span_started(self, span: SdkSpan) -> None:
        if self._session_span_ctx is None:
            self._session_span_ctx = span.get_span_context()
            _SESSIONS[self._session_span_ctx.span_id] = self

    def _turn_parent(self, span: SdkSpan) -> trace.SpanContext | None:
        """The parent for one of LiveKit's turn spans that starts under agent_session: the turn
        it belongs to (a user_turn opens the next turn), or None to leave it where it is."""
        t = self._turn
        if span.name == "user_turn":
            if t is None or t.answered or t.agent_started_at is not None:
                start = span.start_time / 1e9 if span.start_time else time.time()
                t = self._open_turn(start)
            return t.span.get_span_context()
        if t is None or t.idle_at is not None:
            return None  # the greeting, or agent speech after the turn was over
        return t.span.get_span_context()

    # -- end of call ------------------------------------------------------------------------------
    def _finish(self, exc: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._unsubscribe()
        self._probe.close()
        self._budgets.close()
        with internal_errors("livekit.finish"):
            self._close_turn()
            if not self._closed.is_set():
                if isinstance(exc, asyncio.CancelledError):
                    self.scope.set_outcome(CallOutcome.ABANDONED)
                elif exc is not None:
                    self.scope.set_outcome(CallOutcome.FAILED)
            usage = getattr(self.session, "usage", None)
            if usage is not None:
                self._costs = _usage_costs(usage, self.prices, within_s=self._so_far(), span=self.scope.span)
                with trace.use_span(self.scope.span, end_on_exit=False):
                    for c in self._costs:
                        self.scope.add_cost(c.usd, stage=c.stage, provider=c.provider, model=c.model)


instrument_session = SessionInstrumentation
"""``instrument_session(session, call_id=..., ...)``: see :class:`SessionInstrumentation` (an alias)."""


def _budgets_from_env() -> Budgets:
    """The budgets of ``VOXPULSE_TURN_BUDGET`` / ``VOXPULSE_SEGMENT_BUDGETS``; a malformed value is
    contained (the defaults then): it must not break a call."""
    try:
        return Budgets.from_env()
    except Exception as exc:  # TelemetryConfigError
        internal_error("livekit.budgets", exc)
        return Budgets()


def _slow_turn_threshold_s() -> float:
    """The slow-turn threshold (``VOXPULSE_TTFW_OBJECTIVE_S``, default the time-to-first-word
    objective), read when a session is instrumented; an invalid value is contained (the default then):
    it must not break a call."""
    try:
        return _env.number(_env.VOXPULSE_TTFW_OBJECTIVE_S)
    except Exception as exc:  # TelemetryConfigError
        internal_error("livekit.slow_turn_threshold", exc)
        return TTFW_OBJECTIVE_S


def _session_started(session: AgentSession[Any]) -> bool:
    """Whether ``session.start()`` ran (LiveKit 1.8 has no public flag: its ``_started``, only read)."""
    return bool(getattr(session, "_started", True))


def _base_emitter_on(session: AgentSession[Any]) -> Callable[[EventTypes, Callable[[Any], None]], object]:
    """``EventEmitter.on`` of the session, bypassing AgentSession's deprecation-logging override."""
    for cls in type(session).__mro__[1:]:
        fn = cls.__dict__.get("on")
        if fn is not None:
            return lambda event, cb: fn(session, event, cb)
    return session.on


def _loads(text: str) -> Any:  # (JSON: any shape)
    """A tool's JSON arguments/result as data; plain text stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
