"""The console's HTTP API against the real console process and the real PostgreSQL: login, CSRF,
cross-site refusal, security headers, bad input, the calls list (filters, search, keyset
pagination), masking, the live feed (LISTEN/NOTIFY -> SSE) and degradation when Prometheus and the
trace store are down. The login throttle, redirects and origins: test_doors.py."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import closed_port

from .conftest import ADMIN, VIEWER, Console, start_console, stop_console

pytestmark = pytest.mark.db

PHONE = "+380501234567"
T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


async def insert_calls(pg: Any, n: int, *, t0: dt.datetime = T0, prefix: str = "api") -> list[str]:
    """n finished calls one minute apart (newest last), every third transferred, every fifth with a
    slow turn (TTFW 4 s) and a failed tool call; their turns and tool calls."""
    from telemetry.history import ensure_partitions

    await ensure_partitions(pg, [t0, t0 + dt.timedelta(minutes=n)])
    ids = [f"{prefix}-{i:05d}" for i in range(n)]
    rows, turns, tools = [], [], []
    for i, cid in enumerate(ids):
        start = t0 + dt.timedelta(minutes=i)
        transferred = i % 3 == 0
        rows.append((cid, start, start + dt.timedelta(seconds=30), "transferred" if transferred else "completed",
                     "transferred" if transferred else "resolved_by_bot", "customer_request" if transferred else None,
                     "order" if i % 2 else "fitting", 30.0, 0.004, 2, PHONE if i % 4 == 0 else f"+38050000{i:04d}",
                     f"{i:032x}"))
        for k in range(2):
            ts = start + dt.timedelta(seconds=5 + 10 * k)
            ttfw = 4000.0 if (i % 5 == 0 and k == 1) else 900.0 + i
            turns.append((cid, k, "user", ts, f"Добрий день, мій номер {PHONE}" if k == 0 else "Дякую", 260.0, None,
                          None, None, False))
            turns.append((cid, k, "agent", ts + dt.timedelta(seconds=1), "Є шини 205/55 R16", None, 400.0, 200.0,
                          ttfw, False))
        tools.append((cid, start + dt.timedelta(seconds=6), i, 0, "find_tyres", f"call_{i}",
                      json.dumps({"size": "205/55 R16", "phone": PHONE}), json.dumps({"found": 2}),
                      i % 5 != 0, None if i % 5 else "store 503", 120.0))
    await pg.executemany(
        """INSERT INTO calls (call_id, started_at, ended_at, status, outcome, transfer_reason, scenario,
                              duration_seconds, cost_usd, turns, phone, trace_id)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)""", rows)
    await pg.executemany(
        """INSERT INTO call_turns (call_id, turn_index, speaker, ts, text, stt_ms, llm_ms, tts_ms, ttfw_ms, interrupted)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)""", turns)
    await pg.executemany(
        """INSERT INTO call_tool_calls (call_id, ts, seq, turn_index, name, tool_call_id, args, result, success,
                                        error, duration_ms)
           VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8::jsonb,$9,$10,$11)""", tools)
    return ids


# ------------------------------------------------------------------------------------------ auth
PAGES = ["/", "/calls", "/calls/x-1", "/latency", "/alerts"]
APIS = ["/api/meta", "/api/overview", "/api/calls", "/api/calls/x-1", "/api/latency", "/api/alerts", "/api/events",
        f"/api/traces/{'a' * 32}/call"]


def test_every_page_and_api_route_needs_a_login(console: Console) -> None:
    with httpx.Client(base_url=console.url, follow_redirects=False, timeout=10) as http:
        for p in PAGES:
            r = http.get(p)
            assert r.status_code == 302 and r.headers["location"].startswith("/login?next="), p
        for p in APIS:
            r = http.get(p)
            assert r.status_code == 401 and r.json() == {"error": "login required"}, p
        assert http.post("/api/logout").status_code in (401, 403)
        # what is public: the login page, its assets, the session probe and health
        assert http.get("/login").status_code in (200, 503)
        assert http.get("/healthz").json() == {"status": "ok"}
        body = http.get("/api/session").json()
        assert body["authenticated"] is False and body["csrf"]


def test_login_logout_and_session_cookie(console: Console) -> None:
    c = console.client(None)
    r = c.login(ADMIN[0], "wrong-password")
    assert r.status_code == 401
    r = c.login(*ADMIN)
    assert r.status_code == 200 and r.json()["can_view_pii"] is True
    cookie = r.headers["set-cookie"]
    assert "vp_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert c.get("/api/meta").status_code == 200
    assert c.post("/api/logout").status_code == 200
    assert c.get("/api/meta").status_code == 401
    c.close()


def test_state_changes_need_the_csrf_token_and_same_origin(console: Console) -> None:
    c = console.client(ADMIN)
    # no token, a wrong token: refused
    assert c.http.post("/api/logout").status_code == 403
    assert c.http.post("/api/logout", headers={"X-CSRF-Token": "nope"}).status_code == 403
    # the right token from another site: refused (a browser always sends Origin on a POST)
    r = c.post("/api/logout", Origin="https://evil.example")
    assert r.status_code == 403 and "cross-site" in r.json()["error"]
    r = c.post("/api/logout", **{"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert c.get("/api/meta").status_code == 200  # still logged in
    # a login form posted from another site is refused before any password check
    anon = console.client(None)
    anon.session()
    r = anon.http.post("/api/login", json={"user": ADMIN[0], "password": ADMIN[1]},
                       headers={"X-CSRF-Token": anon.csrf, "Origin": "http://attacker.test"})
    assert r.status_code == 403
    r = anon.http.post("/api/login", json={"user": ADMIN[0], "password": ADMIN[1]})  # no token
    assert r.status_code == 403
    c.close()
    anon.close()


def test_security_headers(console: Console) -> None:
    c = console.client(ADMIN)
    for path in ("/api/meta", "/login"):
        h = c.get(path).headers
        csp = h["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert h["x-content-type-options"] == "nosniff"
        assert h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer"
        assert h["cache-control"] == "no-store"
        assert "server" not in h
    c.close()


def test_refuses_to_start_without_users(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXPULSE_UI_")}
    proc = subprocess.run([sys.executable, "-m", "voxpulse_console", "ui", "--listen", "127.0.0.1:1"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "VOXPULSE_UI_USERS" in proc.stderr
    env["VOXPULSE_UI_USERS"] = "admin:plain-text-password"  # a password is not a hash
    proc = subprocess.run([sys.executable, "-m", "voxpulse_console", "ui", "--listen", "127.0.0.1:1"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "hash" in proc.stderr
    assert "plain-text-password" not in proc.stderr


# ------------------------------------------------------------------------------------- bad input
BAD = [
    ("/api/calls", {"min_ttfw_ms": "abc"}),
    ("/api/calls", {"from": "yesterday"}),
    ("/api/calls", {"from": "2026-11-20T10:00:00Z", "to": "2026-11-19T10:00:00Z"}),
    ("/api/calls", {"outcome": "exploded"}),
    ("/api/calls", {"scenario": "x' OR 1=1 --"}),
    ("/api/calls", {"cursor": "not-a-cursor"}),
    ("/api/calls", {"limit": "100000"}),
    ("/api/calls", {"errors": "maybe"}),
    ("/api/calls", {"q": "'; DROP TABLE calls; --"}),
    ("/api/calls", {"sort": "x"}),
    ("/api/latency", {"window": "forever"}),
    ("/api/latency", {"end": "soon"}),
    ("/api/alerts", {"status": "weird"}),
    ("/api/alerts", {"before": "-1"}),
]


@pytest.mark.parametrize(("path", "params"), BAD)
def test_bad_input_is_a_clear_4xx(console: Console, path: str, params: dict[str, str]) -> None:
    c = console.client(ADMIN)
    r = c.get(path, **params)
    assert r.status_code == 400, (path, params, r.text)
    assert set(r.json()) == {"error"} and r.json()["error"]
    assert "Traceback" not in r.text
    c.close()


def test_odd_requests(console: Console) -> None:
    c = console.client(ADMIN)
    assert c.get("/api/calls/no-such-call").status_code == 404
    assert c.get("/api/calls/" + "x" * 300).status_code == 400
    assert c.get("/api/calls/%00%01").status_code == 400
    assert c.get(f"/api/traces/{'0' * 32}/call").status_code == 404
    assert c.get("/api/traces/xyz/call").status_code == 400
    assert c.get("/api/nope").status_code == 404
    assert c.get("/calls/bad%20id").status_code == 400
    r = c.get("/api/calls", q="x" * 5000)
    assert r.status_code in (400, 414) and "Traceback" not in r.text
    r = c.http.get("/api/calls?" + "a=1&" * 2000)
    assert r.status_code in (400, 414)
    r = c.http.post("/api/login", content=b"{not json", headers={"Content-Type": "application/json",
                                                                   "X-CSRF-Token": c.csrf})
    assert r.status_code in (400, 403)
    r = c.http.post("/api/login", content=b"x" * 100_000, headers={"Content-Type": "application/json",
                                                                     "X-CSRF-Token": c.csrf})
    assert r.status_code in (403, 413)
    c.close()


# ------------------------------------------------------------------------------------- the data
async def test_calls_filters_search_and_keyset_pages(console: Console, pg: Any) -> None:
    ids = await insert_calls(pg, 57)
    c = console.client(ADMIN)
    # every call, newest first, in pages of 20 through the cursor
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "20", "from": "2026-11-01T00:00:00Z"} | ({"cursor": cursor} if cursor else {})
        body = c.get("/api/calls", **params).json()
        seen += [r["call_id"] for r in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    # filters, each checked against the rows inserted
    def listed(**params: str) -> list[str]:
        return [r["call_id"] for r in c.get("/api/calls", limit="200", **params).json()["items"]]

    assert set(listed(outcome="transferred")) == {i for n, i in enumerate(ids) if n % 3 == 0}
    assert set(listed(scenario="order")) == {i for n, i in enumerate(ids) if n % 2}
    assert set(listed(min_ttfw_ms="3000")) == {i for n, i in enumerate(ids) if n % 5 == 0}
    assert set(listed(errors="1")) == {i for n, i in enumerate(ids) if n % 5 == 0}
    lo, hi = (T0 + dt.timedelta(minutes=10)).isoformat(), (T0 + dt.timedelta(minutes=20)).isoformat()
    assert listed(**{"from": lo, "to": hi}) == list(reversed(ids[10:20]))
    # search: a call id prefix; a caller's number in any common form matches the stored raw number
    assert listed(q="api-0001") == list(reversed(ids[10:20]))
    want = {i for n, i in enumerate(ids) if n % 4 == 0}
    for form in (PHONE, "380501234567", "050 123 45 67", "+38 (050) 123-45-67"):
        assert set(listed(q=form)) == want, form
    c.close()


async def test_personal_data_only_for_users_with_the_permission(console: Console, pg: Any) -> None:
    await insert_calls(pg, 4)
    admin, viewer = console.client(ADMIN), console.client(VIEWER)
    a = admin.get("/api/calls", q=PHONE).json()["items"]
    v = viewer.get("/api/calls", q=PHONE).json()["items"]
    assert [r["call_id"] for r in a] == [r["call_id"] for r in v] != []  # the viewer may search by number
    assert {r["caller"] for r in a} == {PHONE}
    assert {r["caller"] for r in v} == {"+380***567"}
    va = admin.get("/api/calls/api-00000").json()
    vv = viewer.get("/api/calls/api-00000").json()
    assert va["call"]["caller"] == PHONE and vv["call"]["caller"] == "+380***567"
    assert PHONE in va["lanes"][0]["user_text"]
    assert PHONE not in json.dumps(vv, ensure_ascii=False)
    assert "+380***567" in vv["lanes"][0]["user_text"]
    assert vv["lanes"][0]["tools"][0]["args"]["phone"] == "+380***567"
    admin.close()
    viewer.close()


async def test_call_view_with_only_the_history_says_so(console: Console, pg: Any) -> None:
    await insert_calls(pg, 1)
    c = console.client(ADMIN)
    v = c.get("/api/calls/api-00000").json()
    assert v["sources"]["history"] is True and v["sources"]["trace"] is False
    assert v["sources"]["trace_error"]
    lanes = [(lane["index"], lane["user_text"].startswith("Добрий день")) for lane in v["lanes"]]
    assert lanes == [(0, True), (1, False)]
    assert v["lanes"][1]["ttfw_ms"] == 4000.0 and v["lanes"][1]["ttfw_over_objective"] is True
    assert v["lanes"][0]["tools"][0]["name"] == "find_tyres" and v["lanes"][0]["tools"][0]["success"] is False
    c.close()


def test_degrades_when_prometheus_and_the_trace_store_are_down(console: Console) -> None:
    c = console.client(ADMIN)
    meta = c.get("/api/meta").json()
    assert meta["sources"]["db"]["ok"] is True
    assert meta["sources"]["prometheus"]["ok"] is False and meta["sources"]["traces"]["ok"] is False
    ov = c.get("/api/overview")
    assert ov.status_code == 200
    body = ov.json()
    assert "prometheus" in body["errors"] and "calls_today" in body["values"]
    lat = c.get("/api/latency", window="1h")
    assert lat.status_code == 200 and "prometheus" in lat.json()["errors"]
    c.close()


def test_degrades_when_postgresql_is_down(tmp_path: Path) -> None:
    with closed_port() as db, closed_port() as prometheus:
        own = start_console(tmp_path, f"postgresql://nobody:nothing@127.0.0.1:{db}/none",
                            VOXPULSE_PROMETHEUS_URL=f"http://127.0.0.1:{prometheus}")
        try:
            c = own.client(ADMIN)  # logging in needs no database
            assert c.get("/api/meta").json()["sources"]["db"]["ok"] is False
            r = c.get("/api/calls")
            assert r.status_code == 503 and "unavailable" in r.json()["error"]
            assert c.get("/api/overview").status_code == 200
            assert c.get("/api/calls/x-1").status_code == 503
            c.close()
        finally:
            stop_console(own)


# ------------------------------------------------------------------------------------- live feed
async def _events(console: Console, out: asyncio.Queue[tuple[str, Any, float]], ready: asyncio.Event) -> None:
    c = console.client(ADMIN)
    cookies = dict(c.http.cookies)
    c.close()
    async with httpx.AsyncClient(base_url=console.url, cookies=cookies, timeout=None) as http, \
            http.stream("GET", "/api/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event = ""
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "hello":
                    ready.set()
                else:
                    out.put_nowait((event, json.loads(line[6:]), time.monotonic()))


async def test_live_feed_pushes_call_and_alert_writes(console: Console, pg: Any) -> None:
    """Each write reaches a connected client within 2 s of its commit, pushed (no polling). Writes
    to one call within the feed's coalescing window (50 ms) arrive as one event with the latest row."""
    from telemetry.history import ensure_partitions

    now = dt.datetime.now(dt.UTC)
    await ensure_partitions(pg, [now])
    got: asyncio.Queue[tuple[str, Any, float]] = asyncio.Queue()
    ready = asyncio.Event()
    task = asyncio.create_task(_events(console, got, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)

        async def next_event(since: float) -> tuple[str, Any]:
            event, data, t = await asyncio.wait_for(got.get(), 10)
            assert t - since < 2.0, f"{event} arrived {t - since:.2f} s after the commit"
            return event, data

        t = time.monotonic()
        await pg.execute("INSERT INTO calls (call_id, started_at, phone) VALUES ('live-1', $1, $2)", now, PHONE)
        event, d = await next_event(t)
        assert (event, d["call_id"], d["status"], d["caller"]) == ("call", "live-1", "active", PHONE)
        t = time.monotonic()
        await pg.execute("UPDATE calls SET status = 'completed', outcome = 'resolved_by_bot', ended_at = now() "
                         "WHERE call_id = 'live-1'")
        event, d = await next_event(t)
        assert (event, d["call_id"], d["status"], d["outcome"]) == ("call", "live-1", "completed", "resolved_by_bot")
        t = time.monotonic()
        await pg.execute("INSERT INTO alerts_history (fingerprint, alertname, severity, status, message, starts_at) "
                         "VALUES ('f1', 'HighTTFW', 'warning', 'firing', 'TTFW p95 > 3 s', now())")
        event, d = await next_event(t)
        assert (event, d["alertname"], d["status"], d["op"]) == ("alert", "HighTTFW", "firing", "INSERT")
        assert got.empty()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
