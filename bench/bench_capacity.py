"""Capacity: concurrent simulated calls per agent process on this machine with zero dropped spans,
and telemetry's CPU share.

Each configuration runs in a fresh process for ``--seconds`` (after a warm-up of one turn period):
``calls`` concurrent calls, each a loop of realistic turns -- one turn every 4 s per call (a
``turn`` span with STT, a streamed LLM answer of 12 chunks, TTS, and a tool call every other
turn: 4.5 spans per turn, plus one ``call`` root span every 6 turns), time-to-first-word recorded
per turn, the call metrics per call. Export goes through the library's real path
(``telemetry.configure``: QueueingSpanProcessor + SafeExporter + OTLP/HTTP) to a local sink
(bench/sink.py, answering at once) or to a real collector with ``--collector URL``.

The same load runs with telemetry off (decorators and ``telemetry.call`` present, ``configure()``
never called: what an agent pays with the library installed but unconfigured), and the CPU share is
``(process CPU with telemetry - process CPU without) / wall time``, i.e. the share of one core that
telemetry adds; the table also shows it as a share of the process's own CPU. The synthetic agent
does no audio work, so the share of the process is pessimistic: a real agent's own CPU would
dilute it.

Zero drops means: ``handle.dropped_spans == 0`` and every span produced was accepted by the sink
after a final flush (produced == delivered).

    python -m bench.bench_capacity [--levels 100,200,400,800] [--seconds 20] [--json bench/results/capacity.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import sink

TARGET_CALLS = 200
TARGET_CPU_PCT = 5.0
TURN_PERIOD_S = 4.0
TURNS_PER_CALL = 6


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _child(calls: int, seconds: float, endpoint: str | None, mode: str) -> dict[str, Any]:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    import telemetry

    handle = None
    delivered = [0]
    if mode == "telemetry":
        handle = telemetry.configure(service_name="vp-capacity", exporter="otlp", endpoint=endpoint,
                                     protocol="http/protobuf", metrics_exporter="otlp", setup_logs=False)
        safe = handle._exporter  # bench-only: count what the sink accepted
        assert safe is not None
        inner = safe.inner

        class Counting(SpanExporter):
            def export(self, spans):  # type: ignore[no-untyped-def]
                result = inner.export(spans)
                if result is SpanExportResult.SUCCESS:
                    delivered[0] += len(spans)
                return result

            def shutdown(self) -> None:
                inner.shutdown()

            def force_flush(self, timeout_millis: int = 30000) -> bool:
                return inner.force_flush(timeout_millis)

        safe.inner = Counting()
    elif mode == "disabled":
        handle = telemetry.configure(disabled=True, setup_logs=False)

    @telemetry.trace_stt(provider="deepgram", model="nova-3")
    async def stt(audio: bytes) -> str:
        await asyncio.sleep(0.25)
        return "мені потрібні зимові шини 205/55 R16"

    @telemetry.trace_llm(provider="openai", model="gpt-4o-mini")
    async def llm(prompt: str):  # type: ignore[no-untyped-def]
        for i in range(12):
            await asyncio.sleep(0.04)
            yield f"tok{i} "

    @telemetry.trace_tool
    async def find_tyres(size: str) -> list[dict[str, str]]:
        await asyncio.sleep(0.15)
        return [{"size": size, "brand": "Nokian", "price": "3200"}]

    @telemetry.trace_tts(provider="cartesia", model="sonic", voice="uk-female")
    async def tts(text: str) -> bytes:
        await asyncio.sleep(0.2)
        return b"\0" * 320

    @telemetry.traced(name="turn")
    async def turn(index: int) -> None:
        text = await stt(b"pcm")
        if index % 2 == 0:
            await find_tyres("205/55 R16")
        answer = "".join([tok async for tok in llm(text)])
        await tts(answer)
        telemetry.metrics.record_time_to_first_word(0.7)

    completed = [0]
    turns_done = [0]
    late_turns = [0]

    async def caller(i: int) -> None:
        await asyncio.sleep(TURN_PERIOD_S * i / calls)
        n = 0
        while True:
            async with telemetry.call(f"cap-{i}-{n}", caller="+380501234567") as call:
                t0 = time.monotonic()
                for t in range(TURNS_PER_CALL):
                    call.next_turn()
                    await turn(t)
                    turns_done[0] += 1
                    wait = t0 + (t + 1) * TURN_PERIOD_S - time.monotonic()
                    if wait < 0:
                        late_turns[0] += 1
                    await asyncio.sleep(max(0.0, wait))
                call.set_scenario("order")
            completed[0] += 1
            n += 1

    lags: list[float] = []

    async def ticker() -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - t0 - 0.01) * 1000)

    gc.collect()
    gc.freeze()
    tasks = [asyncio.create_task(caller(i)) for i in range(calls)]
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(TURN_PERIOD_S)  # warm-up: every call started
    lags.clear()
    cpu0, wall0, turns0, done0 = time.process_time(), time.monotonic(), turns_done[0], completed[0]
    late0 = late_turns[0]
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    turns, done, late = turns_done[0] - turns0, completed[0] - done0, late_turns[0] - late0
    rss = _rss_mb()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tick.cancel()
    produced = dropped = flushed = None
    if mode == "telemetry" and handle is not None:
        flushed = await handle.flush(timeout=15)
        dropped = handle.dropped_spans
        processor = handle._span_processor
        # produced = delivered + dropped + still queued (nothing else leaves the processor)
        produced = delivered[0] + dropped + (len(processor._queue) if processor is not None else 0)
        await handle.shutdown(timeout=5)
    lags.sort()
    return {
        "calls": calls, "mode": mode, "seconds": round(wall, 2), "cpu_s": round(cpu, 3),
        "cpu_pct_of_core": round(100 * cpu / wall, 2), "turns_per_s": round(turns / wall, 2),
        "late_turns": late, "calls_completed": done, "spans_per_s": round(turns * 4.5 / wall + done / wall, 1),
        "lag_p50_ms": round(lags[len(lags) // 2], 2) if lags else None,
        "lag_p99_ms": round(lags[int(len(lags) * 0.99) - 1], 2) if lags else None,
        "lag_max_ms": round(lags[-1], 2) if lags else None, "rss_mb": round(rss, 1),
        "dropped_spans": dropped, "delivered": delivered[0] if mode == "telemetry" else None,
        "produced": produced, "flushed": flushed,
    }


def _run_child(calls: int, seconds: float, endpoint: str | None, mode: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.bench_capacity", "--child", "--calls", str(calls), "--seconds", str(seconds),
           "--mode", mode]
    if endpoint:
        cmd += ["--endpoint", endpoint]
    env = {k: v for k, v in os.environ.items() if k != "OTEL_SDK_DISABLED"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds * 3 + 120, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(levels: list[int], seconds: float, collector: str | None) -> dict[str, Any]:
    sink_proc = None
    endpoint = collector
    if collector is None:
        sink_proc, endpoint = sink.start()
    rows: list[dict[str, Any]] = []
    try:
        for calls in levels:
            modes = ["off", "telemetry"] + (["disabled"] if calls == TARGET_CALLS else [])
            for mode in modes:
                rows.append(_run_child(calls, seconds, endpoint, mode))
                print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        if sink_proc is not None:
            sink_proc.terminate()
            sink_proc.wait()
    by = {(r["calls"], r["mode"]): r for r in rows}
    summary = []
    for calls in levels:
        on, off = by[(calls, "telemetry")], by[(calls, "off")]
        added = on["cpu_s"] - off["cpu_s"]
        summary.append({
            "calls": calls, "spans_per_s": on["spans_per_s"],
            "telemetry_cpu_pct_of_core": round(100 * added / on["seconds"], 2),
            "telemetry_pct_of_process_cpu": round(100 * added / on["cpu_s"], 1) if on["cpu_s"] else None,
            "zero_drops": on["dropped_spans"] == 0 and on["produced"] == on["delivered"] and bool(on["flushed"]),
            "dropped_spans": on["dropped_spans"], "late_turns": on["late_turns"],
            "lag_p99_ms_on": on["lag_p99_ms"], "lag_p99_ms_off": off["lag_p99_ms"],
        })
    ok_levels = [s["calls"] for s in summary if s["zero_drops"] and s["late_turns"] == 0]
    target = next((s for s in summary if s["calls"] == TARGET_CALLS), None)
    if target is None:
        verdict = f"not measured at {TARGET_CALLS} calls (levels {levels})"
    else:
        met_drops = target["zero_drops"]
        met_cpu = target["telemetry_cpu_pct_of_core"] < TARGET_CPU_PCT
        verdict = (
            f"{'met' if met_drops and met_cpu else 'MISSED'}: {TARGET_CALLS} concurrent calls "
            f"({target['spans_per_s']} spans/s) with {target['dropped_spans']} dropped spans; telemetry adds "
            f"{target['telemetry_cpu_pct_of_core']} % of one core ({target['telemetry_pct_of_process_cpu']} % of "
            f"this synthetic agent's own CPU, which does no audio work); highest level tried with zero drops "
            f"and no late turns: {max(ok_levels) if ok_levels else 'none'} calls"
        )
        if not met_drops:
            verdict += " -- spans were dropped at the target"
        if not met_cpu:
            verdict += f" -- telemetry CPU above {TARGET_CPU_PCT} % of a core"
    return {"seconds_per_run": seconds, "turn_period_s": TURN_PERIOD_S, "turns_per_call": TURNS_PER_CALL,
            "exporter": "real collector " + collector if collector else "local OTLP/HTTP sink (bench/sink.py)",
            "rows": rows, "summary": summary, "verdict": verdict}


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"One turn every {result['turn_period_s']} s per call (turn, STT, LLM stream, TTS, a tool every other "
        f"turn), {result['turns_per_call']} turns per call, {result['seconds_per_run']} s per run after warm-up, "
        f"export to {result['exporter']}. Telemetry CPU = process CPU with telemetry minus the same load with "
        "telemetry not configured, per wall second.",
        "",
        "| concurrent calls | spans/s | telemetry CPU, % of one core | % of the process's CPU | dropped spans | "
        "zero drops | late turns | loop lag p99 ms (on / off) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in result["summary"]:
        lines.append(
            f"| {s['calls']} | {s['spans_per_s']} | {s['telemetry_cpu_pct_of_core']} | "
            f"{s['telemetry_pct_of_process_cpu']} | "
            f"{s['dropped_spans']} | {'yes' if s['zero_drops'] else 'NO'} | {s['late_turns']} | "
            f"{s['lag_p99_ms_on']} / {s['lag_p99_ms_off']} |"
        )
    lines += ["", "| calls | mode | CPU s | CPU % of a core | turns/s | lag p50 / p99 / max ms | RSS MB |",
              "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['calls']} | {r['mode']} | {r['cpu_s']} | {r['cpu_pct_of_core']} | {r['turns_per_s']} | "
                     f"{r['lag_p50_ms']} / {r['lag_p99_ms']} / {r['lag_max_ms']} | {r['rss_mb']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--calls", type=int, default=TARGET_CALLS)
    parser.add_argument("--mode", choices=("off", "disabled", "telemetry"), default="telemetry")
    parser.add_argument("--endpoint")
    parser.add_argument("--levels", default="100,200,400,800")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--collector", help="export to this real collector (http://127.0.0.1:4318) instead of a sink")
    parser.add_argument("--json", type=Path, default=Path("bench/results/capacity.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.calls, args.seconds, args.endpoint, args.mode))))
        return
    result = run([int(x) for x in args.levels.split(",")], args.seconds, args.collector)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
