"""LiveKit's quickstart agent with VoxPulse added as docs/your-agent.md shows, and nothing else of
ours: no ``python -m agent``, LiveKit's own CLI and its default executor (a process per job). The
providers are the real calls' local ones (the callers' scripted lines, a fake LLM, espeak-ng), the
only change from the quickstart besides the agent's name (explicit dispatch) and a load that counts
calls (what the doc says a small machine needs). Run by tests/realcalls/test_stock_agent.py as
``python stock_agent.py start``.
"""

import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli
from livekit.plugins import silero

import telemetry  # VoxPulse
from agent.local import EspeakTTS, ScriptedLineSTT, participant_line_source
from agent.sim.providers import ScriptedLLM
from telemetry.livekit import instrument_session  # VoxPulse

telemetry.mask_logs()                               # VoxPulse


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a helpful voice AI assistant.")


def prewarm(proc: JobProcess) -> None:
    telemetry.configure(service_name=os.environ["OTEL_SERVICE_NAME"])    # VoxPulse
    proc.userdata["vad"] = silero.VAD.load()


# a load that counts calls (docs/your-agent.md): 20 calls fill the worker, so the 70 % threshold of the
# worker means 14 (livekit.yaml lets the worker decide) -- a job stays active a while after its caller hung up;
# and 5 idle processes: while no job is active yet, LiveKit's worker reserves threshold / num_idle_processes
# of load per request it accepts, so with the default 2 a third call arriving at once from idle is refused
server = AgentServer(setup_fnc=prewarm, load_fnc=lambda srv: len(srv.active_jobs) / 20, num_idle_processes=5,
                     port=0)


@server.rtc_session(agent_name=os.environ["VOXPULSE_AGENT_NAME"])
async def entrypoint(ctx: JobContext) -> None:
    session = AgentSession(
        stt=ScriptedLineSTT(participant_line_source(ctx.room)),
        llm=ScriptedLLM(),
        tts=EspeakTTS(),
        vad=ctx.proc.userdata["vad"],
    )
    async with instrument_session(session):         # VoxPulse
        # record: LiveKit's own upload (audio, transcript, verdicts) to VoxPulse's insights receiver, when
        # LIVEKIT_OBSERVABILITY_URL names it (docs/insights.md: "With VoxPulse too")
        await session.start(room=ctx.room, agent=Assistant(), record=bool(os.environ.get("LIVEKIT_OBSERVABILITY_URL")))
        await session.generate_reply(instructions="Greet the user and offer your assistance.")


if __name__ == "__main__":
    cli.run_app(server)
