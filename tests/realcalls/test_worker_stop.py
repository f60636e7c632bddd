"""A worker stopped in the middle of a call, as ``voxpulse demo`` stops it once its callers are done
(agent.realcalls.Worker.stop): the call ends as the caller ends it, its job process exits on its own
and its spans are exported -- the worker drains. SIGTERM to the worker's whole process group had
LiveKit's forkserver die with it, LiveKit then read the job process as exited (code 255) and killed
it: the demo's last call lost its root span, and the demo waited for a trace that never came."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.caller import CallerResult
from agent.realcalls import OtlpRecorder, _message
from telemetry.semconv import SpanName
from tests.support import wait_for

from .conftest import LiveKit, failed_calls, place, running_worker

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_a_worker_stopped_mid_call_drains_it(lk_stack: LiveKit, recorder: OtlpRecorder, tmp_path: Path) -> None:
    results: list[CallerResult] = []
    with running_worker(lk_stack, recorder.endpoint, None, tmp_path / "worker.log") as w:
        caller = threading.Thread(target=lambda: results.extend(place(w, lk_stack, ["order_status"], concurrency=1)))
        caller.start()
        # the call is in progress: its job process joined the room
        wait_for(lambda: [r for r in w.worker.records() if _message(r) == "RoomIO linked to participant"],
                 "the agent in the call", 60)
        w.worker.stop(timeout_s=90)
        caller.join(120)
        records = w.worker.records()
    failed = failed_calls(results, w, lk_stack)
    assert len(results) == 1 and not failed, failed
    call = results[0]
    assert any(_message(r) == "draining worker" for r in records)
    jobs = {r.get("job_id") for r in records if r.get("room") == call.room and r.get("job_id")}
    # the job process ended on its own (LiveKit logs its exit), no code 255 for it
    story = w.worker.job_log(call.room)
    assert [r for r in records if r.get("job_id") in jobs and _message(r) == "process exiting"], story
    assert not [r for r in records if r.get("job_id") in jobs and "non-zero exit code" in str(_message(r))], story
    # and its spans were exported before the worker exited: the job's root, the call's own root
    roots = {s.name for s in recorder.roots() if s.attributes.get("lk.room_sid") == call.room_sid}
    call_spans = [s for s in recorder.spans() if s.name == SpanName.CALL and s.call_id == call.room_sid]
    assert "job_entrypoint" in roots and call_spans, (roots, story)
