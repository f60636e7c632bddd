"""Per-span cost of VoxPulse's decorators against a bare OTel SDK span, measured side by side.

Every variant runs in this one process, interleaved round by round, with a BatchSpanProcessor and
an exporter that discards (so the network is out of the picture). Ours runs inside a call scope,
so call_id stamping and redaction (on the export thread) are on.

    python -m bench.bench_spans [--rounds 7] [--ops 20000] [--json bench/results/spans.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import telemetry
from telemetry._processors import QueueingSpanProcessor, SafeExporter
from telemetry._setup import install
from telemetry._state import STATE
from telemetry.redaction import Redactor

ATTRS = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
         "gen_ai.operation.name": "chat", "voice.stage": "llm", "call_id": "call-bench"}


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _bare_provider() -> TracerProvider:
    tp = TracerProvider(shutdown_on_exit=False)
    tp.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=4096))
    return tp


def _our_provider() -> TracerProvider:
    tp = TracerProvider(shutdown_on_exit=False)
    tp.add_span_processor(QueueingSpanProcessor(SafeExporter(Discard(), Redactor())))  # as configure() does
    return tp


async def _measure(fn: Callable[[], Awaitable[object]], ops: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(ops):
        await fn()
    return (time.perf_counter_ns() - start) / ops / 1000  # µs per op


async def run(rounds: int, ops: int) -> dict[str, object]:
    bare_tracer = _bare_provider().get_tracer("bench")
    ours_tp = _our_provider()
    install(ours_tp, None, redactor=Redactor(), service_version=None, livekit=False, libraries=False)

    async def noop() -> None:
        return None

    async def bare_empty() -> None:
        with bare_tracer.start_as_current_span("chat gpt-4o-mini"):
            await noop()

    async def bare_attrs() -> None:
        with bare_tracer.start_as_current_span("chat gpt-4o-mini", attributes=ATTRS):
            await noop()

    @telemetry.trace_llm(provider="openai", model="gpt-4o-mini")
    async def ours() -> None:
        await noop()

    @telemetry.trace_llm(provider="openai", model="gpt-4o-mini")
    async def ours_stream() -> AsyncIterator[int]:
        yield 1

    async def ours_streaming() -> None:
        async for _ in ours_stream():
            pass

    async def bare_streaming() -> None:
        with bare_tracer.start_as_current_span("chat gpt-4o-mini", attributes=ATTRS):
            async def gen() -> AsyncIterator[int]:
                yield 1
            async for _ in gen():
                pass

    variants: dict[str, Callable[[], Awaitable[object]]] = {
        "bare SDK span, no attributes": bare_empty,
        "bare SDK span, same 5 attributes": bare_attrs,
        "@trace_llm coroutine (call_id + redaction)": ours,
        "bare SDK span around an async generator": bare_streaming,
        "@trace_llm async generator (TTFC + histogram off)": ours_streaming,
    }
    results: dict[str, list[float]] = {k: [] for k in variants}
    async with telemetry.call("call-bench"):
        for fn in variants.values():  # warm-up
            await _measure(fn, ops // 10)
        for _ in range(rounds):
            for name, fn in variants.items():
                results[name].append(await _measure(fn, ops))
    STATE.enabled = False

    # disabled path: telemetry not configured
    disabled = []
    for _ in range(rounds):
        disabled.append(await _measure(ours, ops))
    plain = []
    for _ in range(rounds):
        plain.append(await _measure(noop, ops))
    results["@trace_llm, telemetry not configured"] = disabled
    results["plain coroutine call (no tracing)"] = plain

    base = statistics.median(results["bare SDK span, same 5 attributes"])
    base_empty = statistics.median(results["bare SDK span, no attributes"])
    rows: list[dict[str, Any]] = []
    for name, values in results.items():
        med = statistics.median(values)
        rows.append({"variant": name, "median_us": round(med, 2), "min_us": round(min(values), 2),
                     "max_us": round(max(values), 2), "ratio_vs_bare_same_attrs": round(med / base, 2),
                     "ratio_vs_bare_empty": round(med / base_empty, 2)})
    decorated = next(r for r in rows if r["variant"].startswith("@trace_llm coroutine"))
    ratio = decorated["ratio_vs_bare_same_attrs"]
    verdict = (f"{'met' if ratio <= 1.3 else 'MISSED'}: a decorated async call costs {ratio}× a bare SDK span with the "
               f"same attributes ({decorated['ratio_vs_bare_empty']}× a bare span with none)")
    return {"rounds": rounds, "ops_per_round": ops, "rows": rows, "verdict": verdict}


def to_markdown(result: dict[str, object]) -> str:
    lines = ["| variant | median µs | range µs | × bare (same attrs) | × bare (no attrs) |", "|---|---|---|---|---|"]
    for r in result["rows"]:  # type: ignore[attr-defined]
        lines.append(f"| {r['variant']} | {r['median_us']} | {r['min_us']}–{r['max_us']} | "
                     f"{r['ratio_vs_bare_same_attrs']} | {r['ratio_vs_bare_empty']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=20000)
    parser.add_argument("--json", type=Path, default=Path("bench/results/spans.json"))
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds, args.ops))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(to_markdown(result))
    trace.get_tracer_provider()


if __name__ == "__main__":
    main()
