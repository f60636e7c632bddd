"""LiveKit Agents integration: the one package that knows LiveKit's internals.

One call instruments an ``AgentSession`` for one phone call::

    async with instrument_session(session) as call:
        await session.start(agent, room=ctx.room)
    # leaves when the session closed (hang-up, transfer, shutdown)

``configure()`` routes LiveKit Agents' own tracer into our provider and the tool decorators leave
LiveKit's ``RunContext`` argument out of the recorded tool arguments (``_tracing``); both live in
this package, so a LiveKit API change touches this one package. ``configure()`` imports it only in
a process that imports livekit-agents (or runs a LiveKit job): ``import telemetry`` and
``configure()`` alone never import LiveKit.
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
  :class:`telemetry.livekit._ttfw._TtfwProbe`): the caller's last audible frame received -> the agent's first audible
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
* the anatomy of each turn: its time to first word cut into parts on one clock (transport, VAD,
  STT, end of turn, the agent's hook, tools, queueing, LLM, TTS, playback, publication), summing
  to it, on the turn span and in ``voice.turn.segment.duration`` (``_anatomy``);
* interruptions both ways and how fast the agent yields (``_interruptions``);
* latency budgets: a turn that runs over while the caller waits fires the session's budget hooks
  at once, so the agent can say a filler phrase or switch models (``_budgets``);
* the call outcome when the session closes (a transfer set earlier wins);
* the call history (:class:`CallLog`), fed with call start/end, turns and tool calls: the one
  given, else -- with a database configured (``DATABASE_URL``) and the ``history`` extra installed --
  a ``telemetry.history.CallLogger`` it creates, starts and closes for this call itself;
  ``call_log=False`` opts out.

Every event handler it registers with LiveKit is guarded: an error in it is logged (and, under
tests, re-raised when the call scope exits), never raised into LiveKit, where it would break the
turn.

The package's modules (only this one is public):

* ``_session``: :class:`SessionInstrumentation`: subscribing to the session's events, the handlers'
  dispatch, the call scope and the end of the call;
* ``_turns``: a turn's state and what is measured per turn (:class:`MeasuredTurn`: time to first
  word, the ``speech_to_text`` span, the glue from LiveKit's metrics to the turn's anatomy);
* ``_tools``: the agent's tool calls, and anomalous ones (``voice.tool.anomalies``);
* ``_calllog``: the call history fed (:class:`CallLog`), and the ``CallLogger`` opened per call;
* ``_ttfw``: the time-to-first-word audio probe;
* ``_tracing``: LiveKit's tracer routed into our provider, and the span hook that nests LiveKit's
  turn spans under ours;
* ``_job``: the call's identity from the LiveKit job;
* ``_pricing``: the session's usage priced with a ``telemetry.pricing.PriceTable``;
* ``_anatomy``: a turn's time to first word in parts that sum to it (``voice.turn.segment.*``);
* ``_interruptions``: barge-ins, the agent talking over the caller, false interruptions;
* ``_budgets``: latency budgets watched during the call, and the hook the agent acts with;
* ``_plugin``, ``_preload``: VoxPulse registered as a LiveKit plugin on import, so that LiveKit's
  forkserver loads it once for every job process (nothing else of a plugin).
"""

from __future__ import annotations

# (importing _session imports _tracing, which registers the span hook for LiveKit's spans)
from telemetry.livekit._budgets import BudgetBreach, BudgetHook, Budgets
from telemetry.livekit._calllog import CallLog
from telemetry.livekit._plugin import register as _register_plugin
from telemetry.livekit._session import SessionInstrumentation, instrument_session
from telemetry.livekit._ttfw import AUDIBLE_RMS
from telemetry.livekit._turns import MeasuredTurn

__all__ = [
    "AUDIBLE_RMS",
    "BudgetBreach",
    "BudgetHook",
    "Budgets",
    "CallLog",
    "MeasuredTurn",
    "SessionInstrumentation",
    "instrument_session",
]

# LiveKit's forkserver preloads VoxPulse for the job processes (``_plugin``, ``_preload``)
_register_plugin()
