"""How many concurrent simulated calls one process sustains, with zero dropped spans, and what
telemetry costs in CPU.

    python bench/bench_agent.py --concurrency 20 50 100 --calls-per-level 2

For each level: N calls all in flight at once (real AgentSessions, agent.simulator), once with
telemetry on (every span through the production processors into a counting exporter behind the
same batch processor configure() installs) and once with telemetry disabled. Reports wall time,
process CPU seconds, the CPU share telemetry adds, spans exported / dropped, and how far the live
TTFW is from the fakes' own clock (event-loop lag shows up there first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import telemetry
from agent.simulator import SimOptions, simulate
from telemetry._processors import QueueingSpanProcessor, SafeExporter
from telemetry.redaction import Redactor


class CountingExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


async def level(n: int, calls: int, enabled: bool, frame_ms: int = 20) -> dict[str, float]:
    exporter = CountingExporter()
    # the production pipeline: batch processor -> SafeExporter (redaction) -> exporter
    proc = QueueingSpanProcessor(SafeExporter(exporter, Redactor()))
    handle = telemetry.configure(
        exporter="none", metrics_exporter="none", disabled=not enabled, setup_logs=False,
        span_processors=[proc] if enabled else (),
    )
    if not enabled:  # configure(disabled=True) leaves LiveKit's tracer alone: silence it too
        from livekit.agents.telemetry import traces as lk_traces
        from opentelemetry import trace

        lk_traces.tracer.set_provider(trace.NoOpTracerProvider())
    cpu0, t0 = time.process_time(), time.monotonic()
    s = await simulate(calls=n * calls, concurrency=n, seed=3, options=SimOptions(arrival_s=0.02, frame_ms=frame_ms))
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    await handle.flush(timeout=30)
    errs = [abs(t.ttfw_ms - t.truth_ttfw_ms) for c in s.calls for t in c.turns
            if t.ttfw_ms is not None and t.truth_ttfw_ms is not None]
    ttfw = s.ttfw_ms()
    out = {
        "concurrency": n, "frame_ms": frame_ms, "calls": len(s.calls), "telemetry": enabled, "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1), "calls_per_s": round(len(s.calls) / wall, 2),
        "spans": exporter.count, "dropped": proc.dropped,
        "failed_calls": sum(1 for c in s.calls if c.error or c.outcome != c.expected),
        "ttfw_p50_ms": round(statistics.median(ttfw), 0) if ttfw else None,
        "ttfw_err_p50_ms": round(statistics.median(errs), 1) if errs else None,
        "ttfw_err_max_ms": round(max(errs), 1) if errs else None,
    }
    await handle.shutdown(timeout=5)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", type=int, nargs="+", default=[10, 25, 50])
    ap.add_argument("--calls-per-level", type=int, default=1)
    ap.add_argument("--frame-ms", type=int, default=20, help="caller audio frame size")
    a = ap.parse_args()
    logging.disable(logging.WARNING)
    for n in a.concurrency:
        on = await level(n, a.calls_per_level, True, a.frame_ms)
        off = await level(n, a.calls_per_level, False, a.frame_ms)
        share = (on["cpu_s"] - off["cpu_s"]) / on["cpu_s"] * 100 if on["cpu_s"] else 0.0
        print(json.dumps({"on": on, "off": off, "telemetry_cpu_share_pct": round(share, 1)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
