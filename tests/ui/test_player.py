"""The call page's recording in a real browser: Debian's headless Chromium (Playwright) against the
real console and PostgreSQL, a real stereo Ogg Opus recording (espeak-ng speech, libopus as LiveKit's
recorder writes it) stored by the insights receiver's own store.

Clicking a turn seeks the player to the turn's moment on the recording; playing moves the highlight
to the turn being heard; the waveform is decoded in the browser (WebAudio), the caller and the agent
on two lanes; a user without the audio permission sees the verdicts and tags but no player; a damaged
recording is shown as damaged. Needs no collector or trace store (the call's lanes come from the call
history), so it runs without the stack.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support import closed_port, throwaway_database, unavailable

from .conftest import ADMIN, ARGS, CHROMIUM, VIEWER, Console, login, start_console, stop_console
from .recordings import speech_recording, store

pytestmark = [pytest.mark.db, pytest.mark.slow]

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
CALL, BROKEN, OLDER = "ply-call-1", "ply-call-2", "ply-call-3"
TURNS = 3
TURN_EVERY_S = 8.0
FIRST_TURN_S = 2.0  # the caller's first words, from the call's start
RECORDING_AT_S = 1.0  # the recording starts a second into the call
#: a turn's lane (call history only: its rows' times) spans the caller's row to the agent's
AGENT_AFTER_S = 1.5


def _turn_start_ms(k: int) -> float:
    return (FIRST_TURN_S + k * TURN_EVERY_S) * 1000


@dataclass
class Setup:
    console: Console
    audio_seconds: float


def _run(coro: Any) -> Any:
    """asyncio.run in a thread of its own: Playwright's sync API holds an event loop in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _seed(dsn: str, folder: Path) -> float:
    from telemetry.history import ensure_partitions, migrate

    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await ensure_partitions(conn, [T0])
        turns = []
        for cid in (CALL, BROKEN):
            await conn.execute(
                "INSERT INTO calls (call_id, started_at, ended_at, status, outcome, scenario, duration_seconds, turns)"
                " VALUES ($1, $2, $3, 'completed', 'resolved_by_bot', 'order_tyres', 26, $4)",
                cid, T0, T0 + dt.timedelta(seconds=26), TURNS)
            for k in range(TURNS):
                ts = T0 + dt.timedelta(milliseconds=_turn_start_ms(k))
                turns.append((cid, k, "user", ts, "Добрий день, мені потрібні шини"))
                turns.append((cid, k, "agent", ts + dt.timedelta(seconds=AGENT_AFTER_S), "Є шини двісті п'ять"))
        await conn.executemany("INSERT INTO call_turns (call_id, turn_index, speaker, ts, text) "
                               "VALUES ($1, $2, $3, $4, $5)", turns)
        # on the recording's own clock: the caller (first channel) at each turn, the agent (second) after
        lines = []
        for k in range(TURNS):
            at = _turn_start_ms(k) / 1000 - RECORDING_AT_S
            lines += [(0, at, "Добрий день, мені потрібні шини"), (1, at + AGENT_AFTER_S + 0.5, "Є шини двісті п'ять")]
        seconds = TURNS * TURN_EVERY_S
        audio = await asyncio.to_thread(speech_recording, lines, seconds)
        started = T0 + dt.timedelta(seconds=RECORDING_AT_S)
        verdicts = {"task_completion": ("pass", "the caller got the tyres"),
                    "politeness": ("fail", "the agent interrupted the caller twice")}
        await store(conn, folder, CALL, audio=audio, started_at=started, duration_ms=int(seconds * 1000),
                    tags={"order_created": {"order": 17}}, verdicts=verdicts, outcome=("success", None))
        # a recording stored before the receiver kept its peaks: the page decodes the audio itself
        await store(conn, folder, OLDER, audio=audio, started_at=started, wave=False)
        await store(conn, folder, BROKEN, audio=audio[: len(audio) // 2], started_at=started,
                    verdicts=verdicts, outcome=("fail", "hung up"))
        return seconds
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def setup(base_dsn: str) -> Iterator[Setup]:
    if not Path(CHROMIUM).is_file():
        unavailable("BROWSER", "no /usr/bin/chromium (scripts/bootstrap.sh installs Debian's chromium)")
    with tempfile.TemporaryDirectory(prefix="vp-player-") as tmp, throwaway_database("voxpulse_player") as dsn, \
            closed_port() as prometheus, closed_port() as trace_store:
        folder = Path(tmp) / "insights"
        folder.mkdir()
        seconds = _run(_seed(dsn, folder))
        console = start_console(Path(tmp), dsn, VOXPULSE_INSIGHTS_DIR=str(folder),
                                VOXPULSE_PROMETHEUS_URL=f"http://127.0.0.1:{prometheus}",
                                VOXPULSE_TRACE_STORE="jaeger", VOXPULSE_TRACE_STORE_URL=f"http://127.0.0.1:{trace_store}")
        try:
            yield Setup(console, seconds)
        finally:
            stop_console(console)
        assert "Traceback" not in console.log_text(), console.log_text()[-4000:]


@pytest.fixture(scope="module")
def browser(setup: Setup) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB")
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "401" not in m.text
          and "403" not in m.text else None)
    yield pg
    ctx.close()
    assert not errors, errors  # no script errors and no CSP violations


def _audio(page: Any, prop: str) -> Any:
    return page.evaluate(f"document.querySelector('audio[data-testid=player]').{prop}")


def _wait_for_time(page: Any, seconds: float) -> None:
    page.wait_for_function("t => Math.abs(document.querySelector('audio[data-testid=player]').currentTime - t) < 0.05",
                           arg=seconds)


def _playing_lane(page: Any) -> str | None:
    lane: str | None = page.evaluate(
        "document.querySelector('[data-testid=lane][data-playing=true]')?.dataset.lane ?? null")
    return lane


def test_clicking_a_turn_seeks_and_playing_highlights_the_turn_heard(page: Any, setup: Setup) -> None:
    base = setup.console.url
    login(page, base, ADMIN, f"/calls/{CALL}")
    rec = page.get_by_test_id("recording")
    rec.wait_for()
    assert rec.get_attribute("data-audio-state") == "present"
    assert float(rec.get_attribute("data-offset-ms")) == RECORDING_AT_S * 1000
    # drawn from the peaks the receiver kept: LiveKit's two channels, each with speech in it
    wave = page.get_by_test_id("waveform")
    page.wait_for_function("() => document.querySelector('[data-testid=waveform]').dataset.decoded === 'true'",
                           timeout=15_000)
    assert (wave.get_attribute("data-channels"), wave.get_attribute("data-drawn-from")) == ("2", "peaks")
    # the call and its peaks were fetched once each, by the page's preload (not again by its script)
    fetched = page.evaluate(
        "performance.getEntriesByType('resource').map((e) => [new URL(e.name).pathname, e.initiatorType])")
    assert [i for p, i in fetched if p == f"/api/calls/{CALL}"] == ["link"]
    assert [i for p, i in fetched if p == f"/api/calls/{CALL}/waveform"] == ["link"]
    lanes = page.get_by_test_id("wave-lane")
    assert [lanes.nth(i).get_attribute("data-channel") for i in range(lanes.count())] == ["caller", "agent"]
    assert all(int(lanes.nth(i).get_attribute("data-loud-px")) > 0 for i in range(2))
    page.wait_for_function("() => document.querySelector('audio[data-testid=player]').readyState >= 1",
                           timeout=15_000)
    assert _audio(page, "duration") == pytest.approx(setup.audio_seconds, abs=0.1)
    assert _playing_lane(page) is None

    # a click on turn 2 (in the timeline) seeks to its first moment on the recording's clock
    page.locator("[data-testid=seek-turn][data-turn='turn:1']").click()
    want = (_turn_start_ms(1) / 1000) - RECORDING_AT_S
    _wait_for_time(page, want)
    assert _playing_lane(page) == "turn:1"
    # and the lane's own button, on turn 3
    page.locator("[data-testid=lane][data-lane='turn:2'] [data-testid=lane-seek]").click()
    want = (_turn_start_ms(2) / 1000) - RECORDING_AT_S
    _wait_for_time(page, want)
    assert _playing_lane(page) == "turn:2"

    # half a second before turn 2 starts (still turn 1's), then play: the highlight follows the audio
    page.evaluate(f"document.querySelector('audio[data-testid=player]').currentTime = {want - TURN_EVERY_S - 0.5}")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=lane][data-playing=true]')?.dataset.lane === 'turn:0'")
    assert page.locator("[data-testid=timeline-turn][aria-current=true]").get_attribute("data-turn") == "turn:0"
    page.evaluate("document.querySelector('audio[data-testid=player]').play()")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=lane][data-playing=true]')?.dataset.lane === 'turn:1'",
                           timeout=10_000)
    assert _audio(page, "paused") is False
    assert _audio(page, "currentTime") >= (_turn_start_ms(1) / 1000) - RECORDING_AT_S
    assert page.locator("[data-testid=timeline-turn][aria-current=true]").get_attribute("data-turn") == "turn:1"
    page.evaluate("document.querySelector('audio[data-testid=player]').pause()")


def test_pills_without_the_audio_permission_and_no_player(page: Any, setup: Setup) -> None:
    base = setup.console.url
    login(page, base, VIEWER, f"/calls/{CALL}")
    page.get_by_test_id("insights").wait_for()
    assert page.get_by_test_id("insight-outcome").get_attribute("data-value") == "success"
    verdicts = page.get_by_test_id("verdict")
    assert {verdicts.nth(i).get_attribute("data-judge"): verdicts.nth(i).get_attribute("data-result")
            for i in range(verdicts.count())} == {"politeness": "fail", "task_completion": "pass"}
    assert page.get_by_test_id("tag").get_attribute("data-tag") == "order_created"
    page.get_by_test_id("audio-forbidden").wait_for()
    assert page.locator("audio").count() == 0
    status = page.evaluate(f"fetch('/api/calls/{CALL}/audio').then((r) => r.status)")
    assert status == 403
    # the calls list: tags on the row, filtered by the failed judge and the agent's outcome
    page.goto(f"{base}/calls?failed_judge=politeness&insight_outcome=fail")
    page.locator(f"tr[data-call-id='{BROKEN}']").wait_for()
    assert page.locator("tbody tr").count() == 1
    assert page.locator("#f-failed-judge").input_value() == "politeness"  # the filter in the URL is shown
    assert page.locator("#f-insight-outcome").input_value() == "fail"
    page.goto(f"{base}/calls")
    row = page.locator(f"tr[data-call-id='{CALL}']")
    row.wait_for()
    assert row.get_by_test_id("row-tags").inner_text() == "#order_created"
    assert row.get_by_test_id("row-failed-judges").is_visible()


def test_the_kept_waveform_needs_the_audio_permission(setup: Setup) -> None:
    admin, viewer = setup.console.client(ADMIN), setup.console.client(VIEWER)
    try:
        kept = admin.get(f"/api/calls/{CALL}/waveform")
        assert kept.status_code == 200 and kept.headers["cache-control"] == "no-store"
        assert kept.json()["channels"] == 2
        assert admin.get(f"/api/calls/{OLDER}/waveform").status_code == 404
        view = admin.get(f"/api/calls/{OLDER}").json()["insights"]["audio"]
        assert view["url"] and view["waveform_url"] is None  # the page decodes the audio instead
        assert viewer.get(f"/api/calls/{CALL}/waveform").status_code == 403
        assert admin.get("/api/calls/..%2Fetc/waveform").status_code in (400, 404)
    finally:
        admin.close()
        viewer.close()


def _preloads(client: Any, path: str) -> list[str]:
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), (r.status_code, r.text[:200])
    return re.findall(r'<link rel="preload" href="([^"]+)" as="fetch" crossorigin>', r.text)


def test_the_call_page_preloads_the_call_and_its_kept_waveform(setup: Setup) -> None:
    """The page is served with what its script asks for first, so the browser fetches it while the
    script loads: the console's metadata and session everywhere; on a call page the call's JSON and
    its waveform's peaks where they are kept and the user may hear the recording."""
    admin, viewer = setup.console.client(ADMIN), setup.console.client(VIEWER)
    app = ["/api/meta", "/api/session"]
    try:
        assert _preloads(admin, f"/calls/{CALL}") == [*app, f"/api/calls/{CALL}", f"/api/calls/{CALL}/waveform"]
        assert _preloads(viewer, f"/calls/{CALL}") == [*app, f"/api/calls/{CALL}"]  # no audio permission
        assert _preloads(admin, f"/calls/{OLDER}") == [*app, f"/api/calls/{OLDER}"]  # no peaks kept
        assert _preloads(admin, "/calls/no:such@call") == [*app, "/api/calls/no%3Asuch%40call"]
        assert _preloads(admin, "/calls") == app
        assert admin.get("/calls/%3Cscript%3E").status_code == 400  # never echoed into the page
    finally:
        admin.close()
        viewer.close()


def test_an_older_recording_is_decoded_in_the_page(page: Any, setup: Setup) -> None:
    """A recording kept without its peaks (stored before the receiver kept them): the page decodes the
    audio itself (WebAudio) and draws the same two channels."""
    login(page, setup.console.url, ADMIN, f"/calls/{OLDER}")
    page.get_by_test_id("waveform").wait_for()
    page.wait_for_function("() => document.querySelector('[data-testid=waveform]').dataset.decoded === 'true'",
                           timeout=15_000)
    wave = page.get_by_test_id("waveform")
    assert (wave.get_attribute("data-channels"), wave.get_attribute("data-drawn-from")) == ("2", "audio")
    lanes = page.get_by_test_id("wave-lane")
    assert all(int(lanes.nth(i).get_attribute("data-loud-px")) > 0 for i in range(2))


def test_a_damaged_recording_is_shown_as_damaged(page: Any, setup: Setup) -> None:
    login(page, setup.console.url, ADMIN, f"/calls/{BROKEN}")
    page.get_by_test_id("audio-broken").wait_for()
    assert "truncated" in page.get_by_test_id("audio-broken").inner_text()
    assert page.get_by_test_id("recording").get_attribute("data-audio-state") == "broken"
    assert page.get_by_test_id("insight-outcome").get_attribute("data-value") == "fail"
