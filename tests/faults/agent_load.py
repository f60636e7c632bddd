"""A stand-in voice-agent process for the fault tests: steady simulated calls through the library's
real export path (telemetry.configure + telemetry.call + the stage decorators), in its own process
so that its memory (VmRSS) and its behaviour under SIGTERM are those of a real agent.

    python tests/faults/agent_load.py --endpoint http://127.0.0.1:4318 --service vp-faults-x \
        --stats /tmp/stats.jsonl [--concurrency 40 --turns 3 --turn-s 1.0] [--history]

Every second it appends one JSON line to ``--stats``: cumulative calls completed, RSS, span
counts (produced / delivered / queue-dropped / export-failed), the end-of-call latencies and the
event-loop lag of that second, and the latest completed call_id. Turns are paced on absolute
deadlines, so a healthy process completes exactly ``concurrency / (turns * turn_s)`` calls per
second and any stall shows up as a lower rate.

SIGTERM (or SIGINT) runs the graceful shutdown this module proposes for agents
(:func:`install_graceful_shutdown`): cancel the call tasks so their ``telemetry.call`` scopes end
(outcome ``abandoned``), then flush spans and call records within a bound, off the event loop.
The final counts are printed as one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

PHONE = "+380501234567"


def rss_kb(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Produced(SpanProcessor):
    """Counts every sampled span that ends (what the process produced)."""

    def __init__(self) -> None:
        self.n = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self.n += 1

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class Delivered(SpanExporter):
    """Wraps the real OTLP exporter (inside the library's SafeExporter) to count accepted spans, and
    the exports made on the event loop's thread (the library promises none: a slow or dead
    collector must never hold up a call)."""

    def __init__(self, inner: SpanExporter, loop_thread: int) -> None:
        self.inner = inner
        self.loop_thread = loop_thread
        self.n = 0
        self.on_loop = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if threading.get_ident() == self.loop_thread:
            self.on_loop += 1
        result = self.inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.n += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def install_graceful_shutdown(
    loop: asyncio.AbstractEventLoop,
    on_signal: Callable[[], None],
    signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """The pattern proposed for agents that own their event loop (LiveKit workers run their own
    shutdown callbacks instead): the handler only sets a flag on the loop; the main coroutine then
    cancels the call tasks and awaits ``handle.shutdown(timeout)`` and ``logger.aclose(timeout)``."""
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)


async def graceful_stop(
    tasks: Sequence[asyncio.Task[Any]], closers: Sequence[Awaitable[Any]], *, cancel_wait_s: float = 1.0,
) -> list[Any]:
    """Cancel the call tasks (their call scopes end as abandoned and enqueue their records), wait a
    bounded time for them to unwind, then run the closers (each bounded by its own timeout)."""
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=cancel_wait_s)
    return list(await asyncio.gather(*closers, return_exceptions=True))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    import telemetry
    from telemetry.semconv import SpanName

    produced = Produced()
    handle = telemetry.configure(
        service_name=args.service, exporter="otlp", endpoint=args.endpoint, protocol="http/protobuf",
        metrics_exporter="otlp", metric_export_interval_s=args.metric_interval, content="redacted",
        additional_span_processors=(produced,), setup_logs=True,
    )
    delivered: Delivered | None = None
    safe = getattr(handle, "_exporter", None)  # test-only: count what the collector accepted
    if safe is not None:
        delivered = Delivered(safe.inner, threading.get_ident())  # main() runs on the loop's thread
        safe.inner = delivered
    processor = getattr(handle, "_span_processor", None)

    logger = None
    if args.history:
        from telemetry.history import CallLogger

        logger = CallLogger.from_env()
        await logger.start()

    @telemetry.trace_stt(provider="deepgram", model="nova-3")
    async def stt(audio: bytes) -> str:
        await asyncio.sleep(0.03)
        return f"мені потрібні шини 205/55 R16, мій номер {PHONE}"

    @telemetry.trace_llm(provider="openai", model="gpt-4o-mini")
    async def llm(prompt: str):  # type: ignore[no-untyped-def]
        for tok in ("Маємо ", "Nokian ", "за ", "3200 ", "грн."):
            await asyncio.sleep(0.02)
            yield tok

    @telemetry.trace_tool
    async def find_tyres(size: str) -> list[dict[str, str]]:
        await asyncio.sleep(0.01)
        return [{"size": size, "brand": "Nokian"}]

    @telemetry.trace_tts(provider="cartesia", model="sonic", voice="uk-female")
    async def tts(text: str) -> bytes:
        await asyncio.sleep(0.04)
        return b"\0" * 320

    @telemetry.traced(name=SpanName.TURN)
    async def turn(call: Any, index: int) -> None:
        text = await stt(b"pcm")
        if index % 2 == 0:
            await find_tyres("205/55 R16")
        answer = "".join([tok async for tok in llm(text)])
        await tts(answer)
        telemetry.metrics.record_time_to_first_word(0.6)
        if logger is not None:
            logger.log_turn(call.call_id, index, "user", text, stt_ms=30.0)
            logger.log_turn(call.call_id, index, "agent", answer, llm_ms=100.0, tts_ms=40.0, ttfw_ms=600.0)

    completed = 0
    started = 0
    inflight: set[str] = set()
    end_lat: list[float] = []
    lags: list[float] = []
    last_done: list[Any] = [None, 0.0]
    stopping = asyncio.Event()
    period = args.turns * args.turn_s

    async def caller(i: int) -> None:
        nonlocal completed, started
        await asyncio.sleep(min(period, 5 * args.turn_s) * i / args.concurrency)  # spread the calls' phases
        n = 0
        while True:
            call_id = f"{args.prefix}-{i}-{n}"
            n += 1
            t_start = time.monotonic()
            async with telemetry.call(call_id, caller=PHONE, room=call_id) as call:
                if logger is not None:
                    logger.bind_call(call)
                started += 1
                inflight.add(call_id)
                for t in range(args.turns):
                    call.next_turn()
                    await turn(call, t)
                    await asyncio.sleep(max(0.0, t_start + (t + 1) * args.turn_s - time.monotonic()))
                call.set_scenario("order")
                t_exit = time.perf_counter()
            end_lat.append(time.perf_counter() - t_exit)  # the call scope's exit: span end, metrics, records
            inflight.discard(call_id)
            completed += 1
            last_done[0], last_done[1] = call_id, time.time()

    async def ticker() -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append((time.perf_counter() - t0 - 0.005) * 1000)

    stats = open(args.stats, "a", buffering=1, encoding="utf-8")  # noqa: SIM115, ASYNC230 (once, at start)

    def snapshot() -> dict[str, Any]:
        return {
            "t": time.time(), "completed": completed, "started": started, "inflight": len(inflight),
            "rss_kb": rss_kb(), "produced": produced.n, "delivered": delivered.n if delivered else 0,
            "exports_on_loop": delivered.on_loop if delivered else 0,
            "queue_dropped": processor.dropped if processor else 0,
            "export_failed": safe.failed_spans if safe else 0, "dropped_spans": handle.dropped_spans,
            "queued": len(getattr(processor, "_queue", ())) if processor else 0,
            "last_call_id": last_done[0], "last_call_t": last_done[1],
        }

    async def reporter() -> None:
        while True:
            await asyncio.sleep(1.0)
            lat, lg = end_lat[:], lags[:]
            end_lat.clear()
            lags.clear()
            lg.sort()
            row = snapshot()
            row["end_ms"] = [round(x * 1000, 3) for x in lat]
            row["lag_p99_ms"] = round(lg[int(len(lg) * 0.99) - 1], 2) if lg else None
            row["lag_max_ms"] = round(lg[-1], 2) if lg else None
            stats.write(json.dumps(row) + "\n")

    if args.freeze:
        gc.collect()
        gc.freeze()
    loop = asyncio.get_running_loop()
    install_graceful_shutdown(loop, stopping.set)
    callers = [loop.create_task(caller(i)) for i in range(args.concurrency)]
    helpers = [loop.create_task(ticker()), loop.create_task(reporter())]
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stopping.wait(), args.duration if args.duration > 0 else None)

    # --- graceful shutdown: bounded, off the loop ---
    t0 = time.monotonic()
    lags.clear()
    abandoned = sorted(inflight)
    produced_at_stop = produced.n
    closers: list[Awaitable[Any]] = [handle.shutdown(timeout=args.shutdown_timeout)]
    if logger is not None:
        closers.insert(0, logger.aclose(timeout=args.shutdown_timeout))
    results = await graceful_stop(callers, closers)
    shutdown_s = time.monotonic() - t0
    max_lag = max(lags) if lags else 0.0
    for h in helpers:
        h.cancel()
    final = snapshot()
    final.update({
        "final": True, "abandoned": abandoned, "produced_at_stop": produced_at_stop, "shutdown_s": round(shutdown_s, 3),
        "shutdown_ok": [r if r is None or isinstance(r, bool) else repr(r) for r in results],
        "shutdown_max_lag_ms": round(max_lag, 2),
        "history": dataclasses.asdict(logger.stats) if logger is not None else None,
    })
    stats.close()
    return final


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--prefix", default="fault")
    p.add_argument("--concurrency", type=int, default=40)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--turn-s", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=0, help="stop by itself after this many seconds (0: on SIGTERM)")
    p.add_argument("--metric-interval", type=float, default=5.0)
    p.add_argument("--shutdown-timeout", type=float, default=3.0)
    p.add_argument("--history", action="store_true", help="also write call records (DATABASE_URL, REDIS_URL)")
    p.add_argument("--freeze", action="store_true", default=True)
    return p.parse_args(argv)


if __name__ == "__main__":
    os.environ.pop("OTEL_SDK_DISABLED", None)
    final = asyncio.run(main(parse()))
    print(json.dumps(final), flush=True)
