"""LiveKit's quickstart agent with NO VoxPulse code: the zero-code path of docs/insights.md.

What differs from the quickstart: ``record=True`` (a self-hosted LiveKit server does not ask for
recording), a tag and an outcome on the call (``ctx.tagger``) and two judges (``JudgeGroup``) at the
session's end, the agent's name (explicit dispatch), a load that counts calls, and the providers: the
real calls' local ones (the callers' scripted lines, a fake LLM, espeak-ng) stand in for the
quickstart's cloud models. The judges are rule-based ``Evaluator``s, which LiveKit accepts beside its
LLM judges: this machine has no LLM. Everything VoxPulse shows of this agent's calls comes from
``LIVEKIT_OBSERVABILITY_URL``.

Run by tests/realcalls/test_zero_code.py as ``python zero_code_agent.py start``.
"""

import os
import sys
from typing import Any

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli
from livekit.agents.evals import JudgeGroup, JudgmentResult
from livekit.agents.llm import LLM, ChatContext
from livekit.plugins import silero

from agent.local import EspeakTTS, ScriptedLineSTT, participant_line_source
from agent.sim.providers import ScriptedLLM


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a helpful voice AI assistant.")


class Greeted:
    """Passes when the agent spoke first."""

    name = "greeted"

    async def evaluate(self, *, chat_ctx: ChatContext, reference: ChatContext | None = None,
                       llm: LLM[Any] | None = None) -> JudgmentResult:
        roles = [m.role for m in chat_ctx.messages() if m.role in ("user", "assistant")]
        if roles[:1] == ["assistant"]:
            return JudgmentResult(verdict="pass", reasoning="the agent greeted the caller first")
        return JudgmentResult(verdict="fail", reasoning=f"the conversation opened with {roles[:1]}")


class Booked:
    """Passes when a tool call succeeded; fails here always, as this agent has no tools: the fake LLM's
    tool calls come back as errors."""

    name = "booked"

    async def evaluate(self, *, chat_ctx: ChatContext, reference: ChatContext | None = None,
                       llm: LLM[Any] | None = None) -> JudgmentResult:
        outputs = [i for i in chat_ctx.items if i.type == "function_call_output"]
        if any(not o.is_error for o in outputs):
            return JudgmentResult(verdict="pass", reasoning="a tool call succeeded")
        return JudgmentResult(verdict="fail", reasoning=f"no booking was made ({len(outputs)} failed tool calls)")


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()


# a load that counts calls, as docs/your-agent.md says a small machine needs (LiveKit's default is the
# machine's CPU, which a busy 2-core machine keeps over the threshold: no job would be taken)
server = AgentServer(setup_fnc=prewarm, load_fnc=lambda srv: len(srv.active_jobs) / 20, num_idle_processes=2,
                     port=0)


async def on_session_end(ctx: JobContext) -> None:
    report = ctx.make_session_report()
    await JudgeGroup(llm=ScriptedLLM(), judges=[Greeted(), Booked()]).evaluate(report.chat_history)
    ctx.tagger.add("zero-code", metadata={"lines": len(report.chat_history.items)})
    ctx.tagger.success(reason="the caller was answered")


@server.rtc_session(agent_name=os.environ["ZERO_CODE_AGENT_NAME"], on_session_end=on_session_end)
async def entrypoint(ctx: JobContext) -> None:
    # the point of this agent: nothing of VoxPulse is loaded, not even indirectly
    assert not [m for m in sys.modules if m.split(".")[0] in ("telemetry", "voxpulse_console")], sys.modules
    session: AgentSession[None] = AgentSession(
        stt=ScriptedLineSTT(participant_line_source(ctx.room)),
        llm=ScriptedLLM(),
        tts=EspeakTTS(),
        vad=ctx.proc.userdata["vad"],
    )
    await session.start(room=ctx.room, agent=Assistant(), record=True)
    await session.generate_reply(instructions="Greet the user and offer your assistance.")


if __name__ == "__main__":
    cli.run_app(server)
