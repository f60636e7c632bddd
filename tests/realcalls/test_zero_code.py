"""The zero-code path of docs/insights.md on a real call: LiveKit's quickstart agent with no VoxPulse
import (tests/realcalls/zero_code_agent.py), ``record=True``, and only ``LIVEKIT_OBSERVABILITY_URL``
pointing at VoxPulse's insights receiver. A caller speaks to it through the stack's LiveKit server;
the console then shows the call by its room id with its trace (LiveKit's own spans, through the
collector into the trace store), its transcript, its recording (playable, on the call's time axis),
its tags, outcome and verdicts; erasing it leaves no audio or transcript behind.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from agent.caller import CallerResult
from agent.realcalls import Worker
from tests.insights.capture import FIXTURES, RecordingProxy, Request, shape, write_fixtures
from tests.support import ROOT, free_port, unavailable, wait_for
from tests.ui.conftest import ADMIN, ARGS, CHROMIUM, VIEWER, Console, login, start_console, stop_console
from voxpulse_console.insights._wire import inspect_ogg

from .conftest import PHONE, LiveKit, RunningWorker, place

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SCRIPT = ROOT / "tests" / "realcalls" / "zero_code_agent.py"
STOCK = ROOT / "tests" / "realcalls" / "stock_agent.py"
SCENARIO = "order_tyres"


@dataclass
class Zero:
    console: Console
    folder: Path
    dsn: str
    call: CallerResult
    hung_up_to_playable_s: float
    requests: list[Request]  # what the worker sent, raw


def _receiver(port: int, dsn: str, folder: Path, lk: LiveKit, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOXPULSE_", "DATABASE_URL"))}
    env.update({
        "VOXPULSE_INSIGHTS_KEYS": f"{lk.api_key}: {lk.api_secret}",
        "VOXPULSE_INSIGHTS_AUDIO": "1",  # recording is off unless the operator turns it on
        "VOXPULSE_INSIGHTS_DIR": str(folder),
        "VOXPULSE_STACK_DIR": str(folder.parent / "no-stack"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
    })
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voxpulse_console", "insights-receiver", "--listen", f"127.0.0.1:{port}",
             "--dsn", dsn], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/healthz"), "the insights receiver", 30)
    return proc


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _view(console: Console, call_id: str) -> dict[str, Any] | None:
    c = console.client(ADMIN)
    try:
        r = c.get(f"/api/calls/{call_id}")
        return r.json() if r.status_code == 200 else None
    finally:
        c.close()


def _complete(view: dict[str, Any] | None) -> bool:
    """The upload has landed whole: audio kept, verdicts and outcome stored, the trace found."""
    ins = (view or {}).get("insights") or {}
    return bool(ins and ins["audio"]["state"] == "present" and len(ins["verdicts"]) == 2 and ins["outcome"]
                and view and view["call"]["trace_id"])


def _span_names(view: dict[str, Any]) -> set[str]:
    rows = [*view["call_spans"], *(s for lane in view["lanes"] for s in lane["spans"])]
    return {str(s["name"]) for s in rows}


@dataclass
class Insights:
    console: Console
    folder: Path
    dsn: str
    url: str


@pytest.fixture(scope="module")
def insights(lk_stack: LiveKit, history_dsn: str | None,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Insights]:
    """The insights receiver (audio kept) and the console, on the call history's database."""
    if history_dsn is None:
        unavailable("DB", "no DATABASE_URL: the insights receiver keeps its calls in PostgreSQL")
    tmp = tmp_path_factory.mktemp("insights")
    folder = tmp / "insights"
    folder.mkdir(mode=0o700)
    port = free_port()
    receiver = _receiver(port, history_dsn, folder, lk_stack, tmp / "receiver.log")
    console = start_console(tmp, history_dsn, VOXPULSE_INSIGHTS_DIR=str(folder),
                            VOXPULSE_PROMETHEUS_URL="http://127.0.0.1:9090", VOXPULSE_TRACE_STORE="jaeger",
                            VOXPULSE_TRACE_STORE_URL="http://127.0.0.1:16686")
    try:
        yield Insights(console, folder, history_dsn, f"http://127.0.0.1:{port}")
    finally:
        stop_console(console)
        receiver.terminate()
        receiver.wait(10)
    receiver_log = (tmp / "receiver.log").read_text(errors="replace")
    assert "Traceback" not in receiver_log, receiver_log[-4000:]
    assert "Traceback" not in console.log_text(), console.log_text()[-4000:]


def _one_call(ins: Insights, lk: LiveKit, worker: Worker, agent_name: str,
              landed: Callable[[dict[str, Any] | None], bool]) -> tuple[CallerResult, float]:
    """One call to ``agent_name``; returns it once its view is ``landed``, and the seconds from hang-up."""
    try:
        (result,) = place(RunningWorker(worker, agent_name, agent_name), lk, [SCENARIO], concurrency=1)
        assert result.error is None and result.room_sid, (result.error, worker.tail(40))

        def done() -> dict[str, Any] | None:
            v = _view(ins.console, result.room_sid)
            return v if landed(v) else None

        wait_for(done, "the call's upload in the console", 90)
        return result, time.time() - result.hangup_at
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def zero(insights: Insights, lk_stack: LiveKit, tmp_path_factory: pytest.TempPathFactory) -> Zero:
    agent_name = f"zero-code-{secrets.token_hex(3)}"
    env = {"LIVEKIT_URL": lk_stack.url, "LIVEKIT_API_KEY": lk_stack.api_key,
           "LIVEKIT_API_SECRET": lk_stack.api_secret, "ZERO_CODE_AGENT_NAME": agent_name,
           # the only route out of the agent: LiveKit's own upload, to the receiver
           "LIVEKIT_OBSERVABILITY_URL": insights.url,
           "OTEL_EXPORTER_OTLP_ENDPOINT": "", "DATABASE_URL": "", "PYTHONPATH": str(ROOT)}
    log = tmp_path_factory.mktemp("zero") / "worker.log"
    with RecordingProxy(insights.url) as proxy:  # every request the live worker sends, recorded on its way
        env["LIVEKIT_OBSERVABILITY_URL"] = proxy.url
        worker = Worker(env, log_path=log, media=lk_stack.media, argv=[sys.executable, str(SCRIPT), "start"]).start()
        call, after = _one_call(insights, lk_stack, worker, agent_name, _complete)
    if os.environ.get("VOXPULSE_CAPTURE_REAL_CALL"):  # re-capture tests/fixtures/livekit_observability_v0_real
        write_fixtures(Path(os.environ["VOXPULSE_CAPTURE_REAL_CALL"]), proxy.requests,
                       captured_by="tests/realcalls/test_zero_code.py (VOXPULSE_CAPTURE_REAL_CALL): a real call")
    return Zero(insights.console, insights.folder, insights.dsn, call, after, proxy.requests)


def test_a_stock_agent_without_voxpulse_shows_up_whole(zero: Zero) -> None:
    call = zero.call
    view = _view(zero.console, call.room_sid)
    assert view is not None
    ins = view["insights"]
    # tags, outcome and both judges' verdicts, as the agent's tagger and JudgeGroup made them
    assert ins["outcome"] == "success" and ins["outcome_reason"] == "the caller was answered"
    assert {t["name"] for t in ins["tags"]} >= {"zero-code"}
    assert {(v["judge"], v["result"]) for v in ins["verdicts"]} == {("greeted", "pass"), ("booked", "fail")}
    # in the calls list, once, as a call only the insights receiver knows
    c = zero.console.client(ADMIN)
    try:
        items = c.get("/api/calls").json()["items"]
    finally:
        c.close()
    rows = [r for r in items if call.room_sid in (r["call_id"], r.get("room_sid"))]
    assert len(rows) == 1 and rows[0]["source"] == "insights" and rows[0]["insight_outcome"] == "success", rows
    # the trace: LiveKit's own spans, found by the call's id (the receiver stamps it: the room id)
    assert view["call"]["trace_id"] and view["sources"]["trace"], view["sources"]
    names = _span_names(view)
    assert {"agent_session", "user_turn", "agent_turn"} <= names, sorted(names)
    # the transcript: every line the caller said, then what the agent said, on the call's axis
    lines = ins["transcript"]
    said = [ln["text"] for ln in lines if ln["role"] == "user"]
    assert said and all(any(t.line.strip(" .?!").lower() in s.lower() for s in said) for t in call.turns), (
        said, [t.line for t in call.turns])
    assert lines[0]["role"] == "assistant"  # the greeting
    # the recording: kept whole, playable, and as long as the call
    audio = ins["audio"]
    assert audio["state"] == "present" and audio["url"], audio
    c = zero.console.client(ADMIN)
    try:
        r = c.get(audio["url"])
        head = c.http.get(audio["url"], headers={"Range": "bytes=0-99"})
    finally:
        c.close()
    assert r.status_code == 200 and r.headers["content-type"] == "audio/ogg", r.status_code
    assert head.status_code == 206 and len(head.content) == 100
    ogg = inspect_ogg(r.content)
    assert ogg.ok, ogg.problem
    # the recording runs from the session's start to its close: all the caller said, and not much after
    # the hang-up (the session closes when the caller has left)
    start = audio["started_at"]
    assert ogg.seconds is not None and start is not None
    end = start + ogg.seconds
    assert start < call.turns[0].speech_end and end > call.turns[-1].speech_end, (start, end, call.turns)
    assert end - call.hangup_at < 10, end - call.hangup_at
    # aligned: each line the caller said sits on the recording where the caller said it
    for turn in call.turns:
        line = next(ln for ln in lines if ln["role"] == "user"
                    and turn.line.strip(" .?!").lower() in ln["text"].lower())
        assert start <= line["at"] <= start + ogg.seconds, (turn.line, line["at"], start)
        assert abs(line["at"] - turn.speech_end) < 3.0, (turn.line, line["at"] - turn.speech_end)


def test_a_live_worker_sends_what_the_fixtures_hold(zero: Zero) -> None:
    """The contract on a real call: the paths, stable headers, token claims, multipart parts and header
    fields a live livekit-agents worker sent are those of the committed capture
    (tests/fixtures/livekit_observability_v0, made by livekit-agents' own upload code)."""
    import json

    pinned = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))["shape"]
    live = shape(zero.requests)
    assert {p.split("/")[2] for p in live} >= {"traces", "logs", "recordings"}, sorted(live)
    for path, got in live.items():
        assert path in pinned, f"{path}: a path the capture does not have"
        assert got == pinned[path], f"{path}: the live worker's request differs from the capture"


def test_the_call_page_in_a_browser(zero: Zero) -> None:
    """Debian's Chromium on the console: the verdicts, LiveKit's turns as lanes, both channels of the
    waveform decoded, the transcript; a click on the caller's first line plays the recording from it."""
    if not Path(CHROMIUM).is_file():
        unavailable("BROWSER", "no /usr/bin/chromium (scripts/bootstrap.sh installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB").new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            login(page, zero.console.url, ADMIN, f"/calls/{zero.call.room_sid}")
            page.wait_for_selector("[data-testid=waveform][data-decoded=true]")
            assert page.locator("[data-testid=source-notice]").get_attribute("data-source") == "insights-only"
            judged = {(v.get_attribute("data-judge"), v.get_attribute("data-result"))
                      for v in page.locator("[data-testid=verdict]").all()}
            assert judged == {("greeted", "pass"), ("booked", "fail")}
            wave = page.locator("[data-testid=waveform]")
            # drawn from the peaks the receiver kept, not by decoding the recording in the page
            assert (wave.get_attribute("data-channels"), wave.get_attribute("data-drawn-from")) == ("2", "peaks")
            turns = page.locator("[data-testid=timeline-turn]").all()
            assert sum(1 for t in turns if (t.get_attribute("data-turn") or "").startswith("turn:")) == len(
                zero.call.turns)
            first = page.locator("[data-testid=transcript-line][data-role=user]").first
            at_ms = float(first.get_attribute("data-offset-ms") or "nan")
            offset = float(page.locator("[data-testid=recording]").get_attribute("data-offset-ms") or "nan")
            first.locator("button").click()
            page.wait_for_function(
                "t => Math.abs(document.querySelector('audio[data-testid=player]').currentTime - t) < 0.05",
                arg=(at_ms - offset) / 1000)
            # ... and the calls list has it, marked as known from LiveKit's upload, with the agent's result
            page.goto(f"{zero.console.url}/calls")
            row = page.locator(f"tr[data-call-id={zero.call.room_sid}]")
            row.wait_for()
            assert row.locator("[data-testid=row-source]").count() == 1
            assert row.locator("[data-testid=row-insight-outcome]").inner_text().strip() == "success"
        finally:
            browser.close()
    assert not errors, errors


def test_the_viewer_sees_verdicts_and_masked_words_but_no_recording(zero: Zero) -> None:
    """A user without the ``pii`` and ``audio`` permissions: the verdicts, the transcript with the
    caller's personal data masked (order_tyres gives a phone number), no recording."""
    lines: dict[str, list[str]] = {}
    for who in (ADMIN, VIEWER):
        c = zero.console.client(who)
        try:
            view = c.get(f"/api/calls/{zero.call.room_sid}").json()
            audio = c.get(f"/api/calls/{zero.call.room_sid}/audio")
        finally:
            c.close()
        ins = view["insights"]
        assert {v["result"] for v in ins["verdicts"]} == {"pass", "fail"}
        assert (audio.status_code, ins["audio"]["url"] is None) == ((200, False) if who is ADMIN else (403, True))
        lines[who[0]] = [ln["text"] for ln in ins["transcript"]]
    assert len(lines[ADMIN[0]]) == len(lines[VIEWER[0]])
    assert any(PHONE in t for t in lines[ADMIN[0]]), lines[ADMIN[0]]
    assert not any(PHONE in t or PHONE[4:] in t for t in lines[VIEWER[0]]), lines[VIEWER[0]]


def test_erasure_leaves_no_audio_or_transcript(zero: Zero) -> None:
    call_id = zero.call.room_sid
    assert (zero.folder / call_id).is_dir()
    done = subprocess.run(
        [sys.executable, "-m", "voxpulse_console", "insights", "--dsn", zero.dsn, "erase", call_id,
         "--by", "dpo@example.test", "--reason", "erasure request"],
        cwd=ROOT, env={**os.environ, "VOXPULSE_INSIGHTS_DIR": str(zero.folder)}, capture_output=True, text=True,
        timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (zero.folder / call_id).exists()
    view = _view(zero.console, call_id)
    assert view is None or view["insights"] is None

    async def audit() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(zero.dsn)
        try:
            return [dict(r) for r in await conn.fetch("SELECT * FROM insights_erasures WHERE call_id = $1", call_id)]
        finally:
            await conn.close()

    rows = asyncio.run(audit())
    assert len(rows) == 1 and rows[0]["requested_by"] == "dpo@example.test", rows


# ------------------------------------------------------------------- an agent with VoxPulse, recorded too
@pytest.fixture(scope="module")
def both(insights: Insights, lk_stack: LiveKit, tmp_path_factory: pytest.TempPathFactory) -> CallerResult:
    """docs/your-agent.md's agent (VoxPulse: spans, call history) with ``record=True`` and
    ``LIVEKIT_OBSERVABILITY_URL``: LiveKit's upload exporter then sits on VoxPulse's tracer provider."""
    tag = secrets.token_hex(3)
    agent_name = f"stock-rec-{tag}"
    env = {"LIVEKIT_URL": lk_stack.url, "LIVEKIT_API_KEY": lk_stack.api_key,
           "LIVEKIT_API_SECRET": lk_stack.api_secret, "VOXPULSE_AGENT_NAME": agent_name,
           "OTEL_SERVICE_NAME": f"stock-rec-{tag}", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
           "DATABASE_URL": insights.dsn, "LIVEKIT_OBSERVABILITY_URL": insights.url, "PYTHONPATH": str(ROOT)}
    log = tmp_path_factory.mktemp("both") / "worker.log"
    worker = Worker(env, log_path=log, media=lk_stack.media, argv=[sys.executable, str(STOCK), "start"]).start()

    def landed(v: dict[str, Any] | None) -> bool:
        ins = (v or {}).get("insights") or {}
        return bool(v and v["sources"]["history"] and v["sources"]["trace"] and ins
                    and ins["audio"]["state"] == "present" and v["call"]["ended_at"])

    call, _ = _one_call(insights, lk_stack, worker, agent_name, landed)
    return call


def test_an_agent_with_voxpulse_and_its_recording_on_one_page(both: CallerResult, insights: Insights) -> None:
    view = _view(insights.console, both.room_sid)
    assert view is not None
    # VoxPulse's: the call history and its turns, with their time to first word
    turns = [lane for lane in view["lanes"] if lane["index"] is not None]
    assert len(turns) == len(both.turns) and all(lane["ttfw_ms"] for lane in turns), turns
    assert view["sources"]["history"] and view["sources"]["trace"]
    # LiveKit's upload: the recording and the transcript, on the same page
    ins = view["insights"]
    assert ins["audio"]["state"] == "present" and ins["audio"]["url"] and ins["transcript"]
    # and each span once in the trace store: the spans of VoxPulse's provider came in LiveKit's
    # upload too, and the receiver left them out
    r = httpx.get(f"http://127.0.0.1:16686/api/traces/{view['call']['trace_id']}", timeout=10)
    r.raise_for_status()
    spans = [s["spanID"] for t in r.json()["data"] for s in t["spans"]]
    twice = {s for s in spans if spans.count(s) > 1}
    assert spans and not twice, f"{len(twice)} of {len(spans)} spans stored twice"
