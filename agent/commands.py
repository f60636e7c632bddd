"""The example agent's part of the ``voxpulse`` command: ``voxpulse simulate`` and the calls of ``voxpulse demo``.

Registered through the ``voxpulse.commands`` entry point (``pyproject.toml``), so the operator console
never imports the tyre shop: it finds this module in its command registry
(:mod:`voxpulse_console.registry`), calls :func:`register_cli`, and its ``demo`` places calls through
:func:`simulate_calls` (offline) or :func:`real_calls` (callers speaking to the agent worker)::

    voxpulse simulate --calls 20 --concurrency 10 --seed 7 [--exporter auto|console|otlp|none]

With ``--exporter auto`` (the default) ``simulate`` exports by OTLP when a collector answers on the
OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``, else 127.0.0.1:4318), else it prints every call's span
tree on the terminal (the ``console`` exporter).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agent.realcalls import MediaNamespace

__all__ = [
    "REAL_CALL_SCENARIOS",
    "add_sim_args",
    "cmd_simulate",
    "collector_url",
    "print_summary",
    "real_calls",
    "register_cli",
    "simulate_calls",
]

# the scenarios the demo's real calls go through, in turn
REAL_CALL_SCENARIOS = ("order_tyres", "order_status", "book_fitting", "ask_operator", "angry_caller",
                       "prompt_injection")


def _console() -> Console:
    cols = os.environ.get("COLUMNS")
    if cols and cols.isdigit():
        return Console(width=int(cols))
    return Console() if sys.stdout.isatty() else Console(width=160)


def collector_url() -> str:
    """The collector's OTLP base URL the calls export to, as the library resolves it (read when
    asked, not at import)."""
    from telemetry._setup import resolve

    return resolve().endpoint


def _reachable(url: str, timeout: float = 0.5) -> bool:
    try:
        host, _, port = url.split("://", 1)[-1].split("/", 1)[0].rpartition(":")
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def add_sim_args(p: argparse.ArgumentParser, calls: int, concurrency: int) -> None:
    """The calls' options, shared by ``simulate`` and ``demo``."""
    p.add_argument("--calls", "-n", type=int, default=calls)
    p.add_argument("--concurrency", "-c", type=int, default=concurrency)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--run-id", help="call_ids are sim-SEED-RUN_ID-NNNN (default: new per run, so they never repeat)")
    p.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    p.add_argument("--store-error-rate", type=float, default=0.02, help="random store API 5xx rate")
    p.add_argument("--playout-scale", type=float, default=0.1, help="agent audio plays this x real time")
    p.add_argument("--metric-interval", type=float, default=5.0,
                   help="SDK metric export interval, s (above the collector's 3 s scrape, or exemplars are lost)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--verbose", "-v", action="store_true", help="show the agent's and LiveKit's warnings")


# ------------------------------------------------------------------------------------------------
# simulated calls
# ------------------------------------------------------------------------------------------------
def _configure(exporter: str, *, metric_interval_s: float | None = None) -> Any:
    import telemetry

    metrics_exporter = "otlp" if exporter == "otlp" else "none"
    return telemetry.configure(
        service_version="sim",  # service name: the library's (OTEL_SERVICE_NAME, else its default)
        exporter=exporter, metrics_exporter=metrics_exporter,  # type: ignore[arg-type]
        metric_export_interval_s=metric_interval_s, setup_logs=False,
    )


async def _open_call_log(console: Console) -> Any:
    """The real call-history logger when DATABASE_URL (or VOXPULSE_DATABASE_URL) is set, else None."""
    from telemetry.history import CallLogger, database_url

    if not database_url():
        return None

    logger = CallLogger.from_env(agent_version="voxpulse-sim")
    await logger.start()
    console.print(f"[dim]call history: PostgreSQL ({logger.mode})[/dim]")
    return logger


async def simulate_calls(args: argparse.Namespace, exporter: str) -> tuple[Any, bool, int]:
    """Simulated calls (real AgentSessions, fake providers, no server) as ``args`` asks, exported with
    ``exporter``; returns the summary (``agent.sim.simulator.SimSummary``), whether the spans were
    flushed in time and how many were dropped."""
    from agent.sim.simulator import SimOptions, simulate

    console = _console()
    if not getattr(args, "verbose", False):  # the simulated faults would flood the progress bar
        for name in ("livekit", "livekit.agents", "voxpulse.livekit", "agent"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    handle = _configure(exporter, metric_interval_s=args.metric_interval)
    options = SimOptions(playout_scale=args.playout_scale)
    progress = Progress(
        TextColumn("[bold]simulating calls"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"), console=console, transient=False,
        disable=args.quiet,
    )
    call_log = await _open_call_log(console)
    with progress:
        task = progress.add_task("calls", total=args.calls, last="")

        def done(r: Any) -> None:
            ttfw = f"{max(r.ttfw_ms):.0f} ms" if r.ttfw_ms else "-"
            progress.update(task, advance=1, last=f"{r.call_id} {r.scenario} -> {r.outcome} (max TTFW {ttfw})")

        summary = await simulate(
            calls=args.calls, concurrency=args.concurrency, seed=args.seed,
            scenarios=args.scenario or None, options=options, store_error_rate=args.store_error_rate,
            on_call_done=done, call_log=call_log, run_id=args.run_id,
        )
    if call_log is not None:
        drained = await call_log.wait_drained(timeout=15.0)
        await call_log.aclose(timeout=5.0)
        stats = call_log.stats
        console.print(f"call history: {'written' if drained else 'NOT fully written'} to PostgreSQL ({stats})")
    ok = await handle.flush(timeout=10.0)
    dropped = handle.dropped_spans
    await handle.shutdown(timeout=5.0)
    return summary, ok, dropped


def print_summary(summary: Any, *, limit: int = 40) -> None:
    """The simulated calls as a table, then the time to first word's percentiles."""
    console = _console()
    table = Table(title=f"{len(summary.calls)} calls, concurrency {summary.concurrency}, seed {summary.seed}, "
                        f"{summary.wall_s:.1f} s ({summary.calls_per_s:.2f} calls/s)")
    for col in ("call_id", "scenario", "outcome", "turns", "TTFW per turn (ms)", "cost $", "trace_id"):
        table.add_column(col)
    for c in summary.calls[:limit]:
        outcome = c.outcome + (f" ({c.transfer_reason})" if c.transfer_reason else "")
        if c.error:
            outcome += f" [red]{c.error}[/red]"
        if c.anomalies:
            outcome += " [yellow]anomaly[/yellow]"
        table.add_row(c.call_id, c.scenario, outcome, str(len(c.turns)),
                      " ".join(f"{t.ttfw_ms:.0f}" for t in c.turns if t.ttfw_ms is not None),
                      f"{c.cost_usd:.4f}", c.trace_id)
    console.print(table)
    v = sorted(summary.ttfw_ms())
    if v:
        p = summary.percentile
        console.print(f"TTFW over {len(v)} turns: p50 {p(v, 50):.0f} ms, p95 {p(v, 95):.0f} ms, "
                      f"p99 {p(v, 99):.0f} ms, max {v[-1]:.0f} ms")
    bad = [c for c in summary.calls if c.outcome != c.expected or c.error]
    if bad:
        console.print(f"[yellow]{len(bad)} calls ended differently than their scenario expects "
                      "(provider faults, slow tails)[/yellow]")


def cmd_simulate(args: argparse.Namespace) -> int:
    """``voxpulse simulate``."""
    console = _console()
    exporter = args.exporter
    if exporter == "auto":
        exporter = "otlp" if _reachable(collector_url()) else "console"
        if exporter == "console":
            console.print(f"[dim]no collector on {collector_url()}: printing each call's trace on the terminal[/dim]")
    summary, ok, dropped = asyncio.run(simulate_calls(args, exporter))
    print_summary(summary)
    if exporter == "otlp":
        console.print(f"spans exported to {collector_url()}; flush {'ok' if ok else 'timed out'}; "
                      f"dropped spans: {dropped}")
    return 0 if all(not c.error for c in summary.calls) else 1


# ------------------------------------------------------------------------------------------------
# real calls
# ------------------------------------------------------------------------------------------------
def real_calls(args: argparse.Namespace, *, env: Mapping[str, str], livekit: Mapping[str, str],
               media: MediaNamespace | None, log: Path,
               scenarios: Sequence[Mapping[str, Any]] | None = None) -> list[Any]:
    """``args.real_calls`` real calls: the agent as a LiveKit worker (local pipeline: Silero VAD,
    scripted STT, fake LLM, espeak-ng TTS, ``env`` added to its environment, its log in ``log``) and
    callers that speak over WebRTC to the server of ``livekit`` (url, key, secret), inside ``media``.
    ``scenarios``: the calls' scenarios given whole (``Scenario.as_dict``: a replay's), instead.
    Returns the callers' results (``agent.caller``'s: room_sid, scenario, turns, error)."""
    from agent.realcalls import StoreThread, Worker, call

    names = list(args.scenario or REAL_CALL_SCENARIOS)
    chosen: list[Any] = (list(scenarios) if scenarios is not None
                         else [names[i % len(names)] for i in range(args.real_calls)])
    concurrency = int(getattr(args, "real_concurrency", 1))
    worker_env = {**livekit, **env}
    console = _console()
    with StoreThread(latency_s=0.03, seed=getattr(args, "seed", 7)) as store_url:
        worker_env["STORE_API_URL"] = store_url
        with console.status("starting the agent worker ..."):
            worker = Worker(worker_env, log_path=log, media=media).start()
        try:
            with console.status(f"{len(chosen)} calls, {concurrency} at a time ..."):
                return call([{"scenario": n} for n in chosen], livekit=dict(livekit),
                            agent_name=worker_env["VOXPULSE_AGENT_NAME"], concurrency=concurrency,
                            media=media)
        finally:
            with console.status("the worker finishes its calls (each job flushes its spans at exit) ..."):
                worker.stop()


def register_cli(subparsers: Any) -> None:
    """Adds ``simulate`` to the ``voxpulse`` command (:mod:`voxpulse_console.registry`)."""
    p = subparsers.add_parser("simulate", help="run simulated calls through real AgentSessions (offline)")
    add_sim_args(p, 20, 10)
    p.add_argument("--exporter", choices=["auto", "console", "otlp", "none"], default="auto")
    p.set_defaults(func=cmd_simulate)
