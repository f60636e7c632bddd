"""Fixtures for the real-call tests: a real LiveKit server, the agent as a real worker, callers
that speak over WebRTC -- the three in the stack's media namespace (voxpulse_console.stack._media, made
without root), the rest of the stack on the host's loopback, as a user runs it.

* ``lk_stack``: the stack's LiveKit server (with its media namespace), Jaeger, the collector and
  Prometheus (started in a temporary state dir, or a stack already answering on the standard ports
  is reused);
* ``recorder``: what the worker exports, recorded at its OTLP boundary and forwarded to the
  collector (agent.realcalls.OtlpRecorder);
* ``worker``: ``python -m agent start`` with the local pipeline, its call history in a throw-away
  PostgreSQL database (when one is reachable);
* ``first_calls``: three concurrent calls -- one in a room named like LiveKit's SIP rooms (after
  the caller's number), one whose caller carries SIP attributes set through the server API, one
  that barges in -- and the recorder's view of them once every job process has exited.

Without user namespaces, the LiveKit server, espeak-ng or sox these tests are skipped with the
reason, unless VOXPULSE_REQUIRE_LIVEKIT is set (CI), where they fail.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.caller import CallerResult
from agent.realcalls import OtlpRecorder, StoreThread, Worker, call
from tests.support import database_url, throwaway_database, unavailable
from voxpulse_console import stack

PHONE = "+380501234567"
PII_ROOM = "call-_+380501234567_AbCd"
SIP_CALL_ID = "SCL_" + secrets.token_hex(6)
JOB_DEADLINE_S = 60.0


def _unavailable(reason: str) -> None:
    unavailable("LIVEKIT", reason)


@dataclass
class LiveKit:
    url: str
    api_key: str
    api_secret: str
    media: stack.MediaNamespace
    state: Path  # the stack's state folder (its components' logs under logs/)

    def server_log(self, room: str, n: int = 30) -> str:
        """The LiveKit server's last ``n`` log lines naming ``room`` (its dispatch, job and
        participants), for a failed call's report."""
        try:
            text = (self.state / "logs" / "livekit.log").read_text(errors="replace")
        except OSError as e:
            return f"(no LiveKit server log: {e})"
        return "\n".join([line[:400] for line in text.splitlines() if f'"{room}"' in line][-n:])


def require_media() -> None:
    """Skips (fails under VOXPULSE_REQUIRE_LIVEKIT) without the media namespace, the binaries or the voices."""
    why = stack.media_supported()
    if why:
        _unavailable(f"no media namespace: {why}")
    missing = [n for n in ("livekit-server", "otelcol", "prometheus", "jaeger") if stack.binaries().get(n) is None]
    missing += [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        _unavailable(f"missing {', '.join(missing)}: run scripts/build-backends.sh")


@contextmanager
def livekit_stack(state: Path, names: list[str] | None = None, **up: Any) -> Iterator[LiveKit]:
    """The stack's ``names`` (None: all of it) with its LiveKit server, in ``state``; down afterwards."""
    try:
        stack.up(names, state_dir=state, wait_s=90, **up)
        env = stack.livekit_env(state)
        yield LiveKit(env["LIVEKIT_URL"], env["LIVEKIT_API_KEY"], env["LIVEKIT_API_SECRET"],
                      stack.media_namespace(state), state)
    finally:
        stack.down(names, state_dir=state)


@pytest.fixture(scope="package")
def lk_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKit]:
    """Shared by the package's modules (one stack, one worker, one first batch of calls)."""
    require_media()
    names = ["jaeger", "otelcol", "prometheus", "livekit"]
    if all(stack.ready(stack.COMPONENTS[n].ready_url) for n in names):
        env = stack.livekit_env()
        if not env:
            _unavailable("a LiveKit server runs, but not this checkout's stack (no keys in its env file)")
        yield LiveKit(env["LIVEKIT_URL"], env["LIVEKIT_API_KEY"], env["LIVEKIT_API_SECRET"],
                      stack.media_namespace(), stack.state_dir(None))
        return
    with livekit_stack(tmp_path_factory.mktemp("stack"), names) as lk:
        yield lk


@pytest.fixture(scope="package")
def history_dsn() -> Iterator[str | None]:
    """A throw-away, migrated call-history database; None without a DATABASE_URL (the history
    checks then skip, or fail under VOXPULSE_REQUIRE_DB)."""
    if not database_url():
        yield None
        return
    with throwaway_database("voxpulse_rc") as dsn:
        yield dsn


@pytest.fixture(scope="package")
def recorder(lk_stack: LiveKit) -> Iterator[OtlpRecorder]:
    with OtlpRecorder(forward_to="http://127.0.0.1:4318") as rec:
        yield rec


@dataclass
class RunningWorker:
    worker: Worker
    agent_name: str
    service: str


@contextmanager
def running_worker(lk: LiveKit, endpoint: str, history_dsn: str | None, log: Path,
                   **extra: str) -> Iterator[RunningWorker]:
    """``python -m agent start`` in ``lk``'s media namespace, exporting to ``endpoint``."""
    tag = secrets.token_hex(3)
    agent_name, service = f"rc-agent-{tag}", f"rc-{tag}"
    env = {
        "LIVEKIT_URL": lk.url, "LIVEKIT_API_KEY": lk.api_key, "LIVEKIT_API_SECRET": lk.api_secret,
        "VOXPULSE_AGENT_NAME": agent_name, "OTEL_SERVICE_NAME": service,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "2000",
        "VOXPULSE_IDLE_PROCESSES": "4", "VOXPULSE_MAX_CALLS": "10", "LOG_LEVEL": "INFO",
        "DATABASE_URL": history_dsn or "",
        # LiveKit's loop monitor samples stalls from 40 ms (default 100): the stall check always has samples
        "LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS": "40", **extra,
    }
    with StoreThread(latency_s=0.02, seed=3) as store_url:
        env["STORE_API_URL"] = store_url
        w = Worker(env, log_path=log, media=lk.media).start()
        try:
            yield RunningWorker(w, agent_name, service)
        finally:
            w.stop()


@pytest.fixture(scope="package")
def worker(
    lk_stack: LiveKit, recorder: OtlpRecorder, history_dsn: str | None, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningWorker]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with running_worker(lk_stack, recorder.endpoint, history_dsn, log) as w:
        yield w


@dataclass
class Calls:
    results: list[CallerResult]
    started_at: float

    def by_room(self, room: str) -> CallerResult:
        return next(r for r in self.results if r.room == room)


def place(
    worker: RunningWorker, lk: LiveKit, scenarios: list[str | dict[str, Any]], *, concurrency: int,
    arrival_s: float = 0.7, room_names: list[str | None] | None = None,
    attributes: list[dict[str, str] | None] | None = None,
) -> list[CallerResult]:
    """The calls, placed by a caller process of their own (agent.realcalls.call)."""
    spec = [{"scenario": s, "room": (room_names or [None] * len(scenarios))[i],
             "attributes": (attributes or [None] * len(scenarios))[i]} for i, s in enumerate(scenarios)]
    creds = {"LIVEKIT_URL": lk.url, "LIVEKIT_API_KEY": lk.api_key, "LIVEKIT_API_SECRET": lk.api_secret}
    return call(spec, livekit=creds, agent_name=worker.agent_name, concurrency=concurrency, arrival_s=arrival_s,
                media=lk.media)


def failed_calls(results: list[CallerResult], worker: RunningWorker, lk: LiveKit) -> str:
    """Each failed call's error with the agent's side of it (its job's log records) and the LiveKit
    server's (the room's dispatch, job and participants); "" when none failed."""
    return "\n\n".join(
        f"{r.room}: {r.error}\n-- the agent's job:\n{worker.worker.job_log(r.room)}\n"
        f"-- the LiveKit server:\n{lk.server_log(r.room)}"
        for r in results if r.error
    )


def jobs_done(recorder: OtlpRecorder, room_sids: list[str], deadline_s: float = JOB_DEADLINE_S) -> bool:
    """Until the job root of each call reached the recorder (the job process has exited)."""

    def done(rec: OtlpRecorder) -> bool:
        roots = {s.attributes.get("lk.room_sid") for s in rec.roots("job_entrypoint")}
        return all(sid in roots for sid in room_sids)

    return recorder.wait_for(done, deadline_s)


@pytest.fixture(scope="package")
def first_calls(worker: RunningWorker, lk_stack: LiveKit, recorder: OtlpRecorder) -> Calls:
    t0 = time.time()
    sip_room = f"rc-sip-{secrets.token_hex(3)}"
    results = place(
        worker, lk_stack, ["order_status", "ask_operator", "order_tyres"], concurrency=3, arrival_s=0.5,
        room_names=[PII_ROOM, sip_room, None],
        attributes=[None, {"sip.callID": SIP_CALL_ID, "sip.phoneNumber": PHONE}, None],
    )
    failed = failed_calls(results, worker, lk_stack)
    assert not failed, failed
    assert jobs_done(recorder, [r.room_sid for r in results]), (
        f"job roots missing; worker log:\n{worker.worker.tail(60)}")
    return Calls(results, t0)
