"""The production entry point: the tyre-shop agent as a LiveKit Agents server.

    python -m agent dev      # against LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET
    python -m agent start

Providers come from the environment (install the ``providers`` extra: ``pip install .[providers]``):

* ``VOXPULSE_STT_MODEL`` (default ``nova-3``, Deepgram, language ``VOXPULSE_LANGUAGE``=``multi``)
* ``VOXPULSE_LLM_MODEL`` (default ``gpt-4o-mini``, OpenAI)
* ``VOXPULSE_TTS_MODEL`` / ``VOXPULSE_TTS_VOICE`` (default ``gpt-4o-mini-tts`` / ``alloy``, OpenAI)
* ``VOXPULSE_PROVIDERS=inference`` uses LiveKit Inference model strings instead of the plugins.
* ``OPERATOR_SIP_URI`` (e.g. ``tel:+380441234567``): where ``transfer_to_operator`` sends the caller.
* ``STORE_API_URL``: the store API; telemetry settings: see docs/library-api.md (``OTEL_*``, ``VOXPULSE_*``).

Each job (one call) runs in its own process: telemetry is configured there, the session is
instrumented with ``telemetry.livekit.instrument_session`` (call_id = the room name, caller = the
SIP participant's number) and spans are flushed when the call ends.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from livekit.agents import AgentServer, AgentSession, JobContext, JobProcess

import telemetry
from telemetry.livekit import instrument_session

from .assistant import TyreAssistant
from .store import StoreClient

__all__ = ["entrypoint", "server"]

log = logging.getLogger("agent.server")
AGENT_VERSION = os.environ.get("VOXPULSE_AGENT_VERSION") or telemetry.__version__


def _providers(proc: JobProcess) -> dict[str, Any]:
    """STT/LLM/TTS/VAD from the environment; the plugin imports are lazy (optional extra)."""
    stt_model = os.environ.get("VOXPULSE_STT_MODEL", "nova-3")
    llm_model = os.environ.get("VOXPULSE_LLM_MODEL", "gpt-4o-mini")
    tts_model = os.environ.get("VOXPULSE_TTS_MODEL", "gpt-4o-mini-tts")
    voice = os.environ.get("VOXPULSE_TTS_VOICE", "alloy")
    language = os.environ.get("VOXPULSE_LANGUAGE", "multi")
    vad = proc.userdata.get("vad")
    if os.environ.get("VOXPULSE_PROVIDERS", "plugins") == "inference":
        return {"stt": f"deepgram/{stt_model}:{language}", "llm": f"openai/{llm_model}",
                "tts": f"openai/{tts_model}:{voice}", "vad": vad}
    from livekit.plugins import deepgram, openai

    return {
        "stt": deepgram.STT(model=stt_model, language=language),
        "llm": openai.LLM(model=llm_model),
        "tts": openai.TTS(model=tts_model, voice=voice),
        "vad": vad,
    }


def prewarm(proc: JobProcess) -> None:
    try:
        from livekit.plugins import silero

        proc.userdata["vad"] = silero.VAD.load()
    except ImportError:  # falls back to LiveKit's default VAD
        log.warning("livekit-plugins-silero not installed; using the default VAD")


server = AgentServer(setup_fnc=prewarm)


def _sip_caller(ctx: JobContext) -> tuple[str | None, Any]:
    from livekit import rtc

    for p in ctx.room.remote_participants.values():
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
            return p.attributes.get("sip.phoneNumber"), p
    return None, None


@server.rtc_session(agent_name=os.environ.get("VOXPULSE_AGENT_NAME", "tyre-agent"))
async def entrypoint(ctx: JobContext) -> None:
    # setup_logs=True: JSON lines with call and trace ids even though LiveKit's job process already
    # has a root handler
    handle = telemetry.configure(service_name=os.environ.get("OTEL_SERVICE_NAME", "tyre-agent"),
                                 service_version=AGENT_VERSION, setup_logs=True)

    async def flush_telemetry() -> None:
        await handle.flush(timeout=5.0)

    ctx.add_shutdown_callback(flush_telemetry)
    await ctx.connect()
    participant = await ctx.wait_for_participant()
    caller, sip = _sip_caller(ctx)

    async def transfer(reason: str) -> None:
        target = os.environ.get("OPERATOR_SIP_URI")
        if not target or sip is None:
            log.warning("transfer requested (%s) but no OPERATOR_SIP_URI / SIP participant", reason)
            return
        from livekit import api

        await ctx.api.sip.transfer_sip_participant(api.TransferSIPParticipantRequest(
            room_name=ctx.room.name, participant_identity=sip.identity, transfer_to=target,
        ))

    session: AgentSession[None] = AgentSession(**_providers(ctx.proc), max_tool_steps=4)
    store = StoreClient()
    try:
        async with instrument_session(
            session, call_id=ctx.room.name, room=ctx.room.name, caller=caller,
            direction="outbound" if ctx.job.metadata and "outbound" in ctx.job.metadata else "inbound",
        ):
            await session.start(TyreAssistant(store, on_transfer=transfer), room=ctx.room)
            log.info("call started", extra={"participant": participant.identity})
    finally:
        await store.aclose()
        await handle.flush(timeout=5.0)
