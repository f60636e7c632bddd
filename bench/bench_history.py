"""Call-history costs: what the agent pays per logged turn, and what the batch writer sustains.

1. Enqueue cost per turn: ``CallLogger.log_turn(...)`` (builds the frozen record and appends it
   to the queue; no I/O), median of rounds. Target <= 5 us.
2. Sustained rows/s into PostgreSQL, same run, same database, same rows (turns):
   the batch writer (``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING``, batches of
   ``--batch`` rows, the logger's default) against per-row INSERTs (one autocommitted statement per row, what a naive
   logger does). Target >= 10x.
3. The calls' side while PostgreSQL is unreachable (the logger retrying, and buffering in Redis when
   REDIS_URL is set): every enqueue of simulated calls timed, and the event loop's worst delay
   seen by a 5 ms ticker. Targets: enqueue p99 <= 200 us, loop stall < 250 ms (these were timed
   assertions of tests/history/test_faults.py; the tests keep the zero-loss accounting).

Needs the PostgreSQL of scripts/services.sh (DATABASE_URL, or .voxpulse/stack/services.env); works in
a throw-away database that it drops afterwards.

    python -m bench.bench_history [--rounds 5] [--ops 100000] [--rows 50000] [--baseline-rows 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from telemetry.history import CallLogger, database_url, migrate
from telemetry.history import redis_url as redis_url_setting
from telemetry.history.records import TurnRecord
from telemetry.history.rows import INSERT_TURN_ONE, prepare, turn_values

ROOT = Path(__file__).resolve().parents[1]


def _setting(name: str) -> str | None:
    """``name`` from the environment, else from scripts/services.sh's env file."""
    if os.environ.get(name):
        return os.environ[name]
    state = Path(os.environ.get("VOXPULSE_STATE_DIR") or ROOT / ".voxpulse")
    f = (state if state.is_absolute() else ROOT / state) / "stack" / "services.env"
    if f.is_file():
        for line in f.read_text().splitlines():
            if line.startswith(f"{name}="):
                return line.split("=", 1)[1]
    return None


def _dsn() -> str:
    dsn = database_url() or _setting("DATABASE_URL")
    if not dsn:
        raise SystemExit("no DATABASE_URL: run scripts/services.sh first")
    return dsn


def _with_db(dsn: str, db: str) -> str:
    u = urlsplit(dsn)
    return urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))


def bench_enqueue(rounds: int, ops: int) -> dict[str, float]:
    logger = CallLogger("postgresql://unused", max_memory_records=ops * 2 + 10)  # never started: no I/O
    logger.log_call_start("bench-call", phone="+380501112233", trace_id="ab" * 16, span_id="cd" * 8)
    text = "Хочу замовити шини 205/55 R16 на зиму, будь ласка"
    per_op: list[float] = []
    for _ in range(rounds):
        logger._pending.clear()  # a fresh queue each round (not part of the measured cost)
        log_turn = logger.log_turn
        t0 = time.perf_counter()
        for i in range(ops):
            log_turn("bench-call", i, "user", text, stt_ms=180.0, ttfw_ms=750.0)
        per_op.append((time.perf_counter() - t0) / ops)
    logger._pending.clear()
    return {"median_us": statistics.median(per_op) * 1e6, "min_us": min(per_op) * 1e6,
            "max_us": max(per_op) * 1e6}


async def bench_outage(calls: int, turns: int = 6) -> dict[str, Any]:
    """Simulated calls logging into a CallLogger whose PostgreSQL refuses connections (a bound port
    nobody listens on): each enqueue timed, and the worst event-loop delay meanwhile."""
    redis_url = redis_url_setting() or _setting("REDIS_URL")
    worst_lag = 0.0
    enqueue_s: list[float] = []

    async def ticker() -> None:
        nonlocal worst_lag
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            worst_lag = max(worst_lag, time.perf_counter() - t0 - 0.005)

    def timed(fn: Any, *args: Any, **kwargs: Any) -> None:
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        enqueue_s.append(time.perf_counter() - t0)

    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        logger = CallLogger(f"postgresql://nobody:x@127.0.0.1:{dead.getsockname()[1]}/none", redis_url=redis_url,
                            redis_key=f"voxpulse:bench:{secrets.token_hex(4)}:buffer", retry_max_s=0.1,
                            connect_timeout=0.5, flush_interval=0.02, max_memory_records=calls * (turns + 2) + 10)
        await logger.start()
        tick = asyncio.create_task(ticker())
        try:
            for c in range(calls):
                call_id = f"bench-outage-{c}"
                timed(logger.log_call_start, call_id, phone="+380501112233")
                for t in range(turns):
                    timed(logger.log_turn, call_id, t, "user", "Хочу замовити шини 205/55 R16", stt_ms=180.0)
                    await asyncio.sleep(0.002)
                timed(logger.log_call_end, call_id, outcome="resolved_by_bot", turns=turns)
            mode = logger.mode.value
        finally:
            tick.cancel()
            await logger.aclose(timeout=1.0)
            if redis_url:
                import redis.asyncio as aioredis

                r = aioredis.Redis.from_url(redis_url)
                try:
                    await r.delete(logger.redis_key)
                finally:
                    await r.aclose()
    q = statistics.quantiles(enqueue_s, n=100)
    return {"calls": calls, "enqueues": len(enqueue_s), "mode": mode, "enqueue_p50_us": q[49] * 1e6,
            "enqueue_p99_us": q[98] * 1e6, "enqueue_max_us": max(enqueue_s) * 1e6,
            "loop_stall_max_ms": worst_lag * 1e3}


def _turns(call_id: str, n: int) -> list[TurnRecord]:
    t = time.time()
    return [TurnRecord(call_id, i, "user" if i % 2 == 0 else "agent", f"репліка {i}: шини 205/55 R16",
                       t + i * 0.001, stt_ms=180.0, llm_ms=420.0, tts_ms=90.0, ttfw_ms=700.0)
            for i in range(n)]


async def bench_writer(dsn: str, rows: int, baseline_rows: int, batch: int) -> dict[str, Any]:
    # per-row INSERTs: one statement (and one implicit transaction) per row, one connection
    conn = await asyncpg.connect(dsn)
    try:
        base = [turn_values(prepare(r)) for r in _turns("bench-per-row", baseline_rows)]
        stmt = await conn.prepare(INSERT_TURN_ONE)
        t0 = time.perf_counter()
        for values in base:
            await stmt.fetch(*values)
        per_row_s = time.perf_counter() - t0
        got = await conn.fetchval("SELECT count(*) FROM call_turns WHERE call_id = 'bench-per-row'")
        assert got == baseline_rows, got
    finally:
        await conn.close()
    # the batch writer: enqueue everything, measure until it is all in PostgreSQL
    logger = CallLogger(dsn, batch_size=batch, flush_interval=0.05, max_memory_records=rows + 10,
                        auto_migrate=False)
    await logger.start()
    assert await logger.flush(30)  # connected, partitions known: measure steady state
    recs = _turns("bench-batch", rows)
    t0 = time.perf_counter()
    for r in recs:
        logger.enqueue(r)
    assert await logger.flush(300)
    batch_s = time.perf_counter() - t0
    await logger.aclose()
    conn = await asyncpg.connect(dsn)
    try:
        got = await conn.fetchval("SELECT count(*) FROM call_turns WHERE call_id = 'bench-batch'")
        assert got == rows, got
    finally:
        await conn.close()
    conn = await asyncpg.connect(dsn)
    try:
        settings = {k: await conn.fetchval(f"SHOW {k}") for k in ("fsync", "synchronous_commit", "server_version")}
    finally:
        await conn.close()
    per_row_rps = baseline_rows / per_row_s
    batch_rps = rows / batch_s
    return {"per_row_rows_per_s": per_row_rps, "batch_rows_per_s": batch_rps, "speedup": batch_rps / per_row_rps,
            "per_row_rows": baseline_rows, "batch_rows": rows, "batch_size": batch, "postgres": settings}


async def run_writer(rows: int, baseline_rows: int, batch: int) -> dict[str, Any]:
    from tests.support import drop_database

    admin_dsn = _dsn()
    name = f"voxpulse_bench_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = _with_db(admin_dsn, name)
        await migrate(dsn)
        return await bench_writer(dsn, rows, baseline_rows, batch)
    finally:
        await drop_database(admin, name)
        await admin.close()


def to_markdown(result: dict[str, Any]) -> str:
    """The report's section: a table and the verdict against the targets."""
    enq, w = result["enqueue_per_turn_us"], result["writer"]
    pg = w.get("postgres", {})
    lines = [
        "| measure | median | range |", "|---|---|---|",
        f"| enqueue one turn (CallLogger.log_turn), µs | {enq['median_us']:.2f} | "
        f"{enq['min_us']:.2f}–{enq['max_us']:.2f} |",
        f"| per-row INSERTs, rows/s ({w['per_row_rows']} rows) | {w['per_row_rows_per_s']:.0f} | |",
        f"| batch writer, rows/s ({w['batch_rows']} rows, batches of {w['batch_size']}) | "
        f"{w['batch_rows_per_s']:.0f} | |",
        f"| batch / per-row | {w['speedup']:.1f}× | |",
        "",
        f"PostgreSQL {pg.get('server_version', '?')}, fsync {pg.get('fsync', '?')}, "
        f"synchronous_commit {pg.get('synchronous_commit', '?')}.",
    ]
    out = result.get("outage")
    if out:
        lines += ["", f"With PostgreSQL unreachable ({out['calls']} simulated calls, {out['enqueues']} enqueues, "
                  f"logger in {out['mode']} mode): enqueue p50 {out['enqueue_p50_us']:.1f} µs, p99 "
                  f"{out['enqueue_p99_us']:.1f} µs, max {out['enqueue_max_us']:.0f} µs; worst event-loop stall "
                  f"{out['loop_stall_max_ms']:.1f} ms."]
    t = result["targets"]
    lines += ["", f"**Verdict:** {'met' if result['pass'] else 'MISSED'}: enqueue {enq['median_us']:.1f} µs per "
              f"turn (target ≤ {t['enqueue_per_turn_us_max']:g} µs); batch writer {w['speedup']:.1f}× per-row "
              f"INSERTs (target ≥ {t['speedup_min']:g}×)"]
    if out:
        lines[-1] += (f"; during a PostgreSQL outage enqueue p99 {out['enqueue_p99_us']:.0f} µs (target ≤ "
                      f"{t['outage_enqueue_p99_us_max']:g} µs), loop stall {out['loop_stall_max_ms']:.0f} ms "
                      f"(target < {t['outage_loop_stall_ms_max']:g} ms)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ops", type=int, default=100_000)
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--baseline-rows", type=int, default=5_000)
    ap.add_argument("--batch", type=int, default=CallLogger.DEFAULT_BATCH_SIZE)
    ap.add_argument("--outage-calls", type=int, default=30, help="simulated calls while PostgreSQL is unreachable")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "history.json")
    args = ap.parse_args()

    enq = bench_enqueue(args.rounds, args.ops)
    wr = asyncio.run(run_writer(args.rows, args.baseline_rows, args.batch))
    out = asyncio.run(bench_outage(args.outage_calls))
    targets = {"enqueue_per_turn_us_max": 5.0, "speedup_min": 10.0, "outage_enqueue_p99_us_max": 200.0,
               "outage_loop_stall_ms_max": 250.0}
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "enqueue_per_turn_us": enq,
        "writer": wr,
        "outage": out,
        "targets": targets,
        "pass": (enq["median_us"] <= targets["enqueue_per_turn_us_max"] and wr["speedup"] >= targets["speedup_min"]
                 and out["enqueue_p99_us"] <= targets["outage_enqueue_p99_us_max"]
                 and out["loop_stall_max_ms"] < targets["outage_loop_stall_ms_max"]),
    }
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| enqueue cost per turn (`log_turn`, median of {args.rounds} x {args.ops}) | "
          f"{enq['median_us']:.2f} µs (min {enq['min_us']:.2f}, max {enq['max_us']:.2f}) | ≤ 5 µs |")
    print(f"| batch writer, sustained ({wr['batch_rows']} turns, batches of {wr['batch_size']}) | "
          f"{wr['batch_rows_per_s']:,.0f} rows/s | |")
    print(f"| per-row INSERT, same run ({wr['per_row_rows']} turns) | {wr['per_row_rows_per_s']:,.0f} rows/s | |")
    print(f"| batch / per-row | {wr['speedup']:.1f}x | ≥ 10x |")
    print(f"| enqueue p99 with PostgreSQL unreachable ({out['enqueues']} enqueues, {out['mode']} mode) | "
          f"{out['enqueue_p99_us']:.1f} µs | ≤ 200 µs |")
    print(f"| worst event-loop stall meanwhile | {out['loop_stall_max_ms']:.1f} ms | < 250 ms |")
    pg = wr["postgres"]
    print(f"\nPostgreSQL {pg['server_version']}, fsync={pg['fsync']}, synchronous_commit={pg['synchronous_commit']}"
          " (per-row INSERTs pay one commit each; with fsync=off that commit is nearly free)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")


if __name__ == "__main__":
    main()

