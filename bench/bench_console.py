"""The web console under load: call view, calls list over 100 000 calls, 50 live-update clients.

    python -m bench.bench_console [--json out.json] [--calls 100000] [--requests 200] [--clients 50]

Everything real: a ``voxpulse ui`` process (its own throw-away PostgreSQL database), timed over HTTP
from this process.

* **call view**: one simulated 30-turn call (real LiveKit AgentSession, spans through the collector
  to the trace store, history to PostgreSQL), ``GET /api/calls/<id>`` repeated: the console reads
  the history and the trace and lays out the lanes. Uses the running stack, else starts one (``voxpulse
  stack up`` in a temporary state folder).
* **calls list**: 100 000 calls spread over 60 days (with 400 000 turn rows and 100 000 tool calls,
  loaded by COPY), ``GET /api/calls`` with each kind of filter, and a page 1 000 pages deep.
* **live**: 50 Server-Sent-Event clients connected; a call row inserted; the time until every client
  has the event, over 20 rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from telemetry._env import OTLP_HTTP_ENDPOINT
from telemetry.history import database_url

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"call_view_p95_ms": 150.0, "calls_list_p95_ms": 100.0, "live_all_clients_s": 2.0}
PHONE = "+380501234567"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _summary(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": round(_pct(ms, 50), 2), "p95_ms": round(_pct(ms, 95), 2),
            "max_ms": round(max(ms), 2)}


def _dsn() -> str:
    dsn = database_url()  # the library's lookup (VOXPULSE_DATABASE_URL, DATABASE_URL)
    if not dsn:
        env = ROOT / ".voxpulse" / "stack" / "services.env"
        if env.is_file():
            for line in env.read_text().splitlines():
                if line.startswith("DATABASE_URL="):
                    dsn = line.split("=", 1)[1]
    if not dsn:
        sys.exit("no DATABASE_URL: start scripts/services.sh")
    return dsn


@contextmanager
def _database(base: str) -> Iterator[str]:
    from telemetry.history import migrate

    name = f"voxpulse_bench_console_{os.getpid()}"
    u = urlsplit(base)
    dsn = urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))

    from tests.support import drop_database

    async def create() -> None:
        conn = await asyncpg.connect(base)
        await drop_database(conn, name)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        conn = await asyncpg.connect(dsn)
        await migrate(conn)
        await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(base)
        await drop_database(conn, name)
        await conn.close()

    asyncio.run(create())
    try:
        yield dsn
    finally:
        asyncio.run(drop())


# ------------------------------------------------------------------------------------------- data
async def _load(dsn: str, n: int) -> dict[str, Any]:
    """n calls over the last 60 days, 2 turns each (user + agent rows), one tool call each."""
    from telemetry.history import ensure_partitions

    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    first = now - dt.timedelta(days=60)
    conn = await asyncpg.connect(dsn)
    t0 = time.perf_counter()
    try:
        await ensure_partitions(conn, [first + dt.timedelta(days=d) for d in range(0, 62, 10)] + [now])
        step = dt.timedelta(days=60) / n
        calls: list[tuple[Any, ...]] = []
        turns: list[tuple[Any, ...]] = []
        tools: list[tuple[Any, ...]] = []
        outcomes = ["resolved_by_bot"] * 6 + ["transferred"] * 2 + ["abandoned", "failed"]
        for i in range(n):
            start = first + step * i
            cid = f"bench-{i:06d}"
            outcome = rng.choice(outcomes)
            phone = PHONE if i % 1000 == 0 else f"+3806{rng.randrange(10**8):08d}"
            calls.append((cid, start, start + dt.timedelta(seconds=40), "transferred" if outcome == "transferred"
                          else "failed" if outcome == "failed" else "completed", outcome,
                          "customer_request" if outcome == "transferred" else None,
                          rng.choice(["order", "fitting", "order_status", "operator"]), 40.0,
                          round(rng.uniform(0.001, 0.01), 6), 2, phone, uuid.uuid4().hex))
            for k in range(2):
                ts = start + dt.timedelta(seconds=5 + 15 * k)
                ttfw = rng.lognormvariate(7.1, 0.35)  # ~1.2 s median, a tail past 3 s
                turns.append((cid, k, "user", ts, "Добрий день, мені потрібні шини 205/55 R16", 250.0, None, None,
                              None, False))
                turns.append((cid, k, "agent", ts + dt.timedelta(seconds=1), "Є Nokian за 4340 гривень", None, 400.0,
                              200.0, round(ttfw, 1), False))
            tools.append((cid, start + dt.timedelta(seconds=6), i, 0, "find_tyres", f"call_{i}",
                          '{"size": "205/55 R16"}', '{"found": 2}', rng.random() > 0.03, None, 120.0))
        await conn.copy_records_to_table("calls", records=calls, columns=(
            "call_id", "started_at", "ended_at", "status", "outcome", "transfer_reason", "scenario",
            "duration_seconds", "cost_usd", "turns", "phone", "trace_id"))
        await conn.copy_records_to_table("call_turns", records=turns, columns=(
            "call_id", "turn_index", "speaker", "ts", "text", "stt_ms", "llm_ms", "tts_ms", "ttfw_ms", "interrupted"))
        await conn.execute("CREATE TEMP TABLE t (call_id text, ts timestamptz, seq bigint, turn_index int, name text,"
                           " tool_call_id text, args text, result text, success bool, error text, duration_ms float8)")
        await conn.copy_records_to_table("t", records=tools)
        await conn.execute("INSERT INTO call_tool_calls SELECT call_id, ts, seq, turn_index, name, tool_call_id, "
                           "args::jsonb, result::jsonb, success, error, duration_ms FROM t")
        await conn.execute("ANALYZE")
        deep = await conn.fetchrow("SELECT started_at, call_id FROM calls ORDER BY started_at DESC, call_id DESC "
                                   "OFFSET $1 LIMIT 1", min(50_000, n // 2))
    finally:
        await conn.close()
    return {"calls": n, "turn_rows": len(turns), "tool_rows": len(tools), "load_s": round(time.perf_counter() - t0, 1),
            "deep_cursor": (deep["started_at"], deep["call_id"]), "first": first, "now": now}


def _long_call(dsn: str) -> dict[str, Any] | None:
    """One simulated 30-turn call through the real pipeline (collector -> trace store, history ->
    PostgreSQL). None when no collector answers."""
    try:
        httpx.get("http://127.0.0.1:13133/", timeout=2).raise_for_status()
    except httpx.HTTPError:
        return None
    code = r"""
import asyncio, json, sys
from agent.sim.scenarios import Scenario
from agent.sim.simulator import SimOptions, simulate
from telemetry.semconv import CallOutcome
import telemetry
from telemetry.history import CallLogger

async def main():
    h = telemetry.configure(service_name="vp-bench-console", exporter="otlp", metrics_exporter="none",
                            setup_logs=False)
    log = CallLogger.from_env(agent_version="bench")
    await log.start()
    sizes = ["205/55 R16", "195/65 R15", "225/45 R17", "215/60 R16", "185/65 R14"]
    said = []
    for i in range(29):
        said.append(f"Які є зимові шини {sizes[i % 5]}?" if i % 2 == 0 else "А ще які варіанти є?")
    said.append("Дякую, до побачення.")
    sc = Scenario("long_call", tuple(said), CallOutcome.RESOLVED_BY_BOT)
    s = await simulate(calls=1, concurrency=1, seed=11, scenarios=[sc], options=SimOptions(playout_scale=0.05),
                       call_log=log, run_id=sys.argv[1])
    await log.wait_drained(timeout=15)
    await log.aclose(timeout=5)
    await h.flush(timeout=10)
    await h.shutdown(timeout=5)
    c = s.calls[0]
    print(json.dumps({"call_id": c.call_id, "trace_id": c.trace_id, "turns": len(c.turns)}))

asyncio.run(main())
"""
    env = {**os.environ, "DATABASE_URL": dsn, "OTEL_EXPORTER_OTLP_ENDPOINT": OTLP_HTTP_ENDPOINT,
           "PYTHONPATH": str(ROOT)}
    env.pop("VOXPULSE_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-c", code, uuid.uuid4().hex[:6]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the 30-turn simulation failed:\n{proc.stderr[-3000:]}")
    info: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return info


# ------------------------------------------------------------------------------------------ console
class Console:
    def __init__(self, dsn: str, *, trace_cache: int = 0) -> None:
        from voxpulse_console.ui.auth import hash_password

        self.password = secrets.token_urlsafe(16)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DATABASE_URL": dsn, "VOXPULSE_UI_LISTEN": f"127.0.0.1:{self.port}",
               "VOXPULSE_UI_USERS": f"bench:{hash_password(self.password)}:pii", "LOG_LEVEL": "WARNING",
               "VOXPULSE_UI_TRACE_CACHE": str(trace_cache)}
        env.pop("VOXPULSE_DATABASE_URL", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "voxpulse_console", "ui"], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the console did not start")

    def cookies(self) -> dict[str, str]:
        with httpx.Client(base_url=self.url, timeout=10) as c:
            csrf = c.get("/api/session").json()["csrf"]
            r = c.post("/api/login", json={"user": "bench", "password": self.password}, headers={"X-CSRF-Token": csrf})
            r.raise_for_status()
            return dict(c.cookies)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _time_gets(url: str, cookies: dict[str, str], path: str, params: dict[str, str], n: int) -> dict[str, Any]:
    ms: list[float] = []
    with httpx.Client(base_url=url, cookies=cookies, timeout=30) as c:
        t = time.perf_counter()
        c.get(path, params=params).raise_for_status()
        first_ms = (time.perf_counter() - t) * 1000  # cold: nothing cached yet
        for _ in range(4):  # warm-up: connections, caches, the trace store's first answer
            c.get(path, params=params).raise_for_status()
        for _ in range(n):
            t = time.perf_counter()
            r = c.get(path, params=params)
            ms.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
        rows = len(r.json().get("items", [])) if path == "/api/calls" else None
    return _summary(ms) | {"first_ms": round(first_ms, 2)} | ({"rows": rows} if rows is not None else {})


async def _live(url: str, cookies: dict[str, str], dsn: str, clients: int, rounds: int) -> dict[str, Any]:
    from telemetry.history import ensure_partitions

    seen: dict[str, list[float]] = {}
    hello = asyncio.Semaphore(0)
    everyone: dict[str, asyncio.Event] = {}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, cookies=cookies, timeout=None) as http, \
                http.stream("GET", "/api/events") as r:
            event = ""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    if event == "hello":
                        hello.release()
                    elif event == "call":
                        cid = json.loads(line[6:])["call_id"]
                        got = seen.setdefault(cid, [])
                        got.append(time.perf_counter())
                        if len(got) == clients and cid in everyone:
                            everyone[cid].set()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    for _ in range(clients):
        await asyncio.wait_for(hello.acquire(), 30)
    conn = await asyncpg.connect(dsn)
    await ensure_partitions(conn, [dt.datetime.now(dt.UTC)])
    worst: list[float] = []
    try:
        for i in range(rounds):
            cid = f"live-bench-{i}-{uuid.uuid4().hex[:6]}"
            everyone[cid] = asyncio.Event()
            t0 = time.perf_counter()
            await conn.execute("INSERT INTO calls (call_id, started_at, phone) VALUES ($1, now(), $2)", cid, PHONE)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(everyone[cid].wait(), 10)
            got = seen.get(cid, [])
            if len(got) < clients:
                raise RuntimeError(f"round {i}: only {len(got)} of {clients} clients got the call in 10 s")
            worst.append(max(got) - t0)
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"clients": clients, "rounds": rounds, "p50_s": round(_pct(worst, 50), 3),
            "p95_s": round(_pct(worst, 95), 3), "max_s": round(max(worst), 3)}


def _wait_trace(trace_id: str) -> int:
    from voxpulse_console import tracestore

    async def get() -> int:
        async with tracestore.from_env() as store:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                t = await store.trace(trace_id)
                if t is not None and any(s.name == "call" for s in t.spans):
                    return len(t.spans)
                await asyncio.sleep(1)
        raise RuntimeError(f"trace {trace_id} not in the trace store after 60 s")

    return asyncio.run(get())


@contextmanager
def _stack() -> Iterator[None]:
    """The running stack, else one of its own in a temporary state folder for this run."""
    import tempfile

    from voxpulse_console import stack

    if all(stack.ready(c.ready_url) for c in stack.COMPONENTS.values()):
        yield
        return
    owned = Path(tempfile.mkdtemp(prefix="vp-bench-console-"))
    print("[console] starting a stack ...", file=sys.stderr)
    stack.up(state_dir=owned, wait_s=120)
    try:
        yield
    finally:
        stack.down(state_dir=owned)


def run(calls: int, requests: int, clients: int) -> dict[str, Any]:
    from voxpulse_console.ui.filters import encode_cursor

    out: dict[str, Any] = {"targets": TARGETS}
    with _stack(), _database(_dsn()) as dsn:
        print(f"[console] loading {calls} calls ...", file=sys.stderr)
        data = asyncio.run(_load(dsn, calls))
        out["data"] = {k: v for k, v in data.items() if k in ("calls", "turn_rows", "tool_rows", "load_s")}
        print("[console] simulating one 30-turn call ...", file=sys.stderr)
        long_call = _long_call(dsn)
        console = Console(dsn)
        try:
            cookies = console.cookies()
            day = (data["now"] - dt.timedelta(days=30)).isoformat()
            queries = {
                "newest page": {},
                "page 1 000 (cursor)": {"cursor": encode_cursor(data["deep_cursor"])},
                "outcome=transferred": {"outcome": "transferred"},
                "scenario=fitting": {"scenario": "fitting"},
                "min TTFW 3 s": {"min_ttfw_ms": "3000"},
                "errors only": {"errors": "1"},
                "one day": {"from": day, "to": (data["now"] - dt.timedelta(days=29)).isoformat()},
                "caller's number": {"q": "050 123 45 67"},
                "call id prefix": {"q": "bench-0500"},
            }
            out["calls_list"] = {}
            for name, params in queries.items():
                print(f"[console] calls list: {name}", file=sys.stderr)
                out["calls_list"][name] = _time_gets(console.url, cookies, "/api/calls", params, requests)
            if long_call is not None:
                long_call["spans"] = _wait_trace(long_call["trace_id"])
                path = f"/api/calls/{long_call['call_id']}"
                # every request reads the history and the trace store and lays the call out
                out["call_view"] = long_call | _time_gets(console.url, cookies, path, {}, requests)
                cached = Console(dsn, trace_cache=32)
                try:  # the console's default: a finished call's complete trace is kept in memory
                    out["call_view_cached"] = _time_gets(cached.url, cached.cookies(), path, {}, requests)
                finally:
                    cached.close()
            else:
                out["call_view"] = {"skipped": "no collector on 127.0.0.1:13133 (voxpulse stack up)"}
            print(f"[console] live: {clients} clients", file=sys.stderr)
            out["live"] = asyncio.run(_live(console.url, cookies, dsn, clients, 20))
        finally:
            console.close()
    worst_list = max(v["p95_ms"] for v in out["calls_list"].values())
    checks = [worst_list <= TARGETS["calls_list_p95_ms"], out["live"]["max_s"] <= TARGETS["live_all_clients_s"]]
    if "p95_ms" in out["call_view"]:
        checks.append(out["call_view"]["p95_ms"] <= TARGETS["call_view_p95_ms"])
    out["verdict"] = ("all targets met" if all(checks) else "a target is missed") + (
        "" if "p95_ms" in out["call_view"] else " (call view not measured: no stack)")
    return out


def to_markdown(r: dict[str, Any]) -> str:
    lines = []
    cv = r.get("call_view", {})
    d = r.get("data", {})
    lines += [f"Data: {d.get('calls', '?'):,} calls, {d.get('turn_rows', '?'):,} turn rows, "
              f"{d.get('tool_rows', '?'):,} tool calls (COPY in {d.get('load_s', '?')} s).", ""]
    lines += ["| what | requests | p50 | p95 | max | target |", "|---|---|---|---|---|---|"]
    if "p95_ms" in cv:
        lines.append(f"| call view, {cv['turns']}-turn call ({cv['spans']} spans): `GET /api/calls/<id>` | "
                     f"{cv['n']} | {cv['p50_ms']} ms | {cv['p95_ms']} ms | {cv['max_ms']} ms | "
                     f"p95 ≤ {TARGETS['call_view_p95_ms']:.0f} ms |")
        cc = r.get("call_view_cached")
        if cc:
            lines.append(f"| the same, trace kept in memory (repeated views; first {cc['first_ms']} ms) | "
                         f"{cc['n']} | {cc['p50_ms']} ms | {cc['p95_ms']} ms | {cc['max_ms']} ms | |")
    else:
        lines.append(f"| call view | – | – | – | – | {cv.get('skipped', '')} |")
    for name, v in r.get("calls_list", {}).items():
        lines.append(f"| calls list: {name} ({v['rows']} rows) | {v['n']} | {v['p50_ms']} ms | {v['p95_ms']} ms | "
                     f"{v['max_ms']} ms | p95 ≤ {TARGETS['calls_list_p95_ms']:.0f} ms |")
    lv = r.get("live", {})
    note = ("\n\nThe console process and the load generator share the 2-core VM with the stack and PostgreSQL. "
            "Uncached, each call-view request reads the call history (three indexed queries), fetches the trace "
            "from the trace store and lays it out; the console keeps the complete traces of finished calls in a "
            "small LRU (`VOXPULSE_UI_TRACE_CACHE`, 32), so a second look at a call skips the trace store. The live "
            "feed is one LISTEN connection: a write reaches every client in one read of the changed row plus one "
            "Server-Sent Event write per client.")
    if lv:
        lines.append(f"| live: a new call in all {lv['clients']} SSE clients | {lv['rounds']} rounds | "
                     f"{lv['p50_s']} s | {lv['p95_s']} s | {lv['max_s']} s | "
                     f"every client ≤ {TARGETS['live_all_clients_s']:.0f} s |")
    return "\n".join(lines) + note


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_console")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=50)
    args = ap.parse_args()
    result = run(args.calls, args.requests, args.clients)
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    print(to_markdown(result))
    print(result["verdict"])


if __name__ == "__main__":
    main()
