"""A LiveKit agent's observability uploads, made by livekit-agents' OWN code against ``URL``.

    python -m tests.insights.lk_agent URL [--ogg FILE] [--room-id RM_x] [--job-id AJ_x]

No LiveKit server: the functions a job calls (``_setup_cloud_tracer`` at ``session.start()``,
``_upload_session_report`` and ``_shutdown_telemetry`` at session end) run here with a session report
built as ``JobContext.make_session_report`` builds it. LIVEKIT_API_KEY / LIVEKIT_API_SECRET sign the
tokens, as in a worker. Run in a process of its own: livekit-agents sets the process's OpenTelemetry
globals (tracer, logger and meter providers), which a test process must not inherit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path

ROOM_NAME = "call-+380501234567"  # a SIP dispatch's room name: personal data, never a call id


async def upload(url: str, *, ogg: Path | None, room_id: str, job_id: str) -> None:
    import aiohttp
    from livekit.agents import AgentSession, llm
    from livekit.agents.evals.evaluation import EvaluationResult
    from livekit.agents.evals.judge import JudgmentResult
    from livekit.agents.observability import Tagger
    from livekit.agents.telemetry import _setup_cloud_tracer, _upload_session_report, traces
    from livekit.agents.voice.report import SessionReport
    from opentelemetry import metrics


    _setup_cloud_tracer(room_id=room_id, job_id=job_id, agent_name="fixture-agent", observability_url=url)
    with traces.tracer.start_as_current_span("agent_turn", attributes={"lk.fixture": True}):
        logging.getLogger("fixture").warning("a log line of the job")
    metrics.get_meter("fixture").create_counter("fixture_turns").add(1, {"job_id": job_id})

    session: AgentSession = AgentSession()
    session.options.recording_options = {
        "audio": ogg is not None, "traces": True, "logs": True, "transcript": True, "redaction": False,
    }
    started = time.time() - 5
    chat = llm.ChatContext()
    chat.add_message(role="assistant", content="Шиномонтаж, добрый день!", created_at=started + 0.5)
    chat.add_message(role="user", content="Хочу записаться на шиномонтаж", created_at=started + 2.0)
    report = SessionReport(
        job_id=job_id, room_id=room_id, room=ROOM_NAME, options=session.options, events=[],
        chat_history=chat, audio_recording_path=ogg, audio_recording_started_at=started if ogg else None,
        duration=5.0, started_at=started, agent_name="fixture-agent",
    )
    tagger = Tagger()
    tagger.add("language:ru", metadata={"confidence": 0.9})
    tagger._evaluation(EvaluationResult(judgments={
        "task_completion": JudgmentResult(verdict="pass", reasoning="booked", instructions="book a slot"),
        "conciseness": JudgmentResult(verdict="fail", reasoning="too long"),
    }))
    tagger.success(reason="booked")
    async with aiohttp.ClientSession() as http:
        await _upload_session_report(
            agent_name="fixture-agent", observability_url=url, report=report, tagger=tagger, http_session=http,
        )
    traces._shutdown_telemetry(job_id)  # the job's end: spans and logs flushed
    traces._cloud.shutdown_at_exit()  # the process's end: the delta metrics' last export


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--ogg", type=Path)
    p.add_argument("--room-id", default="RM_fixtureRoom01")
    p.add_argument("--job-id", default="AJ_fixtureJob01")
    a = p.parse_args()
    asyncio.run(upload(a.url, ogg=a.ogg, room_id=a.room_id, job_id=a.job_id))


if __name__ == "__main__":
    main()
