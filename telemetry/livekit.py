"""LiveKit Agents integration: the one module that knows LiveKit's internals.

One call instruments an ``AgentSession`` for one phone call::

    async with instrument_session(session) as call:
        await session.start(agent, room=ctx.room)
    # leaves when the session closed (hang-up, transfer, shutdown)

``configure()`` routes LiveKit Agents' own tracer into our provider (:func:`_route_tracer`) and the
tool decorators leave LiveKit's ``RunContext`` argument out of the recorded tool arguments; both
live here, so a LiveKit API change touches this one module.
In a LiveKit worker, ``telemetry.configure()`` belongs in the worker's set-up function (LiveKit's
``setup_fnc``, run in each job process before its job): LiveKit opens the job's root span
``job_entrypoint`` before the entrypoint runs, so the whole call -- dispatch, connect, the session,
shutdown -- is then one trace (see ``agent/server.py``).

What it does, per call (several concurrent sessions in one process never mix: every piece of state
lives on the :class:`SessionInstrumentation` of its session, and every span it creates names its
parent explicitly):

* opens the call scope (``telemetry.call``) with a call_id that never holds personal data: given,
  else LiveKit SIP's call id (the caller's ``sip.callID`` attribute), else the room's id, else the
  job's id, else generated -- never the room name, which LiveKit's SIP dispatch builds from the
  caller's number (it goes on the call span as the PII attribute ``lk.pii.room_name``).
  ``session.start()`` runs inside the scope, so LiveKit's own spans join the call's trace and
  carry call_id; LiveKit's job spans outside the scope (``job_entrypoint``, ``room_connect``,
  ``job_shutdown``, ...) get it from the call map (``telemetry._callmap``), and the job's trace
  is held back until the call's id is known;
* a ``turn`` span per caller utterance and the agent's answer (``voice.turn.index``,
  ``voice.turn.time_to_first_word`` in seconds, tool-call count, the texts under PII keys), which
  LiveKit's ``user_turn``,
  ``on_user_turn_completed`` and ``agent_turn`` spans of that turn are nested under: one subtree
  per turn (the caller's speech, end of turn, STT, LLM, tools, TTS, playout);
* a ``speech_to_text`` span per user turn (LiveKit has none): from the end of the caller's speech
  to the final transcript, with provider, model and audio seconds;
* time to first word per turn, as close to the caller's ear as the agent can know (see
  :class:`_TtfwProbe`): the caller's last audible frame received -> the agent's first audible
  frame pushed into the room's audio source (plus the audio queued ahead of it), plus the media
  latency both ways estimated from the caller track's jitter buffer;
* LiveKit's metric events -> ``voice.stage.time_to_first_chunk`` (LLM ttft, TTS ttfb, STT
  end-of-speech -> final transcript);
* usage and cost per call from a :class:`telemetry.pricing.PriceTable` (``call.add_cost`` per
  provider/model);
* every duration LiveKit reports (or that two of its timestamps give) passes one guard,
  ``telemetry._quality``: a negative, wrapped, non-finite one, one longer than the call so far, or
  one from a clock that went backwards is counted in ``voxpulse.data.errors`` (by source) and put on
  the span as a ``data_error`` event with the raw value, never into a histogram or a duration
  attribute;
* anomalous tool calls (a tool the agent does not have; the same tool hammered in one turn) ->
  ``voice.tool.anomalies`` (a made-up tool name is labelled ``_OTHER`` there; the real name stays
  on the span event);
* the call outcome when the session closes (a transfer set earlier wins);
* the call history (:class:`CallLog`), fed with call start/end, turns and tool calls: the one
  given, else -- with a database configured (``DATABASE_URL``) and the ``history`` extra installed --
  a ``telemetry.history.CallLogger`` it creates, starts and closes for this call itself;
  ``call_log=False`` opts out.

Every event handler it registers with LiveKit is guarded: an error in it is logged (and, under
tests, re-raised when the call scope exits), never raised into LiveKit, where it would break the
turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import logging
import math
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, Protocol, runtime_checkable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from telemetry import _env, _quality
from telemetry import metrics as _metrics
from telemetry._callmap import CALLS
from telemetry._errors import internal_error, internal_errors, raise_internal_errors
from telemetry._processors import add_start_hook
from telemetry._state import STATE
from telemetry.calls import CallScope
from telemetry.decorators import _skip_framework_argument
from telemetry.pricing import DEFAULT_PRICES, PriceTable
from telemetry.redaction import ContentMode
from telemetry.semconv import (
    LIVEKIT_JOB_ROOT,
    LIVEKIT_TURN_SPANS,
    OTHER,
    Attr,
    CallOutcome,
    SpanName,
    Stage,
    error_type,
)

__all__ = [
    "AUDIBLE_RMS",
    "CallLog",
    "MeasuredTurn",
    "SessionInstrumentation",
    "instrument_session",
]

_logger = logging.getLogger("voxpulse.livekit")

# LiveKit's LLM ttft / TTS ttfb when nothing was generated
_NOT_MEASURED: Final = -1.0

# repeated calls of one tool within one turn that look like enumeration / data dumping
_REPEATED_TOOL_THRESHOLD: Final = 4

# Time to first word, at the caller's ear (see _TtfwProbe).
AUDIBLE_RMS: Final = 300.0  # a 10 ms block of int16 samples with a higher RMS is audible
AUDIBLE_BLOCK_S: Final = 0.010
# One way, on top of the receiving jitter buffer: the Opus packet (20 ms) and the encoder's
# look-ahead (6.5 ms); the sender's capture queue and the receiver's playout frame add about 1 ms
# more. 28 ms is what bench/bench_realcalls.py's calls placed one at a time leave, per direction,
# once twice the jitter-buffer delay is taken off the path the agent cannot see (loopback, 2-core
# machine, 14 turns, 2026-11-27: 28 +- 6 ms). An earlier 55 ms came from a loaded machine, where the
# caller's own scheduling delays (not the media path) made up the difference.
MEDIA_FRAMING_S: Final = 0.028
# The last audible frame counts as the end of the caller's speech only within this window before
# the VAD's end of speech (the VAD ends speech 100-250 ms after the last audible frame; a later
# "audible" frame is line noise).
VAD_TRAILING_WINDOW_S: Final = 0.6


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


def _usage_costs(
    usage: Any, prices: PriceTable, *, within_s: float | None = None, span: Span | None = None
) -> list[_UsageCost]:
    """Applies the price table to a LiveKit ``AgentSessionUsage`` (one entry per provider/model).
    An impossible audio duration (see ``telemetry._quality``; STT audio is bounded by the call's
    duration so far, ``within_s``) is a data error and counts as none."""
    out: list[_UsageCost] = []
    for u in getattr(usage, "model_usage", ()):
        kind = getattr(u, "type", "")
        provider, model = str(getattr(u, "provider", "") or "unknown"), str(getattr(u, "model", "") or "unknown")
        if kind == "llm_usage":
            it, ot = int(u.input_tokens), int(u.output_tokens)
            usd = prices.cost(Stage.LLM, provider, model, input_tokens=it, output_tokens=ot)
            out.append(_UsageCost(Stage.LLM, provider, model, usd, input_tokens=it, output_tokens=ot))
        elif kind == "tts_usage":
            chars = int(u.characters_count)
            secs = _quality.duration("livekit.tts.audio_duration", u.audio_duration, span=span) or 0.0
            usd = prices.cost(Stage.TTS, provider, model, characters=chars, audio_seconds=0.0,
                              input_tokens=int(u.input_tokens), output_tokens=int(u.output_tokens))
            out.append(_UsageCost(Stage.TTS, provider, model, usd, characters=chars, audio_seconds=secs))
        elif kind == "stt_usage":
            secs = _quality.duration("livekit.stt.audio_duration", u.audio_duration, within_s=within_s,
                                     span=span) or 0.0
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
    heard_end: float | None = None  # start of TTFW: the caller's speech end as the agent knows it
    ttfw_method: str = "vad"
    audible_out_at: float | None = None  # end of TTFW: the first audible frame reaches the room
    ttfw_agent_s: float | None = None
    ttfw_network_s: float | None = None


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
        session: Any,
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
    ) -> None:
        self.session = session
        self.prices = price_table or DEFAULT_PRICES
        self.call_log: CallLog | None = call_log or None
        self._auto_call_log = call_log is None
        self._owned_call_log: Any = None
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
        self._handlers: list[tuple[str, Any]] = []
        self._tracer = STATE.tracer
        self._finished = False
        self._errors: list[BaseException] = []  # handler errors, re-raised at exit under tests
        self._session_span_ctx: trace.SpanContext | None = None  # LiveKit's agent_session span
        self._instr_token: Any = None
        self._probe = _TtfwProbe(self)

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
        handlers: dict[str, Any] = {
            "user_state_changed": self._on_user_state,
            "agent_state_changed": self._on_agent_state,
            "conversation_item_added": self._on_item,
            "function_tools_executed": self._on_tools,
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

    def _on_user_state(self, ev: Any) -> None:
        with internal_errors("livekit.user_state"):
            now = float(getattr(ev, "created_at", time.time()))
            if ev.new_state == "speaking":
                self._user_speech_started = now
                t = self._turn
                # with tracing on, LiveKit's user_turn span opened the turn a moment ago
                if t is None or t.answered or t.agent_started_at is not None:
                    self._open_turn(now)
            elif ev.old_state == "speaking":
                self._last_user_stop = now
                self._probe.end_of_speech()

    def _on_agent_state(self, ev: Any) -> None:
        with internal_errors("livekit.agent_state"):
            self._probe.install()  # the room's audio in and out exist once the session started
            t = self._turn
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
        t.ttfw_s, t.ttfw_agent_s, t.ttfw_network_s = ttfw, agent_s, network_s
        t.span.set_attributes({
            Attr.TURN_TTFW: round(ttfw, 4),
            Attr.TURN_TTFW_AT_AGENT: round(agent_s, 4),
            Attr.TURN_MEDIA_LATENCY: round(network_s, 4),
            Attr.TURN_TTFW_METHOD: t.ttfw_method,
        })
        with trace.use_span(t.span, end_on_exit=False):  # exemplar -> this turn
            _metrics.record_time_to_first_word(ttfw)

    def _on_audible_out(self, at: float) -> None:
        """The probe saw the answer's first audible frame go into the room's audio source."""
        t = self._turn
        if t is None or t.audible_out_at is not None or not t.user_text:
            return
        t.audible_out_at = at
        self._complete_ttfw(t)

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
        if t.audible_out_at is None:
            t.heard_end, t.ttfw_method = self._probe.speech_end(t.stopped_speaking_at)
            self._probe.arm()
        t.span.set_attribute(Attr.TURN_USER_TEXT, t.user_text)
        delay = _quality.duration("livekit.stt.transcription_delay", m.get("transcription_delay"),
                                  within_s=self._so_far(created_at), span=t.span)
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

    def _on_assistant_message(self, item: Any, text: str, m: Mapping[str, Any]) -> None:
        t = self._turn
        interrupted = bool(getattr(item, "interrupted", False))
        if t is None or not t.user_text:
            return  # greeting or an agent-initiated message: not a turn
        t.agent_text = f"{t.agent_text} {text}".strip() if t.agent_text else text
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
            if kind == "llm_metrics" and not mtr.cancelled:
                stage, source, raw = Stage.LLM, "livekit.llm.ttft", mtr.ttft
            elif kind == "tts_metrics" and not mtr.cancelled:
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
                _metrics.record_time_to_first_chunk(stage, seconds, provider=provider, model=model)

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
        t.span.set_attribute(Attr.TURN_TOOL_CALLS, t.tool_calls)
        end = t.idle_at if t.idle_at is not None else (at if at is not None else time.time())
        t.span.end(end_time=_ns(max(end, t.started_at)))
        self.turns.append(
            MeasuredTurn(
                index=t.index, ttfw_s=t.ttfw_s, user_text=t.user_text, agent_text=t.agent_text,
                tool_calls=tuple(t.tool_names), stopped_speaking_at=t.stopped_speaking_at,
                agent_started_at=t.agent_started_at, ttfw_agent_s=t.ttfw_agent_s,
                ttfw_network_s=t.ttfw_network_s, ttfw_method=t.ttfw_method if t.ttfw_s is not None else None,
                heard_end=t.heard_end,
            )
        )

    # -- LiveKit's spans (the span hook) ---------------------------------------------------------
    def _session_span_started(self, span: Any) -> None:
        if self._session_span_ctx is None:
            self._session_span_ctx = span.get_span_context()
            _SESSIONS[self._session_span_ctx.span_id] = self

    def _turn_parent(self, span: Any) -> trace.SpanContext | None:
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


# ------------------------------------------------------------------------------------------------
# time to first word, at the caller's ear
# ------------------------------------------------------------------------------------------------
DEFAULT_JITTER_BUFFER_S: Final = 0.040  # before the first WebRTC stats of the caller's track


class _TtfwProbe:
    """Measures time to first word as close to the caller's ear as the agent can know.

    * start -- the caller's last audible frame as it reached the agent: a tap on the session's
      audio input keeps the time of the last 10 ms block louder than :data:`AUDIBLE_RMS`. At the
      VAD's end of speech it is the end of the caller's speech when it lies within
      :data:`VAD_TRAILING_WINDOW_S` before the VAD's own end of speech (which the VAD declares
      100-250 ms after the last audible frame); otherwise the VAD's end is (method ``vad``).
    * end -- the answer's first audible block pushed into the room's audio source, plus the audio
      queued there ahead of it: when the caller's side starts to receive sound. LiveKit's own
      figure (``lk.e2e_latency``) ends at the agent-state change, when the first frame -- silence
      at the start of most TTS audio -- is pushed. Without a room audio source (an offline sink):
      the sink's playback start (method ``playback``).
    * network -- what neither end of the agent sees: the media path both ways. One way is the
      jitter-buffer delay of the caller's track at the agent (WebRTC stats over the last
      utterance) plus :data:`MEDIA_FRAMING_S`; the way back is assumed to be the same. 0 without
      a room.
    """

    def __init__(self, owner: SessionInstrumentation) -> None:
        self._owner = weakref.ref(owner)
        self.measures_output = False
        self._tap: Any = None
        self._source: Any = None
        self._last_loud: float | None = None
        self._loud_at_eos: float | None = None
        self._armed = False
        self._jitter_s: float | None = None
        self._jb_prev: tuple[float, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def install(self) -> None:
        """Taps the session's audio input and the room's audio source (idempotent; cheap)."""
        owner = self._owner()
        if owner is None or self._closed:
            return
        session = owner.session
        inputs: Any = getattr(session, "input", None)
        current_in = getattr(inputs, "audio", None)
        if current_in is not None and current_in is not self._tap:
            self._tap = _input_tap(current_in, self._on_input_frame, self.contain)
            inputs.audio = self._tap
        if self._source is None:
            source = _room_audio_source(getattr(getattr(session, "output", None), "audio", None))
            if source is not None:
                _attach_output_probe(source, self)
                self._source = source
                self.measures_output = True

    def close(self) -> None:
        self._closed = True
        self._armed = False
        for task in self._tasks:
            task.cancel()

    # -- start ------------------------------------------------------------------------------------
    def _on_input_frame(self, frame: Any) -> None:
        last = _last_audible_offset(frame)
        if last is not None:
            self._last_loud = time.time() - (_duration(frame) - last)

    def end_of_speech(self) -> None:
        """The VAD ended the caller's speech: the last audible frame so far belongs to it."""
        self._loud_at_eos = self._last_loud
        if self.measures_output and not self._closed:
            task = asyncio.get_running_loop().create_task(self._sample_jitter())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def speech_end(self, vad_stop: float | None) -> tuple[float | None, str]:
        """(when the caller's speech ended as the agent knows it, method) for a committed turn."""
        loud = self._loud_at_eos
        if vad_stop is None:
            return (loud, "audio") if loud is not None else (None, "vad")
        if loud is not None and vad_stop - VAD_TRAILING_WINDOW_S <= loud <= vad_stop + AUDIBLE_BLOCK_S:
            return loud, "audio"
        return vad_stop, "vad"

    # -- end --------------------------------------------------------------------------------------
    def arm(self) -> None:
        self._armed = not self._closed

    def on_output_frame(self, frame: Any, queued_s: float) -> None:
        if not self._armed:
            return
        offset = _first_audible_offset(frame)
        if offset is None:
            return
        self._armed = False
        owner = self._owner()
        if owner is not None:
            owner._on_audible_out(time.time() + queued_s + offset)

    # -- network ----------------------------------------------------------------------------------
    def network_s(self) -> float:
        jitter = self._jitter_s if self._jitter_s is not None else DEFAULT_JITTER_BUFFER_S
        return 2 * (jitter + MEDIA_FRAMING_S)

    def contain(self, site: str, exc: Exception) -> None:
        owner = self._owner()
        if owner is not None:
            owner._contain(site, exc)

    async def _sample_jitter(self) -> None:
        try:
            await self._read_jitter()
        except Exception as exc:
            self.contain("livekit.ttfw.stats", exc)

    async def _read_jitter(self) -> None:
        owner = self._owner()
        if owner is None:
            return
        track = _caller_audio_track(owner.session)
        if track is None:
            return
        for st in await track.get_stats():
            if st.WhichOneof("stats") != "inbound_rtp":
                continue
            inbound = st.inbound_rtp.inbound
            delay, count = float(inbound.jitter_buffer_delay), int(inbound.jitter_buffer_emitted_count)
            prev = self._jb_prev
            jitter: float | None = None
            if prev is not None and count > prev[1]:
                jitter = (delay - prev[0]) / (count - prev[1])
            elif count > 0:
                jitter = delay / count
            # an impossible jitter-buffer delay leaves the estimate as it was (a data error)
            jitter = _quality.duration("livekit.rtc.jitter_buffer_delay", jitter, within_s=owner._so_far(),
                                       span=owner.scope.span)
            if jitter is not None:
                self._jitter_s = jitter
            self._jb_prev = (delay, count)
            return


def _blocks(frame: Any) -> tuple[Any, int] | None:
    """The frame's int16 samples as rows of 10 ms (channels mixed), and the samples per row."""
    import numpy as np

    rate = int(getattr(frame, "sample_rate", 0) or 0)
    channels = int(getattr(frame, "num_channels", 1) or 1)
    data = np.frombuffer(frame.data, dtype=np.int16)
    if rate <= 0 or data.size == 0:
        return None
    per = max(1, int(rate * AUDIBLE_BLOCK_S))
    mono = data.reshape(-1, channels)[:, 0] if channels > 1 else data
    n = mono.size // per
    if n == 0:
        return mono.reshape(1, -1).astype(np.float32), mono.size
    return mono[: n * per].reshape(n, per).astype(np.float32), per


def _audible_rows(frame: Any) -> tuple[Any, int, int] | None:
    import numpy as np

    blocks = _blocks(frame)
    if blocks is None:
        return None
    rows, per = blocks
    rms = np.sqrt(np.mean(rows * rows, axis=1))
    loud = np.nonzero(rms > AUDIBLE_RMS)[0]
    if loud.size == 0:
        return None
    return loud, per, int(frame.sample_rate)


def _first_audible_offset(frame: Any) -> float | None:
    """Seconds from the frame's start to its first audible 10 ms block, or None."""
    found = _audible_rows(frame)
    if found is None:
        return None
    loud, per, rate = found
    return float(loud[0]) * per / rate


def _last_audible_offset(frame: Any) -> float | None:
    """Seconds from the frame's start to the end of its last audible 10 ms block, or None."""
    found = _audible_rows(frame)
    if found is None:
        return None
    loud, per, rate = found
    return (float(loud[-1]) + 1) * per / rate


def _duration(frame: Any) -> float:
    rate = getattr(frame, "sample_rate", 0) or 0
    return float(frame.samples_per_channel) / rate if rate else 0.0


_TAP_CLASS: type | None = None


def _input_tap(source: Any, on_frame: Callable[[Any], None], contain: Callable[[str, Exception], None]) -> Any:
    """A pass-through AudioInput in front of ``source`` that shows every frame to ``on_frame``
    (whose errors go to ``contain``: the caller's audio flows whatever happens there)."""
    global _TAP_CLASS
    if _TAP_CLASS is None:
        from livekit.agents.voice import io as lk_io

        class _AudioTap(lk_io.AudioInput):
            def __init__(self, src: Any, fn: Callable[[Any], None], on_error: Callable[[str, Exception], None]) -> None:
                super().__init__(label="voxpulse-tap", source=src)
                self._fn = fn
                self._on_error = on_error

            async def __anext__(self) -> Any:
                src = self.source
                if src is None:
                    raise StopAsyncIteration
                frame = await src.__anext__()
                try:
                    self._fn(frame)
                except Exception as exc:
                    self._on_error("livekit.ttfw.input", exc)
                return frame

        _TAP_CLASS = _AudioTap
    return _TAP_CLASS(source, on_frame, contain)


def _room_audio_source(output: Any) -> Any:
    """The ``rtc.AudioSource`` behind a session's audio output chain (RoomIO's), or None."""
    seen = 0
    while output is not None and seen < 16:
        source = getattr(output, "_audio_source", None)
        if source is not None and hasattr(source, "capture_frame") and hasattr(source, "queued_duration"):
            return source
        output = getattr(output, "next_in_chain", None)
        seen += 1
    return None


def _attach_output_probe(source: Any, probe: _TtfwProbe) -> None:
    """Shows every frame pushed into the room's audio source to ``probe`` (with the audio queued
    ahead of it), by wrapping the source's ``capture_frame`` on that one object."""
    if getattr(source, "_voxpulse_probe", None) is not None:
        source._voxpulse_probe = probe
        return
    original = source.capture_frame

    async def capture_frame(frame: Any) -> None:
        current = getattr(source, "_voxpulse_probe", None)
        if current is not None:
            try:
                current.on_output_frame(frame, float(source.queued_duration))
            except Exception as exc:  # the agent's audio flows whatever happens here
                current.contain("livekit.ttfw.output", exc)
        await original(frame)

    source._voxpulse_probe = probe
    source.capture_frame = capture_frame


def _caller_audio_track(session: Any) -> Any:
    try:
        participant = session.room_io.linked_participant
    except Exception:  # no RoomIO (offline) or not linked yet
        return None
    if participant is None:
        return None
    for pub in getattr(participant, "track_publications", {}).values():
        track = getattr(pub, "track", None)
        if track is not None and hasattr(track, "get_stats") and getattr(pub, "kind", None) == 1:  # KIND_AUDIO
            return track
    return None


# ------------------------------------------------------------------------------------------------
# LiveKit's spans: job traces and the turn subtree
# ------------------------------------------------------------------------------------------------
_CURRENT: ContextVar[SessionInstrumentation | None] = ContextVar("voxpulse_livekit_session", default=None)
_SESSIONS: weakref.WeakValueDictionary[int, SessionInstrumentation] = weakref.WeakValueDictionary()


def _on_span_start(span: Any, parent_context: otel_context.Context | None) -> None:
    """The span hook (telemetry._processors.add_start_hook), on every span that starts.

    * ``job_entrypoint``: LiveKit's job root; its trace will be a call, so the span pipeline holds
      the trace's spans that end before the call's id is known;
    * ``agent_session`` started inside :func:`instrument_session`: that session's root;
    * ``user_turn``, ``on_user_turn_completed``, ``agent_turn`` under an instrumented session's
      root: re-parented under the session's current ``turn`` (a user_turn opens the next turn).
    """
    name = span.name
    if name == LIVEKIT_JOB_ROOT:
        CALLS.expect(span.get_span_context().trace_id, time.time())
    elif name == "agent_session":
        instr = _CURRENT.get()
        if instr is not None:
            instr._session_span_started(span)
    elif name in LIVEKIT_TURN_SPANS:
        parent = getattr(span, "parent", None)
        instr = _SESSIONS.get(parent.span_id) if parent is not None else None
        if instr is not None:
            try:
                new_parent = instr._turn_parent(span)
            except Exception as exc:  # never into LiveKit's span creation
                instr._contain("livekit.turn_span", exc)
                return
            if new_parent is not None:
                span._parent = new_parent  # the SDK span's parent, before anything saw it


add_start_hook(_on_span_start)


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


@dataclass(frozen=True, slots=True)
class _JobInfo:
    room_name: str | None = None
    room_sid: str | None = None
    job_id: str | None = None
    sip_call_id: str | None = None
    caller: str | None = None

    @property
    def call_id(self) -> str | None:
        """The SIP call id, else the room's id, else the job's id: none of them personal data."""
        return self.sip_call_id or self.room_sid or self.job_id


def _from_job() -> _JobInfo:
    """What the current LiveKit job (if any) tells about the call."""
    try:
        from livekit.agents import get_job_context

        ctx = get_job_context(required=False)
    except Exception:  # no livekit or no job: not an error
        return _JobInfo()
    if ctx is None:
        return _JobInfo()
    job = getattr(ctx, "job", None)
    room_name = str(getattr(getattr(job, "room", None), "name", "") or "") or None
    room_sid = str(getattr(getattr(job, "room", None), "sid", "") or "") or None
    job_id = str(getattr(job, "id", "") or "") or None
    sip_call_id: str | None = None
    caller: str | None = None
    try:
        room_name = room_name or str(ctx.room.name) or None
        participants = list(ctx.room.remote_participants.values())
    except Exception:  # an unconnected room
        participants = []
    # a SIP participant first; LiveKit SIP stamps sip.* attributes on it (sip.callID, sip.phoneNumber)
    participants.sort(key=lambda p: 0 if _is_sip(p) else 1)
    for p in participants:
        attrs = getattr(p, "attributes", None) or {}
        if attrs.get("sip.callID") or attrs.get("sip.phoneNumber"):
            sip_call_id = str(attrs.get("sip.callID") or "") or None
            caller = str(attrs.get("sip.phoneNumber") or "") or None
            break
    return _JobInfo(room_name, room_sid, job_id, sip_call_id, caller)


def _is_sip(participant: Any) -> bool:
    try:
        from livekit import rtc

        return bool(participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP)
    except Exception:
        return False


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
