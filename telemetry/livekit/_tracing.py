"""LiveKit Agents' own spans: routed into our pipeline, marked and nested (the span hook).

* :func:`_route_tracer` points LiveKit's tracer at our provider; ``configure()`` and
  ``capture_telemetry()`` call it through ``telemetry._instrumentation.route_livekit``, only in a
  process that imports livekit-agents (``import telemetry`` alone never imports LiveKit).
* :func:`_on_span_start`, registered with ``telemetry._processors.add_start_hook`` at import, sees
  every span that starts: it marks LiveKit's job traces as calls and nests LiveKit's turn spans
  under the ``turn`` span of their session (:func:`_reparent`).
* the tool decorators leave LiveKit's ``RunContext`` argument out of the recorded arguments
  (:func:`_is_run_context`, registered at import).
"""

from __future__ import annotations

import time
import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import Span as SdkSpan

from telemetry._callmap import CALLS
from telemetry._processors import add_start_hook
from telemetry.decorators import _skip_framework_argument
from telemetry.redaction import ContentMode
from telemetry.semconv import LIVEKIT_JOB_ROOT, LIVEKIT_TURN_SPANS

if TYPE_CHECKING:
    from telemetry.livekit._session import SessionInstrumentation

__all__: list[str] = []

# the session being instrumented in this context (its agent_session span starts inside)
_CURRENT: ContextVar[SessionInstrumentation | None] = ContextVar("voxpulse_livekit_session", default=None)
# instrumented sessions by the span id of their LiveKit agent_session span
_SESSIONS: weakref.WeakValueDictionary[int, SessionInstrumentation] = weakref.WeakValueDictionary()


def _on_span_start(span: SdkSpan, parent_context: otel_context.Context | None) -> None:
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
        parent = span.parent
        instr = _SESSIONS.get(parent.span_id) if parent is not None else None
        if instr is not None:
            try:
                new_parent = instr._turn_parent(span)
                if new_parent is not None:
                    _reparent(span, new_parent)
            except Exception as exc:  # never into LiveKit's span creation
                instr._contain("livekit.turn_span", exc)


def _reparent(span: SdkSpan, parent: trace.SpanContext) -> None:
    """Makes ``parent`` the parent of ``span``, which has just started (no processor, exporter or
    child has seen its parent yet).

    Why a private attribute: LiveKit starts its turn spans (``user_turn``, ``agent_turn``, ...)
    itself, under its ``agent_session`` span, and offers no way to pass them a parent; the
    OpenTelemetry SDK offers no setter for a span's parent either. Its ``Span`` keeps the parent in
    ``_parent`` (read by ``ReadableSpan.parent`` and by ``_readable_span()``, which exporters
    receive). ``tests/telemetry/test_livekit_routing.py`` fails when the SDK keeps it elsewhere.
    """
    if not hasattr(span, "_parent"):
        raise TypeError(f"the OpenTelemetry SDK's {type(span).__name__} keeps no _parent: cannot nest {span.name}")
    span._parent = parent


def _route_tracer(tracer_provider: trace.TracerProvider, content: ContentMode) -> None:
    """Routes LiveKit Agents' own spans into our provider (metrics follow the global provider).

    LiveKit's content attributes (prompts, chat context, transcripts, tool arguments, serialised on
    the event loop for every LLM request) are captured only with ``content="full"``; otherwise our
    own spans carry the redacted transcripts and tool arguments (turn, speech_to_text,
    execute_tool), which costs far less CPU per call.
    """
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


add_start_hook(_on_span_start)
_skip_framework_argument(_is_run_context)
