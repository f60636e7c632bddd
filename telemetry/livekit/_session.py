"""The per-call instrumentation of one LiveKit ``AgentSession``: its event handlers.

:class:`SessionInstrumentation` (``instrument_session``) subscribes to the session's events and
turns them into the call's spans, metrics and call-history records; see the package docstring
(``telemetry.livekit``) for what it records. Every handler is guarded: an error in one is logged
(and, under tests, re-raised when the call scope exits), never raised into LiveKit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from telemetry import _quality
from telemetry import metrics as _metrics
from telemetry._errors import internal_error, internal_errors, raise_internal_errors
from telemetry._state import STATE
from telemetry.calls import CallScope
from telemetry.livekit._anatomy import Segment
from telemetry.livekit._budgets import BudgetBreach, BudgetHook, Budgets, BudgetWatch
from telemetry.livekit._calllog import CallLog, close_call_log, open_call_log
from telemetry.livekit._compat import base_emitter_on, session_started
from telemetry.livekit._greeting import Greeting
from telemetry.livekit._interruptions import Interruptions
from telemetry.livekit._job import _from_job
from telemetry.livekit._pricing import _usage_costs, _UsageCost
from telemetry.livekit._tools import ToolCalls
from telemetry.livekit._tracing import _CURRENT, _SESSIONS
from telemetry.livekit._ttfw import _TtfwProbe
from telemetry.livekit._turns import (
    MeasuredTurn,
    _ns,
    _provider_model,
    _Turn,
    complete_ttfw,
    measured,
    reply_metrics,
    request_marks,
    slow_turn_threshold_s,
    stt_span,
    turn_anatomy,
)
from telemetry.pricing import DEFAULT_PRICES, PriceTable
from telemetry.semconv import OTHER, Attr, CallOutcome, SpanName, Stage, error_type

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

__all__ = ["SessionInstrumentation", "instrument_session"]

_logger = logging.getLogger("voxpulse.livekit")

# LiveKit's LLM ttft / TTS ttfb when nothing was generated
_NOT_MEASURED: Final = -1.0


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
        self._costs: list[_UsageCost] = []
        self._turn: _Turn | None = None
        self._user_speech_started: float | None = None
        self._last_user_stop: float | None = None
        self._tools = ToolCalls(session, self.scope)
        self._closed = asyncio.Event()
        self._parent_ctx: otel_context.Context | None = None
        self._handlers: list[tuple[EventTypes, Callable[[Any], None]]] = []
        self._tracer = STATE.tracer
        self._finished = False
        self._errors: list[BaseException] = []  # handler errors, re-raised at exit under tests
        self._session_span_ctx: trace.SpanContext | None = None  # LiveKit's agent_session span
        self._instr_token: Token[SessionInstrumentation | None] | None = None
        self._probe = _TtfwProbe(self)
        self.greeting = Greeting(session_started_at=time.time())
        self.interruptions = Interruptions()
        self._budgets = BudgetWatch(budgets if budgets is not None else Budgets.from_env_contained(),
                                    self.scope.call_id)
        if on_budget_exceeded is not None:
            self._budgets.hooks.append(on_budget_exceeded)
        self._slow_turn_s = slow_turn_threshold_s()

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
    def anomalies(self) -> list[tuple[str, str]]:
        """The anomalous tool calls so far, (tool, reason) (``_tools``)."""
        return self._tools.anomalies

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
        self.greeting = Greeting(session_started_at=scope.started_at or time.time())
        self._probe.arm()  # the greeting's first audible frame
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
            if exc is None and self.wait_for_close and session_started(self.session):
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
        """This call's own CallLogger, when a database is configured (``_calllog.open_call_log``)."""
        logger = await open_call_log()
        if logger is not None:
            self._owned_call_log = logger
            self.call_log = logger

    async def _close_call_log(self) -> None:
        """Writes the call's records out and closes the logger this instrumentation opened."""
        logger, self._owned_call_log = self._owned_call_log, None
        if logger is not None:
            await close_call_log(logger)

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
        emitter_on = base_emitter_on(self.session)
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
            self.greeting.session_ready(at, self.session, self.scope.span)
            if ev.new_state == "speaking" and not self._probe.measures_output:
                self._greeting_heard(at, method="playback")
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
        complete_ttfw(t, last_user_stop=self._last_user_stop, probe=self._probe, slow_turn_s=self._slow_turn_s,
                      budgets=self._budgets, so_far=self._so_far)

    def _on_audible_out(self, at: float) -> None:
        """The probe saw the answer's first audible frame go into the room's audio source."""
        self._greeting_heard(at)
        t = self._turn
        if t is None or t.audible_out_at is not None or not t.user_text:
            return
        t.audible_out_at = at
        self._complete_ttfw(t)

    def _greeting_heard(self, at: float, method: str = "audio") -> None:
        """The agent's first audible speech before the caller's first line: the greeting's end."""
        t = self._turn
        if self.greeting.listening and (t is None or not t.user_text):
            self.greeting.heard(at, self._probe.network_s() / 2 if self._probe.measures_output else 0.0, method)
            if self.greeting.complete:
                self._close_greeting()

    def _close_greeting(self) -> None:
        self.greeting.close(call_span=self.scope.span, call_id=self.call_id, tracer=self._tracer,
                            so_far=self._so_far)

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
        self._close_greeting()  # the caller spoke: what the agent says next answers them
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
            stt_span(t, delay, created_at, stt=self.session.stt, call_id=self.call_id, tracer=self._tracer,
                     so_far=self._so_far)
        if self.call_log is not None:
            with internal_errors("livekit.call_log.turn"):
                self.call_log.log_turn(
                    self.call_id, t.index, "user", text, ts=created_at,
                    stt_ms=round(delay * 1000, 1) if delay is not None else None,
                )

    def _on_assistant_message(self, item: ChatMessage, text: str, m: Mapping[str, Any]) -> None:
        t = self._turn
        interrupted = bool(getattr(item, "interrupted", False))
        if t is None or not t.user_text:  # the greeting, or an agent-initiated message: not a turn
            if self.greeting.pending:
                self.greeting.reply_metrics(m, self._so_far(), self.scope.span)
                if self.greeting.complete:
                    self._close_greeting()
            return
        t.agent_text = f"{t.agent_text} {text}".strip() if t.agent_text else text
        if t.reply_metrics is None and m.get("started_speaking_at"):
            t.reply_metrics = reply_metrics(t, m, self._so_far)
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
        self._tools.executed(ev, self._turn, self.call_log, self._so_far)

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
                if self._turn is not None:
                    request_marks(self._turn, stage, mtr, seconds, self._so_far, self._turn.span)
                elif self.greeting.pending:
                    request_marks(self.greeting, stage, mtr, seconds, self._so_far, self.scope.span)
                if not mtr.cancelled:
                    _metrics.record_time_to_first_chunk(stage, seconds, provider=provider, model=model)

    def _on_false_interruption(self, ev: AgentFalseInterruptionEvent) -> None:
        with internal_errors("livekit.false_interruption"):
            span = self._turn.span if self._turn is not None else self.scope.span
            self.interruptions.false_interruption(float(ev.created_at), span, resumed=bool(ev.resumed))

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
            segments = turn_anatomy(t, self._budgets)
        end = t.idle_at if t.idle_at is not None else (at if at is not None else time.time())
        t.span.end(end_time=_ns(max(end, t.started_at)))
        self.turns.append(measured(t, segments))

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
        with internal_errors("livekit.greeting"):
            self._close_greeting()
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
