"""The production entry point: the tyre-shop agent as a LiveKit Agents worker.

    python -m agent start    # against LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET
    python -m agent dev

The worker is built by :func:`build_server` when it starts (``python -m agent``), from the
variables of :mod:`agent.settings`; importing this module reads nothing.

The worker registers with the LiveKit server under ``VOXPULSE_AGENT_NAME`` (default
``tyre-agent``) and takes calls by **explicit dispatch** (a SIP dispatch rule or
``CreateAgentDispatch`` naming that agent). Each call is one job, run in a process of its own:

* **set-up** (:func:`prewarm`, LiveKit's ``setup_fnc``, before any job reaches the process):
  ``telemetry.configure()`` -- here and not in the entrypoint, so that LiveKit's job root span
  ``job_entrypoint`` (opened before the entrypoint runs) is recorded and the whole call is one
  trace, and so that the instrumentation imports never block a call's event loop -- and the VAD;
* **entrypoint**: connect, wait for the caller, one ``AgentSession`` instrumented by
  ``telemetry.livekit.instrument_session`` (call_id from the SIP call id, else the room's id);
* **end**: when the session closes (the caller hung up, a transfer, an error) the job is shut
  down at once (``ctx.shutdown``); LiveKit would otherwise keep it until the room empties. The
  telemetry handle flushes when the job process exits.

Providers (``VOXPULSE_PROVIDERS``):

* ``plugins`` (default; ``pip install .[providers]``): Deepgram STT (``VOXPULSE_STT_MODEL``,
  default ``nova-3``, language ``VOXPULSE_LANGUAGE``=``multi``), OpenAI LLM (``VOXPULSE_LLM_MODEL``,
  default ``gpt-4o-mini``) and TTS (``VOXPULSE_TTS_MODEL`` / ``VOXPULSE_TTS_VOICE``, default
  ``gpt-4o-mini-tts`` / ``alloy``), Silero VAD;
* ``inference``: LiveKit Inference model strings for the same models;
* ``local`` (``pip install .[realcalls]``; the demo, tests and benchmarks): Silero VAD, a SCRIPTED
  STT, the fake LLM and espeak-ng TTS, see ``agent.local`` -- no keys, real audio.

Also: ``OPERATOR_SIP_URI`` (e.g. ``tel:+380441234567``), where ``transfer_to_operator`` sends the
caller; ``STORE_API_URL``, the store API; ``VOXPULSE_MAX_CALLS``, calls one worker takes at once
(its load is active calls / this; default 5, what 2 cores carry with the callers on the same
machine); telemetry settings: the library's (``OTEL_SERVICE_NAME``, default ``voxpulse-agent``,
``OTEL_SDK_DISABLED``, the exporter...), read by ``telemetry.configure()``; every variable:
docs/configuration.md.
"""

from __future__ import annotations

import importlib
import json
import logging
from typing import Any

from livekit.agents import AgentServer, AgentSession, JobContext, JobProcess

import telemetry
from telemetry.livekit import instrument_session
from telemetry.logs import JsonFormatter, context_filter

from . import settings, shop_api
from .assistant import TyreAssistant
from .shop_api import StoreClient

__all__ = ["build_server", "entrypoint", "prewarm"]

log = logging.getLogger("agent.server")
DRAIN_TIMEOUT_S = 60  # SIGTERM: calls in progress get this long to end (LiveKit's default is an hour)


def _providers(ctx: JobContext, proc: JobProcess) -> dict[str, Any]:
    """STT/LLM/TTS/VAD from the environment; the plugin imports are lazy (optional extras)."""
    vad = proc.userdata.get("vad")
    kind = _providers_kind()
    if kind == "local":
        from .local import EspeakTTS, ScriptedLineSTT, participant_line_source
        from .sim.latency import LatencyModel
        from .sim.providers import ScriptedLLM

        return {
            "vad": vad,
            "stt": ScriptedLineSTT(participant_line_source(ctx.room)),
            "llm": ScriptedLLM(ttft=LatencyModel(0.25, 0.2)),
            "tts": EspeakTTS(),
        }
    stt_model, llm_model = settings.text(settings.STT_MODEL), settings.text(settings.LLM_MODEL)
    tts_model, voice = settings.text(settings.TTS_MODEL), settings.text(settings.TTS_VOICE)
    language = settings.text(settings.LANGUAGE)
    if kind == "inference":
        return {"stt": f"deepgram/{stt_model}:{language}", "llm": f"openai/{llm_model}",
                "tts": f"openai/{tts_model}:{voice}", "vad": vad}
    # module imports: with the silero plugin installed (the realcalls extra), livekit.plugins is a
    # package mypy reads, and the optional plugins below are absent from it
    import livekit.plugins.deepgram as deepgram
    import livekit.plugins.openai as openai

    return {
        "stt": deepgram.STT(model=stt_model, language=language),
        "llm": openai.LLM(model=llm_model),
        "tts": openai.TTS(model=tts_model, voice=voice),
        "vad": vad,
    }


def _fallback_llm() -> Any:
    """The faster model the agent switches to when a turn runs over its latency budget
    (``TyreAssistant.over_budget``): ``VOXPULSE_FALLBACK_LLM_MODEL`` with the plugins, a quicker
    scripted model with the local pipeline; ``None``: no fallback."""
    kind = _providers_kind()
    if kind == "local":
        from .sim.latency import LatencyModel
        from .sim.providers import ScriptedLLM

        return ScriptedLLM(ttft=LatencyModel(0.05, 0.1), model="sim-llm-fast")
    model = settings.text(settings.FALLBACK_LLM_MODEL)
    if not model or kind != "plugins":
        return None
    import livekit.plugins.openai as openai

    return openai.LLM(model=model)


def prewarm(proc: JobProcess) -> None:
    """LiveKit's set-up function: runs in each job process before it is given a job."""
    # Telemetry first: LiveKit opens the job's root span before the entrypoint runs, so a tracer
    # set up in the entrypoint would miss it and split the call into several traces; the imports
    # of the instrumentation (100-200 ms) would also block the call's event loop there.
    # The job process forwards its log records to the worker process, which writes them (see
    # _redacted_worker_logs): no handler of ours here, only the call's ids on each record.
    # service name, exporter, endpoint, OTEL_SDK_DISABLED...: the library's settings, read by it
    proc.userdata["telemetry"] = telemetry.configure(
        service_version=settings.text(settings.AGENT_VERSION) or telemetry.__version__, setup_logs=False,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(context_filter())
    shop_api.prepare()  # the TLS context: ~25-350 ms of blocking work, not on a call's loop
    # (configure() imported the call history's asyncpg and redis here when DATABASE_URL is set)
    try:
        from livekit.plugins import silero

        proc.userdata["vad"] = silero.VAD.load()
    except ImportError:  # falls back to LiveKit's default VAD
        log.warning("livekit-plugins-silero not installed; using the default VAD")
    # LiveKit's sentence tokenizer builds its hyphenation tables on first use (100-200 ms on a call's
    # loop, seen in real calls): build them here
    from livekit.agents.tokenize import _basic_hyphenator

    _basic_hyphenator.hyphenate_word("warmup")
    if _providers_kind() == "local":
        # the local pipeline's modules: imported on a call's loop they stalled it 285-510 ms
        for module in ("agent.local", "agent.sim.providers", "agent.sim.latency", "agent.sim.dialogue"):
            importlib.import_module(module)


def _load(srv: AgentServer) -> float:
    """The worker's load for LiveKit's dispatcher: active calls over VOXPULSE_MAX_CALLS (not the
    machine's CPU, which other processes share)."""
    return min(1.0, len(srv.active_jobs) / _max_calls)


_max_calls = 1  # build_server() sets it from VOXPULSE_MAX_CALLS (the worker's process only)


def _providers_kind() -> str:
    return settings.choice(settings.PROVIDERS, None, settings.PROVIDERS.choices)


def build_server() -> AgentServer:
    """The worker, from the variables of :mod:`agent.settings` (read now, not at import time)."""
    global _max_calls
    _max_calls = settings.whole_number(settings.MAX_CALLS, minimum=1)
    server = AgentServer(
        setup_fnc=prewarm, load_fnc=_load, load_threshold=0.999, drain_timeout=DRAIN_TIMEOUT_S,
        # LiveKit reserves threshold/num_idle_processes of load per job it accepts while none is active
        # yet: this many calls arriving at once from idle are accepted (the rest would be refused)
        num_idle_processes=settings.whole_number(settings.IDLE_PROCESSES),
        port=settings.whole_number(settings.WORKER_PORT),
    )
    server.on("worker_started", _redacted_worker_logs)
    server.rtc_session(entrypoint, agent_name=str(settings.text(settings.AGENT_NAME)))
    return server


def _redacted_worker_logs() -> None:
    """Every line the worker writes (its own and its job processes') goes through VoxPulse's JSON
    formatter: PII redacted (a SIP room is named after the caller's number, and LiveKit logs the
    room name), call_id and trace_id on the call's lines."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())


def _sip_participant(ctx: JobContext) -> Any:
    """The SIP participant a transfer moves (instrument_session finds the caller's number itself)."""
    from livekit import rtc

    for p in ctx.room.remote_participants.values():
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
            return p
    return None


def _direction(metadata: str) -> str:
    try:
        data = json.loads(metadata) if metadata else {}
    except ValueError:
        data = {}
    return "outbound" if isinstance(data, dict) and data.get("direction") == "outbound" else "inbound"


async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    participant = await ctx.wait_for_participant()
    sip = _sip_participant(ctx)

    async def transfer(reason: str) -> None:
        target = settings.text(settings.OPERATOR_SIP_URI)
        if not target or sip is None:
            log.warning("transfer requested (%s) but no OPERATOR_SIP_URI / SIP participant", reason)
            return
        from livekit import api

        await ctx.api.sip.transfer_sip_participant(api.TransferSIPParticipantRequest(
            room_name=ctx.room.name, participant_identity=sip.identity, transfer_to=target,
        ))

    session: AgentSession[None] = AgentSession(**_providers(ctx, ctx.proc), max_tool_steps=4)

    def end_job(ev: Any) -> None:
        # The call ends with the session (the caller hung up, a transfer, an error): end the job
        # now rather than when the server closes the empty room. Never raises into LiveKit.
        try:
            ctx.shutdown(reason=f"session closed: {getattr(ev.reason, 'value', ev.reason)}")
        except Exception:
            log.exception("could not shut the job down")

    session.on("close", end_job)
    handle = ctx.proc.userdata.get("telemetry")

    async def after_call(reason: str) -> None:
        # LiveKit runs this after the room was left: send the call's spans now (the job's own last
        # spans follow when the process exits). instrument_session wrote the call history out.
        if handle is not None:
            await handle.flush(timeout=5.0)

    ctx.add_shutdown_callback(after_call)
    store = StoreClient()
    try:
        # call_id: the SIP call id, else the room's id (never the room name: it holds the number)
        # with DATABASE_URL set it also keeps the call's history (a CallLogger opened and closed per call)
        # a turn over its latency budget (VOXPULSE_TURN_BUDGET) switches the rest of the call to the
        # fallback model, at the moment it runs over (see TyreAssistant.over_budget)
        assistant = TyreAssistant(store, on_transfer=transfer, fallback_llm=_fallback_llm())
        async with instrument_session(session, direction=_direction(ctx.job.metadata),
                                      on_budget_exceeded=assistant.over_budget):
            await session.start(assistant, room=ctx.room, record=False)
            log.info("call started", extra={"participant_kind": int(participant.kind)})
    finally:
        await store.aclose()
