"""``voxpulse``: run the demo, read a call's trace back from the trace store, and every registered command.

    voxpulse demo                 # stack up -> simulate -> latency table + slowest call's waterfall
    voxpulse trace CALL_ID        # the call's trace from the trace store (Jaeger natively), as a waterfall
    voxpulse calls | db ...       # call history (telemetry.history)
    voxpulse stack up|down|...    # the native backend stack (voxpulse_console.stack)
    voxpulse alerts-receiver      # Alertmanager webhook receiver (voxpulse_console.alert_receiver)
    voxpulse insights-receiver    # LiveKit Agents' observability upload (voxpulse_console.insights)
    voxpulse ui                   # the web console (voxpulse_console.ui)
    voxpulse simulate ...         # the example agent's simulated calls (agent.commands, an entry point)

The commands besides ``demo`` and ``trace`` come from :mod:`voxpulse_console.registry`: the console's
own modules and those installed distributions contribute (the ``voxpulse.commands`` entry points).
``demo`` places its calls through the example agent's command module when it is installed.
Traces are read through :mod:`voxpulse_console.tracestore` (``VOXPULSE_TRACE_STORE``,
``VOXPULSE_TRACE_STORE_URL``, or ``--trace-store`` / ``--trace-store-url``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.table import Table

from telemetry.semconv import SPANMETRICS_CALLS, SPANMETRICS_DURATION, Attr, Metric, SpanName, metric_spec
from voxpulse_console import registry, replay, settings, tracestore
from voxpulse_console.tracestore import Trace, TraceStore, TraceStoreError
from voxpulse_console.waterfall import render_waterfall

__all__ = ["build_parser", "main"]

def _prometheus() -> str:
    return str(settings.text(settings.PROMETHEUS_URL))


def _collector() -> str:
    """The collector's base URL, as the library resolves it (argument-free: the environment)."""
    from telemetry._setup import resolve

    return resolve().endpoint


def _console() -> Console:
    cols = os.environ.get("COLUMNS")
    if cols and cols.isdigit():
        return Console(width=int(cols))
    return Console() if sys.stdout.isatty() else Console(width=160)


console = _console()


# ------------------------------------------------------------------------------------------------
# backends
# ------------------------------------------------------------------------------------------------
def _reachable(url: str, timeout: float = 0.5) -> bool:
    try:
        host_port = url.split("://", 1)[-1].split("/", 1)[0]
        host, _, port = host_port.rpartition(":")
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def prom_query(expr: str, *, prom: str | None = None) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom or _prometheus()}/api/v1/query", params={"query": expr}, timeout=10.0)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def prom_exemplars(expr: str, start: float, end: float, *, prom: str | None = None) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom or _prometheus()}/api/v1/query_exemplars", params={"query": expr, "start": start, "end": end},
                  timeout=10.0)
    r.raise_for_status()
    out: list[dict[str, Any]] = []
    for series in r.json().get("data") or []:
        for ex in series.get("exemplars", []):
            out.append({"labels": ex.get("labels", {}), "value": float(ex.get("value", 0)),
                        "series": series.get("seriesLabels", {})})
    return out


SPANMETRICS = f"{SPANMETRICS_DURATION}_bucket"
TTFW_METRIC = f"{metric_spec(Metric.TTFW).prometheus}_bucket"
STAGE_LABEL = Attr.STAGE.replace(".", "_")  # the Prometheus label of voice.stage


def latency_table(prom: str | None = None) -> tuple[Table, int]:
    """p50/p95/p99 per stage from the collector's span metrics (+ TTFW from the SDK histogram)."""
    table = Table(title="Latency per stage (Prometheus, span metrics)")
    for col in ("stage", "p50 ms", "p95 ms", "p99 ms", "spans"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    rows: dict[str, list[str]] = {}
    for q in (0.5, 0.95, 0.99):
        expr = f'histogram_quantile({q}, sum by (le, {STAGE_LABEL}) ({SPANMETRICS}{{{STAGE_LABEL}!=""}}))'
        for r in prom_query(expr, prom=prom):
            stage = r["metric"].get(STAGE_LABEL, "?")
            v = float(r["value"][1])
            rows.setdefault(stage, []).append("-" if v != v else f"{v:.0f}")
    counts = {r["metric"].get(STAGE_LABEL, "?"): float(r["value"][1]) for r in prom_query(
        f'sum by ({STAGE_LABEL}) ({SPANMETRICS_CALLS}{{{STAGE_LABEL}!=""}})', prom=prom)}
    ttfw: list[str] = []
    for q in (0.5, 0.95, 0.99):
        res = prom_query(f"histogram_quantile({q}, sum by (le) ({TTFW_METRIC}))", prom=prom)
        if res:
            v = float(res[0]["value"][1])
            ttfw.append("-" if v != v else f"{v * 1000:.0f}")
    order = ["stt", "llm", "tool", "tts", "turn"]
    for stage in sorted(rows, key=lambda s: order.index(s) if s in order else 99):
        table.add_row(stage, *rows[stage], f"{counts.get(stage, 0):.0f}")
    if len(ttfw) == 3:
        table.add_row("[bold]time to first word[/bold]", *ttfw, "")
    return table, len(rows)


# ------------------------------------------------------------------------------------------------
# trace / demo
# ------------------------------------------------------------------------------------------------
def open_store(args: argparse.Namespace) -> TraceStore:
    """The trace store of ``--trace-store`` / ``--trace-store-url``, else of the environment."""
    kind = getattr(args, "trace_store", None) or settings.text(settings.TRACE_STORE)
    url = getattr(args, "trace_store_url", None) or settings.text(settings.TRACE_STORE_URL)
    return tracestore.create(str(kind), url)


def _is_trace_id(ident: str) -> bool:
    return len(ident) == 32 and all(c in "0123456789abcdef" for c in ident.lower())


async def _lookup(store: TraceStore, ident: str) -> tuple[str | None, Trace | None]:
    async with store:
        trace_id = ident.lower() if _is_trace_id(ident) else next(iter(await store.traces_for_call(ident)), None)
        return trace_id, (await store.trace(trace_id) if trace_id else None)


def cmd_trace(args: argparse.Namespace) -> int:
    ident: str = args.call_id
    store = open_store(args)
    where = f"{store.kind} at {store.url}"
    try:
        trace_id, trace = asyncio.run(_lookup(store, ident))
    except TraceStoreError as e:
        console.print(f"[red]the trace store did not answer: {e}[/red]")
        return 2
    if trace_id is None:
        console.print(f"[red]no trace with call_id={ident} in {where}[/red]")
        return 1
    if trace is None:
        console.print(f"[red]{where} has no trace {trace_id}[/red]")
        return 1
    title = f"call {trace.call_id or ident}  trace {trace_id}"
    console.print(render_waterfall(trace.spans, full=args.full, title=title))
    console.print(f"[dim]{store.trace_link(trace_id)}[/dim]")
    return 0


async def _call_trace(store: TraceStore, trace_id: str, wait_s: float) -> Trace | None:
    """The trace once it holds the call's root span (the store may still be writing it)."""
    deadline = time.monotonic() + wait_s
    async with store:
        while True:
            with contextlib.suppress(TraceStoreError):
                trace = await store.trace(trace_id)
                if trace is not None and any(s.name == SpanName.CALL for s in trace.spans):
                    return trace
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(1.0)


def _explore_link(kind: str, trace_id: str) -> str:
    """Grafana Explore on the trace (compose's Grafana: data source uid = the store's kind)."""
    query = {"refId": "A", "query": trace_id}
    if kind == "tempo":
        query["queryType"] = "traceql"
    pane = {"datasource": kind, "queries": [query]}
    return f"{settings.text(settings.GRAFANA_URL)}/explore?left=" + quote(json.dumps(pane, separators=(",", ":")))


def _wait_for(pred: Callable[[], bool], timeout: float, interval: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            if pred():
                return True
        time.sleep(interval)
    return False


def _demo_login() -> tuple[str, str, dict[str, str]]:
    """A one-time console login for the demo: (user, password, env for the console's process).
    The password is random, printed once at the end and never written anywhere."""
    import secrets

    from voxpulse_console.ui.auth import hash_password

    user, password = "demo", secrets.token_urlsafe(12)
    return user, password, {"VOXPULSE_UI_USERS": f"{user}:{hash_password(password)}:pii"}


def cmd_demo(args: argparse.Namespace) -> int:
    """Stack up, calls (real ones: callers speaking to the agent worker through the LiveKit server;
    offline or when that cannot run: the simulator), latency per stage from Prometheus, the slowest
    call's waterfall from the trace store (found through its exemplar), where to look next, and the
    web console."""
    calls: Any = args.calls_source  # the example agent's command module (agent.commands), or None
    if calls is None:
        console.print("[red]voxpulse demo places the example agent's calls, and it is not installed: "
                      "pip install 'voxpulse-otel[agent,console]'[/red]")
        return 2
    args.prometheus = args.prometheus or _prometheus()
    login = _demo_stack(args)
    collector_up = _reachable(_collector())
    t_start = time.time()
    summary: Any = None
    if not args.offline:
        summary = _demo_real_calls(args, calls, collector_up)
    if summary is None:
        console.rule("[bold]2. simulated calls (offline: AgentSessions with fake providers, no server)")
        args.exporter = "otlp" if collector_up else "console"
        if not collector_up:
            console.print("[yellow]no collector reachable: printing each call's trace on the terminal[/yellow]")
        summary, ok, dropped = asyncio.run(calls.simulate_calls(args, args.exporter))
        calls.print_summary(summary, limit=args.calls)
        if not collector_up:
            return 0
        console.print(f"exported; flush {'ok' if ok else 'timed out'}, dropped spans {dropped}")
    if not _demo_latency(args, summary):
        return 1
    trace_id, store, slowest_call_id = _demo_slowest_call(args, summary, t_start)
    _demo_links(args, trace_id, store, login is not None)
    if login is not None:
        _demo_web_console(login, slowest_call_id)
    return 0


def _demo_stack(args: argparse.Namespace) -> tuple[str, str] | None:
    """Step 1: the backend stack and the web console (unless --no-stack); returns the console's
    one-time login when it runs. A failure is reported, the demo goes on."""
    from voxpulse_console import stack

    if args.no_stack:
        return None
    console.rule("[bold]1. backend stack")
    login: tuple[str, str] | None = None
    try:
        user, password, ui_env = _demo_login()
        with console.status("starting the collector, Jaeger, Prometheus, Alertmanager, LiveKit, the console ..."):
            # the shipped flush interval (20 s, above the 15 s scrape) keeps every exemplar
            result = stack.up(use_docker=args.docker, env=None if args.docker else ui_env)
            if result.get("ui") == "running":  # a console from an earlier demo: give it the new login
                result["ui"] = stack.restart("ui", env=ui_env)
        if "ui" in result:
            login = (user, password)
        console.print(", ".join(f"{k}: {v}" for k, v in result.items()))
    except Exception as e:  # no binaries, ports busy: say so and fall back to the console
        console.print(f"[yellow]stack not started: {e}[/yellow]")
    return login


def _demo_latency(args: argparse.Namespace, summary: Any) -> bool:
    """Step 3: the latency table once Prometheus has scraped the calls' span metrics; False when
    Prometheus is not reachable at all."""
    console.rule("[bold]3. latency per stage from Prometheus")
    if not _reachable(args.prometheus):
        console.print(f"[red]Prometheus at {args.prometheus} is not reachable; the traces went to the collector."
                      "[/red] `voxpulse stack status` shows what runs.")
        return False
    # most of the turns (a real call's turns are what its caller said: a VAD may merge two lines)
    turns = sum(len(c.turns) for c in summary.calls)
    share = 0.8 if isinstance(summary, _RealSummary) else 0.9
    want = min(int(sum(1 + len(c.turns) for c in summary.calls) * share), turns)

    def have_data() -> bool:
        res = prom_query(f'sum({SPANMETRICS_CALLS}{{{STAGE_LABEL}="turn"}})', prom=args.prometheus)
        return bool(res) and float(res[0]["value"][1]) >= want

    with console.status("waiting for Prometheus to scrape the span metrics ..."):
        fresh = _wait_for(have_data, args.wait)
    if not fresh:
        console.print(f"[yellow]Prometheus at {args.prometheus} has no (complete) span metrics yet[/yellow]")
    try:
        table, _n = latency_table(args.prometheus)
        console.print(table)
    except httpx.HTTPError as e:
        console.print(f"[red]Prometheus query failed: {e}[/red]")
    return True


def _slowest_trace_id(args: argparse.Namespace, summary: Any, t_start: float) -> tuple[str | None, str]:
    """The trace id of the slowest exemplar in Prometheus (time to first word, then turn spans,
    then call spans), else of the simulator's slowest call; and how it was found."""
    for expr in (TTFW_METRIC, f'{SPANMETRICS}{{{STAGE_LABEL}="turn"}}', f'{SPANMETRICS}{{span_name="call"}}'):
        try:
            exemplars = prom_exemplars(expr, t_start - 60, time.time() + 60, prom=args.prometheus)
        except httpx.HTTPError:
            exemplars = []
        exemplars = [e for e in exemplars if e["labels"].get("trace_id")]
        if exemplars:
            top = max(exemplars, key=lambda e: e["value"])
            return str(top["labels"]["trace_id"]), f"exemplar of {expr.split('{')[0]} (value {top['value']:.3g})"
    slow = summary.slowest()
    if slow is not None:
        return slow.trace_id, "simulator summary (no exemplar found in Prometheus)"
    return None, ""


def _demo_slowest_call(args: argparse.Namespace, summary: Any,
                       t_start: float) -> tuple[str | None, TraceStore | None, str | None]:
    """Step 4: the slowest call's trace, as a waterfall from the trace store; returns its trace id,
    the store and its call_id."""
    console.rule("[bold]4. the slowest call, through its exemplar")
    trace_id, how = _slowest_trace_id(args, summary, t_start)
    if not trace_id:
        return None, None, None
    store = open_store(args)
    with console.status(f"fetching the trace from {store.kind} ..."):
        trace = asyncio.run(_call_trace(store, trace_id, args.wait))
    call_id = trace.call_id if trace is not None else None
    slowest_call_id = call_id or next((c.call_id for c in summary.calls if c.trace_id == trace_id), None)
    console.print(f"slowest call: {call_id or '?'}, trace {trace_id} (via {how})")
    if trace is not None:
        console.print(render_waterfall(trace.spans, title=f"call {call_id} (from {store.kind} at {store.url})"))
    else:
        console.print(f"[yellow]{store.kind} at {store.url} does not have trace {trace_id} yet[/yellow]")
    return trace_id, store, slowest_call_id


def _demo_links(args: argparse.Namespace, trace_id: str | None, store: TraceStore | None,
                console_up: bool) -> None:
    """Step 5: where to look next -- only links that open in the user's browser: the console's own
    raw trace, Grafana only where it runs (docker compose)."""
    console.rule("[bold]5. open")
    console.print(f"Prometheus: {args.prometheus}/graph?g0.expr="
                  + quote(f"histogram_quantile(0.95, sum by (le, {STAGE_LABEL}) ({SPANMETRICS}))"))
    if trace_id and console_up:
        ui = settings.text(settings.UI_LISTEN)
        console.print(f"raw trace:  http://{ui}/api/traces/{trace_id}   (JSON, after logging in to the console)")
    if trace_id and store is not None and args.docker:
        console.print(f"Grafana:    {_explore_link(store.kind, trace_id)}")
    if args.docker:
        console.print(f"Grafana dashboards: {settings.text(settings.GRAFANA_URL)}/dashboards")
    console.print("trace of any call: voxpulse trace <call_id>")


def _demo_web_console(login: tuple[str, str], slowest_call_id: str | None) -> None:
    """Step 6: the web console, its one-time login and the slowest call's page."""
    ui = f"http://{settings.text(settings.UI_LISTEN)}"
    console.rule("[bold]6. the web console")
    console.print(f"VoxPulse console: {ui}   (log in as [bold]{login[0]}[/bold], "
                  f"password [bold]{login[1]}[/bold] -- shown once, valid until the console restarts)")
    if slowest_call_id:
        console.print(f"the slowest call: {ui}/calls/{quote(slowest_call_id, safe='')}")


@dataclass
class _RealCall:
    """One real call of the demo, as the caller saw it (summary rows and the Prometheus wait)."""

    call_id: str
    scenario: str
    turns: list[Any]
    error: str | None
    trace_id: str = ""


@dataclass
class _RealSummary:
    calls: list[_RealCall]

    def slowest(self) -> None:
        return None  # the demo finds the slowest call through its exemplar


def _demo_real_calls(args: argparse.Namespace, calls: Any, collector_up: bool) -> _RealSummary | None:
    """Real calls, when this machine can place them: the agent as a LiveKit worker (local pipeline:
    Silero VAD, scripted STT, fake LLM, espeak-ng TTS) and callers that speak over WebRTC, inside
    the media namespace. None (the caller falls back to the offline simulator) when it cannot."""
    import shutil

    from voxpulse_console import stack

    why = ""
    if not collector_up:
        why = "no collector"
    elif not stack.ready(stack.COMPONENTS["livekit"].ready_url):
        why = "the LiveKit server does not answer"
    elif shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        why = "espeak-ng or sox missing (scripts/build-backends.sh --only=debian)"
    if why:
        console.print(f"[yellow]real calls not possible: {why}; simulating calls offline instead[/yellow]")
        return None
    console.rule(f"[bold]2. {args.real_calls} real calls (LiveKit server, agent worker, callers speaking over WebRTC)")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": _collector(),
           "OTEL_METRIC_EXPORT_INTERVAL": str(int(args.metric_interval * 1000)),
           "VOXPULSE_AGENT_NAME": f"tyre-agent-demo-{os.getpid()}"}
    log = stack.state_dir(None) / "logs" / "demo-worker.log"  # the stack's state folder, as the stack finds it
    results = calls.real_calls(args, env=env, livekit=stack.livekit_env(), media=stack.media_namespace(), log=log)
    table = Table(title=f"{len(results)} real calls; time to first word as each caller heard it")
    for col in ("call_id", "scenario", "turns", "caller TTFW per turn (ms)", "error"):
        table.add_column(col)
    rows = []
    for r in results:
        table.add_row(r.room_sid, r.scenario, str(len(r.turns)),
                      " ".join(f"{t.ttfw_ms:.0f}" for t in r.turns if t.ttfw_ms is not None), r.error or "")
        rows.append(_RealCall(r.room_sid, r.scenario, list(r.turns), r.error))
    console.print(table)
    console.print(f"the agent's log: {log}; scenarios: {', '.join(sorted({r.scenario for r in results}))}")
    return _RealSummary(rows)


# ------------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------------
def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace-store", choices=sorted(tracestore.KINDS), default=None,
                   help="jaeger or tempo (default $VOXPULSE_TRACE_STORE, else jaeger)")
    p.add_argument("--trace-store-url", default=None,
                   help="the store's query API (default $VOXPULSE_TRACE_STORE_URL, else the kind's local port)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxpulse", description="OpenTelemetry for LiveKit voice agents")
    sub = parser.add_subparsers(dest="command", required=True)

    commands = registry.load(sub)  # the console's command modules and the installed entry points
    calls = commands.get("simulate")  # the example agent's (agent.commands): the demo's calls

    p = sub.add_parser("demo", help="stack up, simulate, latency table and the slowest call's waterfall")
    if calls is not None:
        calls.add_sim_args(p, 30, 10)
    p.add_argument("--no-stack", action="store_true", help="do not start the stack (use what runs)")
    p.add_argument("--offline", action="store_true",
                   help="simulated calls without a server (AgentSessions with fake providers) instead of real calls")
    p.add_argument("--real-calls", type=int, default=6, help="real calls to place (callers speaking over WebRTC)")
    p.add_argument("--real-concurrency", type=int, default=3, help="real calls at a time (5 fit 2 cores)")
    p.add_argument("--docker", action="store_true", help="docker compose instead of native processes")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for Prometheus and the trace store")
    p.add_argument("--prometheus", default=None, help=f"default ${settings.PROMETHEUS_URL.name} or "
                   f"{settings.DEFAULT_PROMETHEUS_URL}")
    _add_store_args(p)
    p.set_defaults(func=cmd_demo, calls_source=calls)

    replay.register_cli(sub, calls_source=calls, store_args=_add_store_args, open_store=open_store)

    p = sub.add_parser("trace", help="a call's trace from the trace store as a waterfall")
    p.add_argument("call_id", help="call_id (or a 32-hex trace id)")
    _add_store_args(p)
    p.add_argument("--full", action="store_true", help="also LiveKit's internal spans")
    p.set_defaults(func=cmd_trace)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except registry.CommandImportError as e:
        print(e, file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
