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

from .conftest import ADMIN, CLERK, VIEWER, Console, start_console, stop_console
from .recordings import fixture_recording, store

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
    ("/api/calls", {"insight_outcome": "maybe"}),
    ("/api/calls", {"failed_judge": "x'; DROP TABLE insights_calls; --"}),
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


# ------------------------------------------------------------------------------ agent insights
def _folder(console: Console) -> Path:
    return Path(console.env["VOXPULSE_INSIGHTS_DIR"])


def _raw_get(console: Console, client: Any, path: str, **headers: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client normalises its dot segments or escapes)."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(console.url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
    try:
        cookie = "; ".join(f"{k}={v}" for k, v in client.http.cookies.items())
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.putheader("Cookie", cookie)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


async def test_call_insights_in_the_call_view_masked_like_the_rest(console: Console, pg: Any) -> None:
    [cid] = await insert_calls(pg, 1, prefix="ins")
    audio = fixture_recording()
    await store(pg, _folder(console), cid, audio=audio, started_at=T0 + dt.timedelta(seconds=2),
                tags={"order_created": {"order": 17}, "vip": None},
                verdicts={"task_completion": ("pass", "the tyres were ordered"),
                          "politeness": ("fail", f"the agent read {PHONE} aloud")},
                outcome=("fail", f"caller {PHONE} hung up"))
    viewer, admin = console.client(VIEWER), console.client(ADMIN)
    ins = viewer.get(f"/api/calls/{cid}").json()["insights"]
    assert ins["outcome"] == "fail" and PHONE not in ins["outcome_reason"]
    assert [(v["judge"], v["result"]) for v in ins["verdicts"]] == [("politeness", "fail"), ("task_completion", "pass")]
    assert PHONE not in json.dumps(ins) and "+380***567" in ins["verdicts"][0]["reason"]
    assert [t["name"] for t in ins["tags"]] == ["order_created", "vip"]
    assert ins["tags"][0]["metadata"] == {"order": 17}
    a = ins["audio"]
    # the recording started 2 s after the call: placed there on the call's axis; no permission, no URL
    assert (a["state"], a["allowed"], a["url"], a["offset_ms"]) == ("present", False, None, 2000.0)
    assert a["bytes"] == len(audio) and a["duration_s"] == pytest.approx(0.4065)
    assert a["channels"] == ["caller", "agent"]
    raw = admin.get(f"/api/calls/{cid}").json()["insights"]
    assert PHONE in raw["outcome_reason"] and raw["audio"]["url"] == f"/api/calls/{cid}/audio"
    # meta and session say what the user may do; the judges are offered as filter values
    assert viewer.get("/api/meta").json()["can_play_audio"] is False
    meta = admin.get("/api/meta").json()
    assert meta["can_play_audio"] is True and meta["filters"]["judge"] == ["politeness", "task_completion"]
    viewer.close()
    admin.close()


async def test_audio_needs_its_own_permission_and_seeks_by_range(console: Console, pg: Any) -> None:
    [cid] = await insert_calls(pg, 1, prefix="aud")
    audio = fixture_recording()
    await store(pg, _folder(console), cid, audio=audio, started_at=T0)
    path = f"/api/calls/{cid}/audio"
    for who in (VIEWER, CLERK):  # viewing the call, even its raw personal data, is not hearing it
        c = console.client(who)
        assert c.get(f"/api/calls/{cid}").status_code == 200
        r = c.get(path)
        assert r.status_code == 403 and "audio permission" in r.json()["error"], who[0]
        assert r.content != audio
        c.close()
    anon = console.client(None)
    assert anon.get(path).status_code == 401
    anon.close()
    c = console.client(ADMIN)
    r = c.get(path)
    assert r.status_code == 200 and r.content == audio
    assert r.headers["content-type"] == "audio/ogg" and r.headers["cache-control"] == "no-store"
    assert r.headers["accept-ranges"] == "bytes"
    # the player seeks with Range requests
    r = c.http.get(path, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == audio[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(audio)}"
    assert r.headers["cache-control"] == "no-store"
    r = c.http.get(path, headers={"Range": "bytes=-50"})
    assert r.status_code == 206 and r.content == audio[-50:]
    r = c.http.get(path, headers={"Range": f"bytes={len(audio) + 10}-"})
    assert r.status_code == 416
    c.close()


TRAVERSAL = [
    "/api/calls/../audio", "/api/calls/./audio", "/api/calls/%2e%2e/audio", "/api/calls/..%2F..%2Fsecret/audio",
    "/api/calls/..%2fsecret/audio", "/api/calls/%2E%2E%2Fsecret/audio", "/api/calls/x%00/audio",
    "/api/calls/secret%5C..%5C..%5Csecret/audio", "/api/calls/a:b/audio", "/api/calls/linked/audio",
    "/api/calls/" + "a" * 200 + "/audio", "/api/calls/%252e%252e%252fsecret/audio",
]


@pytest.mark.parametrize("path", TRAVERSAL)
def test_a_call_id_that_is_not_one_safe_segment_never_reaches_the_disk(console: Console, path: str) -> None:
    folder = _folder(console)
    secret = folder.parent / "secret"  # a recording beside the folder, and the folder's own parent
    secret.mkdir(exist_ok=True)
    planted = b"OggS not yours " + path.encode()
    for where in (secret / "recording.ogg", folder / "recording.ogg", folder.parent / "recording.ogg"):
        where.write_bytes(planted)
    link = folder / "linked"
    if not link.is_symlink():
        link.symlink_to(secret, target_is_directory=True)
    c = console.client(ADMIN)
    status, body = _raw_get(console, c, path)
    assert status in (400, 404), (path, status, body[:200])
    assert b"not yours" not in body
    c.close()


async def test_a_broken_or_missing_recording_is_shown_so_never_a_500(console: Console, pg: Any) -> None:
    broken, gone = await insert_calls(pg, 2, prefix="brk")
    audio = fixture_recording()
    await store(pg, _folder(console), broken, audio=audio[:-200], started_at=T0)  # truncated: no end of stream
    await store(pg, _folder(console), gone, audio=audio, started_at=T0)
    (_folder(console) / gone / "recording.ogg").unlink()  # deleted behind the row's back
    c = console.client(ADMIN)
    a = c.get(f"/api/calls/{broken}").json()["insights"]["audio"]
    assert a["state"] == "broken" and "truncated" in a["problem"] and a["url"]
    r = c.get(a["url"])  # what is left is served: a truncated Ogg mostly plays
    assert r.status_code == 200 and r.content == audio[:-200]
    a = c.get(f"/api/calls/{gone}").json()["insights"]["audio"]
    assert (a["state"], a["url"]) == ("missing", None)
    r = c.get(f"/api/calls/{gone}/audio")
    assert r.status_code == 404 and "Traceback" not in r.text
    c.close()


async def test_a_dropped_recording_and_a_call_only_the_receiver_knows(console: Console, pg: Any) -> None:
    """An agent without VoxPulse: no call-history row, no trace the console can find, only the
    receiver's row; the call page still opens with its insights (and the recording it did not keep)."""
    await store(pg, _folder(console), "RM_zerocode1", audio=fixture_recording(), started_at=T0, keep_audio=False,
                outcome=("success", None), verdicts={"task_completion": ("pass", "ok")})
    c = console.client(ADMIN)
    body = c.get("/api/calls/RM_zerocode1").json()
    assert body["sources"]["history"] is False and body["insights"]["outcome"] == "success"
    assert body["call"]["started_at"] == T0.timestamp() and body["t0"] == T0.timestamp()
    assert (body["insights"]["audio"]["state"], body["insights"]["audio"]["url"]) == ("dropped", None)
    assert not (_folder(console) / "RM_zerocode1" / "recording.ogg").exists()
    assert c.get("/api/calls/RM_zerocode1/audio").status_code == 404
    c.close()


async def test_calls_list_filters_by_agent_outcome_and_failed_judge(console: Console, pg: Any) -> None:
    ids = await insert_calls(pg, 4, prefix="lst")
    folder = _folder(console)
    await store(pg, folder, ids[0], audio=fixture_recording(), started_at=T0, tags={"order_created": None},
                outcome=("success", None), verdicts={"task_completion": ("pass", ""), "politeness": ("pass", "")})
    await store(pg, folder, ids[1], audio=None, started_at=T0, tags={"transfer": None, "angry": None},
                outcome=("fail", "no tyres"), verdicts={"task_completion": ("fail", ""), "politeness": ("pass", "")})
    await store(pg, folder, ids[2], audio=None, started_at=T0, outcome=("success", None),
                verdicts={"politeness": ("fail", ""), "task_completion": ("maybe", "")})
    c = console.client(ADMIN)

    def listed(**params: str) -> list[str]:
        r = c.get("/api/calls", limit="50", **params)
        assert r.status_code == 200, r.text
        return sorted(row["call_id"] for row in r.json()["items"] if row["call_id"].startswith("lst-"))

    assert listed() == ids
    assert listed(insight_outcome="success") == [ids[0], ids[2]]
    assert listed(insight_outcome="fail") == [ids[1]]
    assert listed(failed_judge="task_completion") == [ids[1]]
    assert listed(failed_judge="politeness") == [ids[2]]
    assert listed(failed_judge="*") == [ids[1], ids[2]]
    assert listed(failed_judge="*", insight_outcome="success") == [ids[2]]
    assert listed(failed_judge="no_such_judge") == []
    rows = {r["call_id"]: r for r in c.get("/api/calls", limit="50").json()["items"]}
    assert (rows[ids[0]]["tags"], rows[ids[0]]["insight_outcome"], rows[ids[0]]["failed_judges"],
            rows[ids[0]]["has_audio"]) == (["order_created"], "success", [], True)
    assert (rows[ids[1]]["tags"], rows[ids[1]]["failed_judges"], rows[ids[1]]["has_audio"]) == (
        ["angry", "transfer"], ["task_completion"], False)
    assert (rows[ids[3]]["tags"], rows[ids[3]]["insight_outcome"], rows[ids[3]]["failed_judges"]) == ([], None, [])
    c.close()


# ----------------------------------------------------- calls only the receiver knows; SIP calls joined
async def test_calls_only_the_receiver_knows_are_in_the_list(console: Console, pg: Any) -> None:
    """An agent with no VoxPulse code (only LIVEKIT_OBSERVABILITY_URL): its calls are list rows with
    what the upload said, in the same newest-first keyset pages as the history's, and they answer the
    filters the receiver knows about; a filter on what only the history knows leaves them out."""
    ids = await insert_calls(pg, 3, prefix="hst")  # T0, T0+60 s, T0+120 s
    folder = _folder(console)
    await store(pg, folder, "RM_onlyA", audio=None, started_at=T0 + dt.timedelta(seconds=30), duration_ms=12_500,
                outcome=("fail", "no tyres"), verdicts={"task_completion": ("fail", "")}, tags={"angry": None})
    await store(pg, folder, "RM_onlyB", audio=fixture_recording(), started_at=T0 + dt.timedelta(seconds=150),
                outcome=("success", None), verdicts={"task_completion": ("pass", "")})
    c = console.client(ADMIN)
    newest_first = ["RM_onlyB", ids[2], ids[1], "RM_onlyA", ids[0]]
    seen: list[str] = []
    cursor: str | None = None
    while True:  # pages of two: the keyset runs across both sources
        body = c.get("/api/calls", limit="2", **({"cursor": cursor} if cursor else {})).json()
        seen += [r["call_id"] for r in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first
    rows = {r["call_id"]: r for r in c.get("/api/calls").json()["items"]}
    a, b = rows["RM_onlyA"], rows["RM_onlyB"]
    assert (a["source"], b["source"], rows[ids[0]]["source"]) == ("insights", "insights", "history")
    assert (a["started_at"], a["duration_s"], a["ended_at"]) == (
        (T0 + dt.timedelta(seconds=30)).timestamp(), 12.5, (T0 + dt.timedelta(seconds=42.5)).timestamp())
    assert (a["tags"], a["insight_outcome"], a["failed_judges"], a["has_audio"]) == (
        ["angry"], "fail", ["task_completion"], False)
    assert (b["insight_outcome"], b["failed_judges"], b["has_audio"]) == ("success", [], True)
    assert (a["status"], a["outcome"], a["caller"], a["scenario"], a["has_errors"]) == (None, None, None, None, False)

    def listed(**params: str) -> list[str]:
        r = c.get("/api/calls", limit="50", **params)
        assert r.status_code == 200, r.text
        return [row["call_id"] for row in r.json()["items"]]

    assert listed(insight_outcome="fail") == ["RM_onlyA"]
    assert listed(insight_outcome="success") == ["RM_onlyB"]
    assert listed(failed_judge="task_completion") == ["RM_onlyA"]
    assert listed(failed_judge="*") == ["RM_onlyA"]
    assert listed(q="RM_only") == ["RM_onlyB", "RM_onlyA"]
    lo, hi = (T0 + dt.timedelta(seconds=20)).isoformat(), (T0 + dt.timedelta(seconds=100)).isoformat()
    assert listed(**{"from": lo, "to": hi}) == [ids[1], "RM_onlyA"]
    for only_history in ({"outcome": "transferred"}, {"scenario": "order"}, {"errors": "1"},
                         {"min_ttfw_ms": "100"}, {"q": PHONE}, {"status": "completed"}):
        assert not [i for i in listed(**only_history) if i.startswith("RM_")], only_history
    # a logs upload before (or without) the recording: no start of its own, listed when received
    await _store_events_only(pg, "RM_onlyC")
    assert listed()[0] == "RM_onlyC"
    c.close()


async def _store_events_only(pg: Any, call_id: str) -> None:
    from voxpulse_console.insights import _store, _wire

    ev = _wire.CallEvents(room_id=call_id, job_id="AJ_test")
    ev.outcome = "success"
    await _store.save_events(pg, {call_id: ev})


async def insert_sip_call(pg: Any, call_id: str, room_sid: str | None, *, room: str | None = None) -> None:
    """A VoxPulse call whose call_id is a SIP call id, with its LiveKit room's id (and name) as the
    call history records them."""
    from telemetry.history import ensure_partitions

    await ensure_partitions(pg, [T0])
    await pg.execute(
        "INSERT INTO calls (call_id, started_at, ended_at, status, outcome, duration_seconds, phone, room, room_sid)"
        " VALUES ($1, $2, $3, 'completed', 'resolved_by_bot', 30, $4, $5, $6)",
        call_id, T0, T0 + dt.timedelta(seconds=30), PHONE, room, room_sid)


async def test_a_sip_calls_insights_join_by_its_room_id_never_its_name(console: Console, pg: Any) -> None:
    """A SIP call's call_id is the SIP call id; LiveKit uploads under the room's id. The call page and
    the list join the two by the room id the history recorded (calls.room_sid), the list shows the call
    once, and the receiver's key opens the VoxPulse call. A room *name* (it may carry the caller's
    number) joins nothing, even when it equals a receiver's key."""
    await insert_sip_call(pg, "SCL_sip1", "RM_sip1", room=f"call-{PHONE}")
    await store(pg, _folder(console), "RM_sip1", audio=fixture_recording(), started_at=T0 + dt.timedelta(seconds=1),
                outcome=("success", None), verdicts={"politeness": ("fail", "rude")}, tags={"order_created": None})
    await insert_sip_call(pg, "SCL_trap", None, room="RM_trap")  # a room NAME that looks like a room id
    await store(pg, _folder(console), "RM_trap", audio=None, started_at=T0 + dt.timedelta(seconds=2),
                outcome=("fail", None))
    c = console.client(ADMIN)
    rows = {r["call_id"]: r for r in c.get("/api/calls").json()["items"]}
    assert sorted(rows) == ["RM_trap", "SCL_sip1", "SCL_trap"]  # RM_sip1 is SCL_sip1, listed once
    sip = rows["SCL_sip1"]
    assert (sip["source"], sip["tags"], sip["insight_outcome"], sip["failed_judges"], sip["has_audio"]) == (
        "history", ["order_created"], "success", ["politeness"], True)
    assert (rows["SCL_trap"]["insight_outcome"], rows["RM_trap"]["source"]) == (None, "insights")

    def ids(**params: str) -> list[str]:
        return [r["call_id"] for r in c.get("/api/calls", **params).json()["items"]]

    assert ids(insight_outcome="success") == ["SCL_sip1"]
    assert ids(failed_judge="politeness") == ["SCL_sip1"]
    assert ids(insight_outcome="fail") == ["RM_trap"]
    # the call page of the VoxPulse call shows the receiver's insights and plays its recording
    body = c.get("/api/calls/SCL_sip1").json()
    assert body["sources"]["history"] is True and body["call"]["call_id"] == "SCL_sip1"
    ins = body["insights"]
    assert (ins["outcome"], [v["judge"] for v in ins["verdicts"]], ins["audio"]["state"]) == (
        "success", ["politeness"], "present")
    assert ins["audio"]["url"] == "/api/calls/RM_sip1/audio"
    status, data = _raw_get(console, c, ins["audio"]["url"])
    assert status == 200 and data == fixture_recording()
    # the receiver's key opens the same call, not a second, receiver-only one
    other = c.get("/api/calls/RM_sip1").json()
    assert (other["call"]["call_id"], other["sources"]["history"], other["insights"]["outcome"]) == (
        "SCL_sip1", True, "success")
    # the room name joins nothing
    assert c.get("/api/calls/SCL_trap").json()["insights"] is None
    trap = c.get("/api/calls/RM_trap").json()
    assert (trap["sources"]["history"], trap["insights"]["outcome"]) == (False, "fail")
    c.close()


async def test_live_feed_pushes_the_receivers_calls(console: Console, pg: Any) -> None:
    """An upload of a call only the receiver knows reaches the list live as its row; an upload for a
    VoxPulse SIP call arrives as that call's row (its insights), never as a second call."""
    from telemetry.history import ensure_partitions

    now = dt.datetime.now(dt.UTC)
    await ensure_partitions(pg, [now, T0])
    await insert_sip_call(pg, "SCL_live", "RM_live")
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
        await store(pg, _folder(console), "RM_zero", audio=None, started_at=now, outcome=("success", None))
        event, d = await next_event(t)
        assert (event, d["call_id"], d["source"], d["started_at"]) == ("call", "RM_zero", "insights", now.timestamp())
        if d["insight_outcome"] is None:  # the recording and the logs are two commits: the logs' event follows
            event, d = await next_event(t)
            assert (event, d["call_id"], d["source"]) == ("call", "RM_zero", "insights")
        assert d["insight_outcome"] == "success"
        t = time.monotonic()
        await _store_events_only(pg, "RM_live")
        event, d = await next_event(t)
        assert (event, d["call_id"], d["source"], d["insight_outcome"]) == ("call", "SCL_live", "history", "success")
        assert got.empty()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
