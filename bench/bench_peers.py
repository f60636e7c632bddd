"""VoxPulse's decorators against Pydantic Logfire's ``instrument`` and Pipecat's ``traced_llm``.

Runs in the peers' own environment (bench/.venv-peers: ``pip install logfire==5.2.0 pipecat-ai==1.14.0``,
which bring the same OpenTelemetry SDK 1.45), one process per peer, and in each process measures
side by side: a bare OTel SDK span (BatchSpanProcessor, discarding exporter) as the reference,
the inline OTel context manager with the same attributes, our ``@trace_llm``, and the peer.

    bench/.venv-peers/bin/python -m bench.bench_peers [--json bench/results/peers.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

ATTRS = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.operation.name": "chat",
         "voice.stage": "llm"}


async def _measure(fn: Callable[[], Awaitable[object]], ops: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(ops):
        await fn()
    return (time.perf_counter_ns() - start) / ops / 1000


def _discard() -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

    return Discard()


async def _child(peer: str, rounds: int, ops: int) -> dict[str, list[float]]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    import telemetry
    from telemetry._processors import QueueingSpanProcessor, SafeExporter
    from telemetry._setup import install
    from telemetry.redaction import Redactor

    ref_tp = TracerProvider(shutdown_on_exit=False)
    ref_tp.add_span_processor(BatchSpanProcessor(_discard()))
    ref = ref_tp.get_tracer("ref")
    ours_tp = TracerProvider(shutdown_on_exit=False)
    ours_tp.add_span_processor(QueueingSpanProcessor(SafeExporter(_discard(), Redactor())))
    install(ours_tp, None, redactor=Redactor(), service_version=None, livekit=False, libraries=False)

    async def noop() -> None:
        return None

    async def bare() -> None:
        with ref.start_as_current_span("chat gpt-4o-mini"):
            await noop()

    async def inline() -> None:
        with ref.start_as_current_span("chat gpt-4o-mini", attributes=ATTRS):
            await noop()

    @telemetry.trace_llm(provider="openai", model="gpt-4o-mini")
    async def ours() -> None:
        await noop()

    variants: dict[str, Callable[[], Awaitable[object]]] = {
        "bare OTel SDK span (reference)": bare,
        "inline OTel context manager, 4 attributes": inline,
        "VoxPulse @trace_llm (+ call_id, redaction)": ours,
    }
    if peer == "logfire":
        import logfire
        from opentelemetry.sdk.trace.export import BatchSpanProcessor as BSP

        logfire.configure(send_to_logfire=False, console=False, metrics=False,
                          additional_span_processors=[BSP(_discard())])

        @logfire.instrument("llm call")
        async def lf_default() -> None:
            await noop()

        @logfire.instrument("llm call", extract_args=False)
        async def lf_noargs() -> None:
            await noop()

        variants["Logfire @instrument (default)"] = lf_default
        variants["Logfire @instrument(extract_args=False)"] = lf_noargs
    else:
        from opentelemetry import trace as trace_api
        from pipecat.utils.tracing.service_decorators import traced_llm

        pipecat_tp = TracerProvider(shutdown_on_exit=False)
        pipecat_tp.add_span_processor(BatchSpanProcessor(_discard()))
        trace_api.set_tracer_provider(pipecat_tp)

        class DummyLLM:
            _tracing_enabled = True

            async def push_frame(self, frame: object, direction: object = None) -> None:
                return None

            @traced_llm
            async def run(self, context: object) -> None:
                await noop()

        service = DummyLLM()

        async def pipecat_llm() -> None:
            await service.run(object())

        variants["Pipecat @traced_llm"] = pipecat_llm

    results: dict[str, list[float]] = {k: [] for k in variants}
    async with telemetry.call("peers"):
        for fn in variants.values():
            await _measure(fn, ops // 10)
        for _ in range(rounds):
            for name, fn in variants.items():
                results[name].append(await _measure(fn, ops))
    return results


def run(rounds: int, ops: int) -> dict[str, object]:
    rows: list[dict[str, Any]] = []
    for peer in ("logfire", "pipecat"):
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_peers", "--child", peer, "--rounds", str(rounds), "--ops", str(ops)],
            capture_output=True, text=True, check=True, timeout=1200,
        )
        results: dict[str, list[float]] = json.loads(out.stdout.strip().splitlines()[-1])
        base = statistics.median(results["bare OTel SDK span (reference)"])
        for name, values in results.items():
            med = statistics.median(values)
            rows.append({"process": peer, "variant": name, "median_us": round(med, 2), "min_us": round(min(values), 2),
                         "max_us": round(max(values), 2), "ratio": round(med / base, 2)})
    ours = max(r["ratio"] for r in rows if r["variant"].startswith("VoxPulse"))
    peers = min(r["ratio"] for r in rows if r["variant"].startswith(("Logfire", "Pipecat")))
    verdict = (f"{'met' if ours < peers else 'MISSED'}: ours costs at most {ours}× the bare span; the cheapest peer "
               f"costs {peers}×")
    return {"rounds": rounds, "ops_per_round": ops, "rows": rows, "verdict": verdict}


def to_markdown(result: dict[str, Any]) -> str:
    lines = ["| process | variant | median µs | range µs | × bare span |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['process']} | {r['variant']} | {r['median_us']} "
                     f"| {r['min_us']}–{r['max_us']} | {r['ratio']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["logfire", "pipecat"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=10000)
    parser.add_argument("--json", type=Path, default=Path("bench/results/peers.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.child, args.rounds, args.ops))))
        return
    result = run(args.rounds, args.ops)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
