"""The web console in a real browser: Debian's headless Chromium driven by Playwright, against the
real console, PostgreSQL, Prometheus and the trace store after a simulation exported through the
real collector (``voxpulse simulate --exporter otlp``, its call history in a throw-away database).

Screenshots of every page land in the test's temporary folder; with VOXPULSE_UPDATE_SCREENSHOTS=1
they replace docs/img/console-*.png (docs/console.md shows them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from telemetry.semconv import TurnSegment
from tests.support import closed_port, free_port, throwaway_database, unavailable, wait_for

from .conftest import ADMIN, VIEWER, Console, start_console, stop_console

pytestmark = [pytest.mark.db, pytest.mark.stack, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PROM = "http://127.0.0.1:9090"
CALLS = 6
SHOTS = ROOT / "docs" / "img"


def _run(coro: Any) -> Any:
    """asyncio.run in a thread of its own: Playwright's sync API holds an event loop in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _sql(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return list(_run(run()))


def _trace_store() -> Any:
    from voxpulse_console import tracestore

    return tracestore.from_env()  # type: ignore[attr-defined]


def _trace(trace_id: str) -> Any:
    async def run() -> Any:
        async with _trace_store() as store:
            return await store.trace(trace_id)

    return _run(run())


def _stack_ready() -> bool:
    from voxpulse_console import stack

    async def traces_ready() -> bool:
        async with _trace_store() as store:
            return bool(await store.ready())

    try:
        store_ok = bool(_run(traces_ready()))
    except Exception:
        store_ok = False
    return store_ok and stack.ready(stack.COMPONENTS["otelcol"].ready_url) and stack.ready(f"{PROM}/-/ready")


def _exemplar_traces() -> set[str]:
    r = httpx.get(f"{PROM}/api/v1/query_exemplars", timeout=10, params={
        "query": "voice_turn_time_to_first_word_seconds_bucket", "start": time.time() - 900, "end": time.time()})
    return {e["labels"].get("trace_id", "") for s in r.json()["data"] or [] for e in s["exemplars"]}


@dataclass
class Live:
    console: Console
    dsn: str
    receiver: str
    call_ids: list[str]
    run: str
    shots: Path
    insights: Path  # the console's VOXPULSE_INSIGHTS_DIR


@pytest.fixture(scope="module")
def live(base_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if not Path(CHROMIUM).is_file():
        unavailable("BROWSER", "no /usr/bin/chromium (scripts/bootstrap.sh installs Debian's chromium)")
    from voxpulse_console import stack

    tmp = tmp_path_factory.mktemp("browser")
    state: Path | None = None
    if not _stack_ready():
        missing = [n for n, c in stack.COMPONENTS.items() if stack.find_binary(c.binary_names) is None]
        if missing:
            unavailable("STACK", f"missing {', '.join(missing)}: run scripts/build-backends.sh")
        state = tmp / "stack"
        stack.up(state_dir=state, env={"VOXPULSE_SPANMETRICS_FLUSH": "16s"}, wait_s=120)
    receiver_port = free_port()
    try:
        with throwaway_database("voxpulse_browser") as dsn:
            run = uuid.uuid4().hex[:6]
            seed = os.getpid() % 90000 + 10000
            env = {**os.environ, "DATABASE_URL": dsn, "OTEL_SERVICE_NAME": f"vp-console-{seed}",
                   "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
            env.pop("VOXPULSE_DATABASE_URL", None)
            receiver = subprocess.Popen(
                [sys.executable, "-m", "voxpulse_console", "alerts-receiver", "--listen",
                 f"127.0.0.1:{receiver_port}", "--dsn", dsn], cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            (tmp / "insights").mkdir()
            console = start_console(tmp, dsn, VOXPULSE_INSIGHTS_DIR=str(tmp / "insights"))
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "voxpulse_console", "simulate", "--calls", str(CALLS), "--concurrency", "3",
                     "--seed", str(seed), "--run-id", run, "--exporter", "otlp", "--quiet",
                     "--scenario", "order_tyres", "--scenario", "book_fitting", "--scenario", "ask_operator"],
                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
                assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
                ids = [f"sim-{seed}-{run}-{i:04d}" for i in range(CALLS)]
                rows = wait_for(lambda: len(_sql(dsn, "SELECT 1 FROM calls WHERE call_id = ANY($1) AND ended_at "
                                                      "IS NOT NULL", ids)) == CALLS, "the calls in the history",
                                30, every_s=0.1)
                assert rows
                traces = [r["trace_id"] for r in _sql(dsn, "SELECT trace_id FROM calls WHERE call_id = ANY($1)", ids)]
                for tid in traces:
                    wait_for(lambda t=tid: _trace(t) is not None, f"trace {tid} in the trace store", 60, every_s=0.1)
                wait_for(lambda: _exemplar_traces() & set(traces),
                         "exemplars of the simulated calls in Prometheus", 90, every_s=2)
                shots = tmp / "shots"
                shots.mkdir()
                yield Live(console, dsn, f"http://127.0.0.1:{receiver_port}", ids, run, shots, tmp / "insights")
                if os.environ.get("VOXPULSE_UPDATE_SCREENSHOTS"):
                    SHOTS.mkdir(parents=True, exist_ok=True)
                    for f in shots.glob("*.png"):
                        shutil.copy(f, SHOTS / f.name)
            finally:
                stop_console(console)
                receiver.terminate()
                receiver.wait(10)
    finally:
        if state is not None:
            stack.down(state_dir=state)


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, live: Live) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB")
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "401" not in m.text else None)
    yield pg
    ctx.close()
    assert not errors, errors  # no script errors and no CSP violations


def login(page: Any, base: str, who: tuple[str, str] = ADMIN, then: str = "/") -> None:
    page.goto(f"{base}{then}")
    page.wait_for_url(re.compile(r".*/login\?next=.*"))
    page.get_by_label("User name").fill(who[0])
    page.get_by_label("Password").fill(who[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}{then}")


def shot(page: Any, live: Live, name: str, *, full_page: bool = True) -> None:
    page.wait_for_timeout(300)  # fonts and charts settle (not a synchronisation: the picture only)
    page.screenshot(path=str(live.shots / f"console-{name}.png"), full_page=full_page)


# ----------------------------------------------------------------------------------------- tests
def test_login_and_logout(page: Any, live: Live) -> None:
    base = live.console.url
    page.goto(f"{base}/login")
    shot(page, live, "login")
    login(page, base, ADMIN, "/calls")
    assert page.get_by_test_id("user").inner_text().startswith("admin")
    page.get_by_test_id("logout").click()
    page.wait_for_url(re.compile(r".*/login"))
    page.goto(f"{base}/alerts")
    page.wait_for_url(re.compile(r".*/login\?next=/alerts"))
    assert page.evaluate("fetch('/api/calls').then(r => r.status)") == 401


def test_log_out_works_when_the_page_showed_before_the_sessions_token(browser: Any, live: Live) -> None:
    """"Log out" logs out even when the page showed before the session's CSRF token could be had: the
    post asks for the token first. (Without it the server refuses the post, the session stays, and
    the click does nothing: the page shows its buttons on the metadata alone.)"""
    base = live.console.url
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB")
    try:
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        login(page, base, ADMIN, "/calls")
        lost: list[str] = []

        def lose(route: Any) -> None:
            lost.append(route.request.url)
            route.abort()

        page.route("**/api/session", lose)  # the preload and the page's own ask both fail
        page.goto(f"{base}/calls")
        page.get_by_test_id("logout").wait_for()
        page.unroute("**/api/session")
        assert lost and set(lost) == {f"{base}/api/session"}
        page.get_by_test_id("logout").click()
        page.wait_for_url(re.compile(r".*/login$"), timeout=10_000)
        assert set(errors) == {"Failed to load resource: net::ERR_FAILED"}  # the lost answers, nothing else
        page.goto(f"{base}/alerts")
        page.wait_for_url(re.compile(r".*/login\?next=/alerts"))
    finally:
        ctx.close()


def test_logging_out_leaves_for_the_login_page_once(browser: Any, live: Live) -> None:
    """Logging out asks for the login page from two places at once: the answer to the logout, and the
    server's "bye" on the live feed. The app leaves once: a second navigation aborted the first (the
    test saw net::ERR_ABORTED). The logout's answer is held back here until the "bye" is out."""
    base = live.console.url
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB")
    try:
        page = ctx.new_page()
        login(page, base, ADMIN, "/calls")
        page.get_by_test_id("logout").wait_for()
        page.wait_for_function("() => document.querySelector('[data-testid=banner]') === null")  # the feed is up
        to_login: list[str] = []
        page.on("request", lambda r: to_login.append(r.url) if r.is_navigation_request() else None)

        def answer_after_the_bye(route: Any) -> None:
            answer = route.fetch()  # the server logs out and says "bye" on the feed first
            route.fulfill(response=answer)

        page.route("**/api/logout", answer_after_the_bye)
        page.get_by_test_id("logout").click()
        page.wait_for_url(re.compile(r".*/login$"))
        page.get_by_label("User name").wait_for()
        assert to_login == [f"{base}/login"]
    finally:
        ctx.close()


# Calls the overview test puts in, with what each must add to the overview's numbers: three of
# today (one still active) and two of two days ago (a stale active one among them) that count nowhere.
_KNOWN_CALLS: list[tuple[str, int, str, str | None, str | None, float]] = [
    # (suffix, days ago, status, outcome, transfer reason, cost in USD)
    ("active", 0, "active", None, None, 0.10),
    ("bot", 0, "completed", "resolved_by_bot", None, 0.25),
    ("transfer", 0, "transferred", "transferred", "customer_request", 0.50),
    ("old-active", 2, "active", None, None, 1.00),
    ("old-transfer", 2, "transferred", "transferred", "customer_request", 2.00),
]
_KNOWN_DELTA = {"calls_today": 3, "active_calls": 1, "resolved_by_bot": 1, "transferred": 1, "cost_today_usd": 0.85}


def _put_known_calls(dsn: str, prefix: str) -> list[str]:
    from telemetry.history import ensure_partitions

    now = dt.datetime.now(dt.UTC)
    rows = [(f"{prefix}-{suffix}", now - dt.timedelta(days=days), status, outcome, reason, cost,
             None if status == "active" else now - dt.timedelta(days=days) + dt.timedelta(seconds=1))
            for suffix, days, status, outcome, reason, cost in _KNOWN_CALLS]
    _run(ensure_partitions(dsn, [r[1] for r in rows]))
    for row in rows:
        _sql(dsn, "INSERT INTO calls (call_id, started_at, status, outcome, transfer_reason, cost_usd, ended_at, "
                  "scenario) VALUES ($1, $2, $3, $4, $5, $6, $7, 'order') RETURNING call_id", *row)
    return [r[0] for r in rows]


def test_overview_numbers_move_by_the_calls_put_in(page: Any, live: Live) -> None:
    """The overview's database numbers move by exactly the calls the test puts in (known data, not
    the API's own queries re-run); the page shows what the API computed."""
    base = live.console.url
    api = live.console.client(ADMIN)
    before = api.get("/api/overview").json()["values"]
    api.close()
    known = _put_known_calls(live.dsn, f"ov-{live.run}")
    try:
        with page.expect_response(lambda r: r.url.endswith("/api/overview")) as resp:
            login(page, base, ADMIN, "/")
        body = resp.value.json()
        values = body["values"]
        page.locator('[data-stat="calls_today"] [data-value]').wait_for()
        shot(page, live, "overview")
        # what the page shows is what the API computed (checked before the calls put in go again)
        for name in ("active_calls", "calls_today", "resolved_by_bot", "transferred", "cost_today_usd",
                     "ttfw_p50_ms", "ttfw_p95_ms"):
            shown = page.locator(f'[data-stat="{name}"] .stat-value').get_attribute("data-value")
            want = values.get(name)
            assert (shown == "") if want is None else float(shown) == pytest.approx(float(want)), (name, shown, want)
        # the Prometheus numbers (time to first word, the stages' p95) are rates over 15 min: the
        # one-shot simulation's series may have a single sample there (then null, shown empty)
        for stage, v in values["stage_p95_ms"].items():
            bar = page.locator(f'[data-stat="stage_p95_ms"] [data-stage="{stage}"] .bar-value')
            shown = bar.get_attribute("data-value")
            assert (shown == "") if v is None else float(shown) == pytest.approx(v), stage
    finally:
        _sql(live.dsn, "DELETE FROM calls WHERE call_id = ANY($1) RETURNING call_id", known)
    # the database numbers moved by exactly the calls put in: today's count, cost and outcomes;
    # the active one, not the stale one of two days ago
    moved = {name: values[name] - before[name] for name in _KNOWN_DELTA}
    assert moved == pytest.approx(_KNOWN_DELTA), (moved, before, values)
    assert before["calls_today"] >= CALLS  # the simulated calls, all ended


def test_filters_and_search(page: Any, live: Live) -> None:
    base = live.console.url
    login(page, base, VIEWER, "/calls")
    table = page.get_by_test_id("calls-table")
    page.locator(f'tr[data-call-id="{live.call_ids[0]}"]').wait_for()
    shot(page, live, "calls")

    def shown() -> set[str]:
        return set(table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.callId)"))

    # outcome filter
    page.get_by_label("Outcome").select_option("transferred")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r".*outcome=transferred.*"))
    want = {r["call_id"] for r in _sql(live.dsn, "SELECT call_id FROM calls WHERE outcome = 'transferred'")}
    page.wait_for_function("n => document.querySelectorAll('[data-testid=calls-table] tbody tr').length === n",
                           arg=len(want))
    assert shown() == want
    # minimum time to first word
    page.goto(f"{base}/calls")
    page.get_by_label("Min. TTFW, ms").fill("1500")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r".*min_ttfw_ms=1500.*"))
    want = {r["call_id"] for r in _sql(live.dsn, "SELECT DISTINCT call_id FROM call_turns WHERE ttfw_ms >= 1500")}
    page.wait_for_function("n => document.querySelectorAll('[data-testid=calls-table] tbody tr').length === n",
                           arg=len(want))
    assert shown() == want
    # search by the caller's number in national format: matched on the raw number, shown masked
    page.goto(f"{base}/calls")
    page.get_by_label("Call ID or caller's number").fill("050 123 45 67")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r".*q=050.*"))
    want = {r["call_id"] for r in _sql(live.dsn, "SELECT call_id FROM calls WHERE phone = '+380501234567'")}
    page.wait_for_function("n => document.querySelectorAll('[data-testid=calls-table] tbody tr').length === n",
                           arg=len(want))
    assert shown() == want and want
    callers = set(table.locator("tbody tr td:nth-child(3)").all_inner_texts())
    assert callers == {"+380***567"}
    # search by call id
    page.goto(f"{base}/calls?q={live.call_ids[1]}")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=calls-table] tbody tr').length === 1")
    assert shown() == {live.call_ids[1]}


def test_call_view_has_the_traces_spans_and_the_historys_transcript(page: Any, live: Live) -> None:
    base = live.console.url
    (row,) = _sql(live.dsn, "SELECT call_id, trace_id FROM calls WHERE call_id = ANY($1) ORDER BY turns DESC, "
                            "call_id LIMIT 1", live.call_ids)
    login(page, base, ADMIN, f"/calls/{row['call_id']}")
    page.get_by_test_id("callview").wait_for()
    page.locator('[data-lane="turn:0"] [data-testid="waterfall"]').wait_for()
    shot(page, live, "call")
    trace = _trace(row["trace_id"])
    spans = {s.span_id: s for s in trace.spans}
    # every span of the trace is on the page exactly once
    on_page = page.locator("[data-span-id]").evaluate_all("els => els.map(e => e.dataset.spanId)")
    assert sorted(on_page) == sorted(spans)
    # each turn's lane: its turn span and its subtree, and the LiveKit subtrees that start in its window
    turns = sorted((s for s in trace.spans if s.attributes.get("voice.stage") == "turn"), key=lambda s: s.start_ns)
    assert turns
    kids: dict[str | None, list[Any]] = {}
    for s in trace.spans:
        kids.setdefault(s.parent_id, []).append(s)

    def subtree(s: Any) -> set[str]:
        out = {s.span_id}
        for k in kids.get(s.span_id, []):
            out |= subtree(k)
        return out

    root = trace.root
    session = [s for s in kids.get(root.span_id, []) if s.attributes.get("voice.stage") != "turn"]
    units = [u for sess in session for u in kids.get(sess.span_id, [])]
    for i, t in enumerate(turns):
        hi = turns[i + 1].start_ns if i + 1 < len(turns) else t.end_ns
        want = subtree(t).union(*(subtree(u) for u in units if t.start_ns <= u.start_ns < hi))
        idx = t.attributes["voice.turn.index"]
        lane = page.locator(f'[data-lane="turn:{idx}"] [data-testid="waterfall"] [data-span-id]')
        assert set(lane.evaluate_all("els => els.map(e => e.dataset.spanId)")) == want, idx
    # the transcript is the call history's
    hist = _sql(live.dsn, "SELECT turn_index, speaker, text FROM call_turns WHERE call_id = $1 ORDER BY ts",
                row["call_id"])
    for idx in sorted({h["turn_index"] for h in hist}):
        lane = page.locator(f'[data-testid="lane"][data-lane="turn:{idx}"]')
        for who, testid in (("user", "user-text"), ("agent", "agent-text")):
            text = " ".join(h["text"] for h in hist if h["turn_index"] == idx and h["speaker"] == who and h["text"])
            assert lane.get_by_test_id(testid).locator("p").inner_text() == (text or "—")
    # TTFW against the objective, and the raw trace link
    ttfw = page.locator('[data-lane="turn:0"] [data-testid="ttfw"]').get_attribute("data-value")
    assert float(ttfw) == pytest.approx(turns[0].attributes["voice.turn.time_to_first_word"] * 1000, abs=0.1)
    assert row["trace_id"] in page.get_by_test_id("trace-link").get_attribute("href")
    # each turn's anatomy: one stacked bar whose parts are the turn span's, in order, adding up to its TTFW
    for t in turns:
        idx = t.attributes["voice.turn.index"]
        bar = page.locator(f'[data-lane="turn:{idx}"] [data-testid="anatomy"] [data-testid="segment"]')
        drawn = bar.evaluate_all("els => els.map(e => [e.dataset.segment, Number(e.dataset.ms)])")
        want = [(k.removeprefix("voice.turn.segment."), round(v * 1000, 1)) for k, v in t.attributes.items()
                if k.startswith("voice.turn.segment.")]
        assert sorted(map(tuple, drawn)) == sorted(want), idx
        ttfw_ms = t.attributes["voice.turn.time_to_first_word"] * 1000
        assert sum(ms for _, ms in drawn) == pytest.approx(ttfw_ms, abs=1.5)
        order = [seg.value for seg in TurnSegment]
        assert [name for name, _ in drawn] == sorted((name for name, _ in drawn), key=order.index), idx


def test_a_call_that_ends_while_the_page_is_open_appears_within_2s(page: Any, live: Live) -> None:
    base = live.console.url
    login(page, base, ADMIN, "/calls")
    page.locator(f'tr[data-call-id="{live.call_ids[0]}"]').wait_for()
    page.get_by_test_id("live-status").filter(has_text="Live").wait_for()
    cid = f"live-{live.run}"
    now = dt.datetime.now(dt.UTC)
    _sql(live.dsn, "INSERT INTO calls (call_id, started_at, phone, scenario) VALUES ($1, $2, '+380671112233', "
                   "'order') RETURNING call_id", cid, now)
    page.locator(f'tr[data-call-id="{cid}"][data-status="active"]').wait_for(timeout=2000)
    _sql(live.dsn, "UPDATE calls SET status = 'completed', outcome = 'resolved_by_bot', ended_at = now(), "
                   "duration_seconds = 3.5 WHERE call_id = $1 RETURNING call_id", cid)
    page.locator(f'tr[data-call-id="{cid}"][data-status="completed"]').wait_for(timeout=2000)
    assert "resolved by bot" in page.locator(f'tr[data-call-id="{cid}"]').inner_text()


def test_an_alert_posted_to_the_receiver_shows_a_toast(page: Any, live: Live) -> None:
    base = live.console.url
    login(page, base, ADMIN, "/")
    page.get_by_test_id("live-status").filter(has_text="Live").wait_for()
    starts = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    note = {
        "version": "4", "status": "firing", "receiver": "alerts-history",
        "alerts": [{
            "status": "firing", "fingerprint": f"fp-{live.run}", "startsAt": starts,
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://127.0.0.1:9090/graph",
            "labels": {"alertname": "VoiceResponseLatencyHigh", "severity": "warning", "service": "voice-agent"},
            "annotations": {"summary": "Response latency p95 above 3 s"},
        }],
    }
    r = httpx.post(f"{live.receiver}/alerts", json=note, timeout=10)
    assert r.status_code == 200 and r.json()["stored"] == 1
    toast = page.get_by_test_id("toast").filter(has_text="VoiceResponseLatencyHigh")
    toast.wait_for(timeout=5000)
    assert "Response latency p95 above 3 s" in toast.inner_text()
    shot(page, live, "toast", full_page=False)
    # the alerts page lists it, with a link to the calls of its window
    page.goto(f"{base}/alerts")
    row = page.locator('[data-testid="alerts-table"] tbody tr').filter(has_text="VoiceResponseLatencyHigh")
    row.wait_for()
    shot(page, live, "alerts")
    row.get_by_test_id("alert-calls").click()
    page.wait_for_url(re.compile(r".*/calls\?from=.*&to=.*"))


def test_an_exemplar_click_lands_on_the_right_call(page: Any, live: Live) -> None:
    base = live.console.url
    ours = {r["trace_id"]: r["call_id"] for r in _sql(live.dsn, "SELECT trace_id, call_id FROM calls "
                                                                  "WHERE call_id = ANY($1)", live.call_ids)}
    login(page, base, ADMIN, "/latency?window=15m")
    markers = page.locator("button.marker")
    markers.first.wait_for()
    shot(page, live, "latency")
    # a marker of one of our calls that no later marker covers (markers of one moment may overlap)
    on_top = markers.evaluate_all("""els => els.map(e => {
        const r = e.getBoundingClientRect();
        return [e.dataset.traceId, document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === e];
    })""")
    pick = next((i for i, (t, top) in enumerate(on_top) if t in ours and top), None)
    if pick is None:  # every one of ours is covered: the keyboard reaches it all the same
        pick = next(i for i, (t, _top) in enumerate(on_top) if t in ours)
        markers.nth(pick).focus()
        page.keyboard.press("Enter")
    else:
        markers.nth(pick).click()
    trace_id = on_top[pick][0]
    page.wait_for_url(re.compile(r".*/calls/.+"))
    assert page.url.endswith(f"/calls/{ours[trace_id]}")
    page.get_by_test_id("callview").wait_for()
    assert page.get_by_test_id("callview").get_attribute("data-call-id") == ours[trace_id]
    # the slowest calls of the window open the same view
    page.goto(f"{base}/latency?window=15m")
    first = page.get_by_test_id("slowest").locator("tbody tr").first
    first.wait_for()
    cid = first.get_attribute("data-call-id")
    first.get_by_role("link").click()
    page.wait_for_url(f"{base}/calls/{cid}")


def test_unauthenticated_and_cross_site_requests_are_refused(browser: Any, page: Any, live: Live) -> None:
    base = live.console.url
    # no session: every page sends to the login, every API answers 401
    page.goto(f"{base}/latency")
    page.wait_for_url(re.compile(r".*/login\?next=/latency"))
    assert page.evaluate("fetch('/api/overview').then(r => r.status)") == 401
    # logged in, then a page of another origin posts to the console with the browser's cookies
    login(page, base, ADMIN, "/alerts")
    other = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                              str(live.shots), str(port := free_port())], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/").status_code == 200, "the other site", 30, every_s=0.1)
        evil = page.context.new_page()
        evil.goto(f"http://127.0.0.1:{port}/")
        statuses = evil.evaluate(
            """async (base) => {
                 const out = [];
                 for (const init of [{method: 'POST', credentials: 'include', mode: 'no-cors',
                                      headers: {'Content-Type': 'text/plain'}, body: '{}'},
                                     {method: 'POST', credentials: 'include',
                                      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': 'guess'},
                                      body: '{}'}]) {
                   try { const r = await fetch(base + '/api/logout', init); out.push(r.type + ':' + r.status); }
                   catch (e) { out.push('blocked'); }
                 }
                 return out;
               }""", base)
        # nothing readable came back (CORS, Cross-Origin-Resource-Policy) and nothing happened: the
        # server refused the first by its Origin, the browser did not even send the second (preflight)
        assert set(statuses) <= {"blocked", "opaque:0"}, statuses
        evil.close()
    finally:
        other.terminate()
        other.wait(10)
    # the session survived both attempts
    assert page.evaluate("fetch('/api/meta').then(r => r.status)") == 200


def test_a_login_never_leaves_the_console(browser: Any, live: Live) -> None:
    """``next`` values that Chromium's own URL parser reads as another host: after the login the
    browser is on the console's overview."""
    base = live.console.url
    for raw in ("/%5Cevil.example/x", "/%09/evil.example", "/%0A/evil.example", "//evil.example",
                "https:evil.example", "HtTpS://evil.example"):
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(f"{base}/login?next={raw}")
        page.get_by_label("User name").fill(ADMIN[0])
        page.get_by_label("Password").fill(ADMIN[1])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/")
        page.goto(f"{base}/login?next={raw}")  # the login page with a session: the same
        page.wait_for_url(f"{base}/")
        ctx.close()


def test_the_login_rate_limit_holds_in_the_browser(browser: Any, live: Live, tmp_path: Path) -> None:
    own = start_console(tmp_path, live.dsn, VOXPULSE_UI_LOGIN_DELAY_S="600")  # a wait no test outlasts
    try:
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(f"{own.url}/login")
        for _ in range(3):  # the free failures
            page.get_by_label("User name").fill("admin")
            page.get_by_label("Password").fill("not-the-password")
            page.get_by_role("button", name="Sign in").click()
            page.locator("#login-error").filter(has_text="Wrong user name or password").wait_for()
        page.get_by_label("Password").fill(ADMIN[1])  # the right one, too late
        page.get_by_role("button", name="Sign in").click()
        page.locator("#login-error").filter(has_text="Too many failed attempts").wait_for()
        assert page.url.startswith(f"{own.url}/login")
        ctx.close()
    finally:
        stop_console(own)


def test_ukrainian_interface(page: Any, live: Live) -> None:
    base = live.console.url
    login(page, base, ADMIN, "/")
    page.locator("header select").select_option("uk")
    page.get_by_role("link", name="Дзвінки").click()
    page.wait_for_url(f"{base}/calls")
    page.get_by_role("heading", name="Дзвінки").wait_for()
    assert page.get_by_label("ID дзвінка або номер абонента").is_visible()
    (row,) = _sql(live.dsn, "SELECT call_id FROM calls WHERE call_id = ANY($1) ORDER BY turns DESC LIMIT 1",
                  live.call_ids)
    page.goto(f"{base}/calls/{row['call_id']}")
    page.locator('[data-lane="turn:0"] [data-testid="user-text"]').wait_for()
    shot(page, live, "call-uk")
    assert page.evaluate(
        "document.fonts.ready.then(() => document.fonts.check('16px \"IBM Plex Sans\"', 'Дзвінок їжак'))")


def test_a_source_down_shows_a_banner_and_the_rest_works(browser: Any, live: Live, tmp_path: Path) -> None:
    """Prometheus and the trace store unreachable: the banner names them; the calls list and the call
    view (from the history alone, saying so) still work."""
    with closed_port() as prometheus, closed_port() as trace_store:
        own = start_console(tmp_path, live.dsn, VOXPULSE_PROMETHEUS_URL=f"http://127.0.0.1:{prometheus}",
                            VOXPULSE_TRACE_STORE_URL=f"http://127.0.0.1:{trace_store}")
        try:
            ctx = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB")
            page = ctx.new_page()
            login(page, own.url, ADMIN, "/calls")
            banner = page.get_by_test_id("banner")
            banner.locator('[data-source="prometheus"]').wait_for()
            banner.locator('[data-source="traces"]').wait_for()
            page.locator(f'tr[data-call-id="{live.call_ids[0]}"]').wait_for()
            page.goto(f"{own.url}/calls/{live.call_ids[0]}")
            notice = page.get_by_test_id("source-notice")
            notice.wait_for()
            assert notice.get_attribute("data-source") == "history-only"
            page.locator('[data-lane="turn:0"] [data-testid="user-text"]').wait_for()
            ctx.close()
        finally:
            stop_console(own)


def test_usable_by_keyboard_with_labelled_controls(page: Any, live: Live) -> None:
    base = live.console.url
    login(page, base, ADMIN, "/calls")
    page.locator(f'tr[data-call-id="{live.call_ids[0]}"]').wait_for()
    # every form control has a label a screen reader announces
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.outerHTML)""")
    assert unlabelled == []
    # the skip link, then the navigation, by Tab and Enter
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Latency":
            break
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/latency")
    # a span's attributes open from the keyboard
    page.goto(f"{base}/calls/{live.call_ids[0]}")
    row = page.locator('[data-lane="turn:0"] .wf-row').first
    row.locator("button.wf-name").focus()
    page.keyboard.press("Enter")
    row.get_by_role("region").wait_for()
    assert row.locator("button.wf-name").get_attribute("aria-expanded") == "true"


def test_the_recording_on_a_traced_call_marks_ttfw_and_barge_ins_and_a_span_seeks(page: Any, live: Live) -> None:
    """A recording (real Ogg Opus, stored by the insights receiver's store) for a simulated call with
    its trace: the waveform carries one time-to-first-word gap per turn the trace measured and the
    barge-ins the trace recorded, on the call's axis; a click on a span's bar seeks the player to it."""
    from .recordings import speech_recording, store

    (row,) = _sql(live.dsn, "SELECT call_id FROM calls WHERE call_id = ANY($1) ORDER BY turns DESC, call_id DESC "
                            "LIMIT 1", live.call_ids)
    cid = row["call_id"]
    api = live.console.client(ADMIN)
    view = api.get(f"/api/calls/{cid}").json()
    api.close()
    lanes = [ln for ln in view["lanes"] if ln["index"] is not None]
    gaps = [ln for ln in lanes if ln.get("speech_end_ms") is not None and ln.get("first_audio_ms") is not None]
    barges = [i for ln in view["lanes"] for i in ln.get("interruptions") or [] if i["event"] == "interruption"]
    assert gaps and len(lanes) >= 2, "the simulated call has fewer than two turns with a time to first word"
    seconds = max(ln["end_ms"] for ln in view["lanes"]) / 1000 + 1
    lines = [(0, ln["start_ms"] / 1000, "Добрий день") for ln in lanes]
    audio = speech_recording(lines, seconds)

    async def put() -> None:
        conn = await asyncpg.connect(live.dsn)
        try:
            await store(conn, live.insights, cid, audio=audio, started_at=dt.datetime.fromtimestamp(view["t0"], dt.UTC),
                        tags={"order_created": None}, verdicts={"task_completion": ("pass", "ordered")})
        finally:
            await conn.close()

    _run(put())
    login(page, live.console.url, ADMIN, f"/calls/{cid}")
    page.get_by_test_id("recording").wait_for()
    page.wait_for_function("() => document.querySelector('[data-testid=waveform]').dataset.decoded === 'true'",
                           timeout=15_000)
    assert page.get_by_test_id("recording").get_attribute("data-offset-ms") == "0"
    assert sorted(page.get_by_test_id("wave-ttfw").evaluate_all("els => els.map(e => e.dataset.turn)")) == sorted(
        ln["key"] for ln in gaps)
    assert page.get_by_test_id("wave-barge-in").count() == len(barges)
    shot(page, live, "call-recording")
    page.wait_for_function("() => document.querySelector('audio[data-testid=player]').readyState >= 1",
                           timeout=15_000)
    bar = page.locator('[data-testid=lane][data-lane="turn:1"] [data-testid=span-bar]').last
    want = float(bar.get_attribute("data-start-ms")) / 1000
    bar.click()
    page.wait_for_function(
        f"() => Math.abs(document.querySelector('audio[data-testid=player]').currentTime - {want}) < 0.05")
    assert page.locator('[data-testid=lane][data-playing=true]').get_attribute("data-lane") == "turn:1"
