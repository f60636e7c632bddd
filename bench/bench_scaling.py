"""Scale-out, measured: the collector tiers under load and faults, and the cost of growth.

Every part starts its own native stack (``voxpulse_console.stack.up(collectors=N)``, the shipped
configs otel-collector/lb.yaml and processing.yaml, a temporary state folder) and stops it after.

* ``saturation`` -- spans/s ONE processing collector sustains on ONE core (``GOMAXPROCS=1``), with
  every shipped processor (span metrics twice, tail sampling, redaction, persistent export queue to
  Jaeger), driven by telemetrygen (opentelemetry-collector-contrib cmd/telemetrygen v0.161.0)
  straight at its OTLP port, unthrottled, until its CPU is the limit. Measured at 100 % and 10 %
  sampling. "Saturated" means the collector used >= 0.9 of its core over the window.
* ``scaling`` -- telemetrygen at the load-balancing collector, unthrottled, with 1, 2 and 3
  processing collectors (10 % sampling): spans/s the tier takes in, and the CPU of every process
  on this 2-core machine (what limits it).
* ``fault`` -- 3 processing collectors, 100 % sampling, a steady load of synthetic calls with known
  trace ids (OTel SDK, OTLP/HTTP) into the load-balancing collector; processing collector 2 is
  SIGKILLed mid-run. The collector-ring drops it and reloads the load-balancing collector. Counted:
  spans the load-balancing collector acknowledged (= what its receivers accepted), spans the trace
  store holds (Jaeger's own counter, and span by span by trace id), the difference = spans lost,
  and the traces they belong to.
* ``growth`` -- series in Prometheus and each collector's memory as the call volume grows x1, x10,
  x100 (10, 100, 1000 calls through the library, 2 processing collectors, 10 % sampling), for
  one agent process taking every call and for one agent process per call (what LiveKit's process
  pool does: a fresh SDK, so a fresh ``service.instance.id``, per job).

    python -m bench.bench_scaling [--parts saturation,scaling,fault,growth] [--seconds 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from voxpulse_console import collector_ring, stack

PARTS = ("saturation", "scaling", "fault", "growth")
PROM = "http://127.0.0.1:9090"
JAEGER_METRICS = "http://127.0.0.1:14269/metrics"
LB_METRICS = "http://127.0.0.1:8888/metrics"
TICK_S = os.sysconf("SC_CLK_TCK")
SATURATED_CORE = 0.9
# What telemetrygen's spans carry: the attribute shape of a voice span, a phone number in a pii key
# (the redaction processors work on it) and a call_id.
TG_ATTRIBUTES = (
    'call_id="tg-call"', 'voice.stage="llm"', 'gen_ai.provider.name="openai"', 'gen_ai.request.model="gpt-4o-mini"',
    'gen_ai.operation.name="chat"', 'voice.turn.pii.user_text="шини 205/55 R16, мій номер +380501234567"',
)


# --- processes and counters -----------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scrape(url: str) -> dict[str, float]:
    """A Prometheus text endpoint as {name{labels}: value} (comment lines skipped)."""
    out: dict[str, float] = {}
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                continue
    return out


def total(metrics: dict[str, float], prefix: str) -> float:
    """Sum of every series of one metric (with or without the _total suffix)."""
    return sum(v for k, v in metrics.items() if k.split("{")[0] in (prefix, prefix + "_total"))


def pids(state: Path) -> dict[str, int]:
    return {r.name: r.pid for r in stack.status(state_dir=state) if r.pid is not None}


@contextmanager
def tiered_stack(collectors: int, env: dict[str, str], components: Sequence[str] | None = None,
                 per_component_env: dict[str, dict[str, str]] | None = None) -> Iterator[Path]:
    """A fresh native stack with ``collectors`` processing collectors, stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="vp-bench-scaling-") as tmp:
        state = Path(tmp)
        try:
            stack.up([], state_dir=state, collectors=collectors)  # choose the topology only
            names = list(components) if components is not None else list(stack.components(state_dir=state))
            for name in names:
                stack.up([name], state_dir=state, wait_s=90,
                         env={**env, **(per_component_env or {}).get(name, {})})
            yield state
        finally:
            stack.down(state_dir=state)


def telemetrygen(endpoint: str, seconds: float, workers: int, *, http: bool = False) -> subprocess.Popen[bytes]:
    binary = stack.binaries().get("telemetrygen")
    if binary is None:
        raise SystemExit("telemetrygen missing: run scripts/build-backends.sh --only=telemetrygen")
    argv = [str(binary), "traces", "--otlp-endpoint", endpoint, "--otlp-insecure", "--rate", "0",
            "--workers", str(workers), "--duration", f"{seconds:g}s", "--child-spans", "7",
            "--span-duration", "40ms", "--service", "tg-load", "--allow-export-failures"]
    if http:
        argv.append("--otlp-http")
    for attr in TG_ATTRIBUTES:
        argv += ["--telemetry-attributes", attr]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _window(state: Path, names: Sequence[str], extra_pids: dict[str, int], seconds: float,
            counter: Callable[[], float]) -> dict[str, Any]:
    """CPU of each process and the counter's rate over ``seconds``."""
    procs = {**{n: p for n, p in pids(state).items() if n in names}, **extra_pids}
    cpu0 = {n: cpu_s(p) for n, p in procs.items()}
    c0, t0 = counter(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = counter(), time.monotonic()
    dt = t1 - t0
    cpu = {n: round((cpu_s(p) - cpu0[n]) / dt, 3) for n, p in procs.items()}
    rss = {n: round(rss_mb(p), 1) for n, p in procs.items()}
    return {"rate": (c1 - c0) / dt, "seconds": round(dt, 1), "cpu_cores": cpu, "rss_mb": rss}


# --- saturation -----------------------------------------------------------------------------------


def saturation(seconds: float) -> list[dict[str, Any]]:
    out = []
    p1 = collector_ring.processing_ports(1)
    for percent in (100.0, 10.0):
        env = {"VOXPULSE_TRACE_SAMPLING_PERCENT": f"{percent:g}", "VOXPULSE_TRACE_DECISION_AFTER_ROOT": "2s"}
        with tiered_stack(1, env, ["jaeger", "otelcol-1"], {"otelcol-1": {"GOMAXPROCS": "1"}}) as state:
            gen = telemetrygen(p1.endpoint, seconds + 10, workers=6)
            try:
                time.sleep(5)  # warm-up: queues and the tail sampler's memory fill to a steady state
                own = f"http://127.0.0.1:{p1.telemetry}/metrics"
                w = _window(state, ["otelcol-1", "jaeger"], {"telemetrygen": gen.pid}, seconds,
                            lambda: total(scrape(own), "otelcol_receiver_accepted_spans"))
                m = scrape(own)
            finally:
                gen.send_signal(signal.SIGINT)
                gen.wait(30)
        core = w["cpu_cores"]["otelcol-1"]
        out.append({
            "sampling_percent": percent,
            "spans_per_s": round(w["rate"]),
            "collector_cpu_cores": core,
            "spans_per_s_per_core": round(w["rate"] / core) if core else 0,
            "saturated": core >= SATURATED_CORE,
            "refused_spans": total(m, "otelcol_receiver_refused_spans"),
            "traces_held": total(m, "otelcol_processor_tail_sampling_sampling_traces_on_memory"),
            "export_queue_spans": total(m, "otelcol_exporter_queue_size"),
            **{k: w[k] for k in ("seconds", "cpu_cores", "rss_mb")},
        })
    return out


# --- scaling --------------------------------------------------------------------------------------


def scaling(seconds: float) -> list[dict[str, Any]]:
    out = []
    env = {"VOXPULSE_TRACE_SAMPLING_PERCENT": "10", "VOXPULSE_TRACE_DECISION_AFTER_ROOT": "2s"}
    for n in (1, 2, 3):
        comps = ["jaeger", *(f"otelcol-{k}" for k in range(1, n + 1)), "otelcol"]
        with tiered_stack(n, env, comps) as state:
            gen = telemetrygen("127.0.0.1:4317", seconds + 10, workers=6)
            own = [f"http://127.0.0.1:{collector_ring.processing_ports(k).telemetry}/metrics" for k in range(1, n + 1)]
            try:
                time.sleep(5)
                w = _window(state, comps, {"telemetrygen": gen.pid}, seconds,
                            lambda: sum(total(scrape(u), "otelcol_receiver_accepted_spans") for u in own))
            finally:
                gen.send_signal(signal.SIGINT)
                gen.wait(30)
        busy = sum(w["cpu_cores"].values())
        out.append({"collectors": n, "spans_per_s": round(w["rate"]), "machine_cpu_cores_busy": round(busy, 2),
                    **{k: w[k] for k in ("seconds", "cpu_cores", "rss_mb")}})
    return out


# --- fault ----------------------------------------------------------------------------------------


class _Counting:
    """Wraps the OTLP exporter: counts the spans of every batch the collector acknowledged."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.acked = 0
        self.failed = 0
        self.lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        result = self.inner.export(spans)
        with self.lock:
            if result is SpanExportResult.SUCCESS:
                self.acked += len(spans)
            else:
                self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _jaeger_span_count(http: httpx.Client, trace_id: str) -> int:
    r = http.get(f"http://127.0.0.1:16686/api/traces/{trace_id}")
    if r.status_code == 404:
        return 0
    r.raise_for_status()
    data = r.json().get("data") or []
    return sum(len(t.get("spans", [])) for t in data)


def fault(seconds: float, rate_traces: float = 120.0, spans_per_trace: int = 6) -> dict[str, Any]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    env = {"VOXPULSE_TRACE_SAMPLING_PERCENT": "100", "VOXPULSE_TRACE_DECISION_AFTER_ROOT": "2s"}
    with tiered_stack(3, env, ["jaeger", "otelcol-1", "otelcol-2", "otelcol-3", "otelcol", "collector-ring"]) as state:
        jaeger0 = total(scrape(JAEGER_METRICS), "otelcol_receiver_accepted_spans")
        exporter = _Counting(OTLPSpanExporter(endpoint="http://127.0.0.1:4318/v1/traces", timeout=10))
        provider = TracerProvider(resource=Resource.create({"service.name": f"vp-fault-{uuid.uuid4().hex[:6]}"}))
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=200_000, schedule_delay_millis=200))  # type: ignore[arg-type]
        tracer = provider.get_tracer("bench.fault")
        traces: dict[str, tuple[float, int]] = {}  # trace id -> (start, spans)
        lb_samples: list[float] = []
        stop = threading.Event()

        def watch_lb() -> None:  # the LB's counter resets at each reload: sample it and sum the increases
            while not stop.is_set():
                try:
                    lb_samples.append(total(scrape(LB_METRICS), "otelcol_receiver_accepted_spans"))
                except httpx.HTTPError:
                    pass
                stop.wait(0.2)

        watcher = threading.Thread(target=watch_lb, daemon=True)
        watcher.start()
        kill_at = seconds / 3
        killed_at: float | None = None
        t0 = time.monotonic()
        n = 0
        while (now := time.monotonic()) - t0 < seconds:
            if killed_at is None and now - t0 >= kill_at:
                stack.kill("otelcol-2", state_dir=state)
                killed_at = time.time()
            with tracer.start_as_current_span("call") as root:
                for i in range(spans_per_trace - 1):
                    with tracer.start_as_current_span(f"step-{i}", attributes={"call_id": f"fault-{n}"}):
                        pass
            traces[format(root.get_span_context().trace_id, "032x")] = (time.time(), spans_per_trace)
            n += 1
            time.sleep(max(0.0, t0 + n / rate_traces - time.monotonic()))
        provider.force_flush(30_000)
        provider.shutdown()
        ring = httpx.get(f"http://{collector_ring.LISTEN}/ring", timeout=5).json()
        # every decision made (2 s after each root) and exported: Jaeger's count settles
        last, settled = -1.0, time.monotonic()
        while time.monotonic() - settled < 6 and time.monotonic() - t0 < seconds + 90:
            now_count = total(scrape(JAEGER_METRICS), "otelcol_receiver_accepted_spans")
            if now_count != last:
                last, settled = now_count, time.monotonic()
            time.sleep(1)
        stop.set()
        watcher.join(5)
        stored_counter = int(last - jaeger0)
        lb_accepted = int(sum(max(0.0, b - a) if b >= a else b for a, b in zip(lb_samples, lb_samples[1:], strict=False))
                          + (lb_samples[0] if lb_samples else 0))
        with httpx.Client(timeout=10) as http:
            stored_by_trace = {tid: _jaeger_span_count(http, tid) for tid in traces}
    sent = sum(s for _, s in traces.values())
    missing = {tid: traces[tid][1] - got for tid, got in stored_by_trace.items() if got < traces[tid][1]}
    lost = sum(missing.values())
    starts = [traces[t][0] - (killed_at or 0) for t in missing]
    return {
        "seconds": seconds, "traces": len(traces), "spans_sent": sent, "spans_acknowledged": exporter.acked,
        "spans_refused_to_the_agent": exporter.failed, "lb_receiver_accepted": lb_accepted,
        "jaeger_stored_counter": stored_counter, "stored_by_trace": sum(stored_by_trace.values()),
        "lost": exporter.acked - stored_counter, "lost_by_trace": lost,
        "traces_with_lost_spans": len(missing), "traces_wholly_lost": sum(1 for t in missing if stored_by_trace[t] == 0),
        "lost_trace_start_s_from_kill": [round(min(starts), 1), round(max(starts), 1)] if starts else [],
        "ring_after": ring["ring"], "ring_changes": ring["changes"],
    }


# --- growth ---------------------------------------------------------------------------------------


async def _calls(n: int, per_call_process: bool, service: str, rng: random.Random) -> None:
    import telemetry
    from telemetry.semconv import CallOutcome, Stage

    @telemetry.trace_stt(provider="deepgram", model="nova-3")
    async def stt() -> str:
        return "шини"

    @telemetry.trace_llm(provider="openai", model="gpt-4o-mini")
    async def llm() -> str:
        telemetry.metrics.record_time_to_first_chunk(Stage.LLM, rng.uniform(0.2, 1.5), provider="openai",
                                                     model="gpt-4o-mini")
        return "так"

    @telemetry.trace_tts(provider="cartesia", model="sonic")
    async def tts(text: str) -> bytes:
        return b"\0"

    @telemetry.trace_tool
    async def find_tyres(size: str) -> str:
        return "ok"

    def configure() -> telemetry.Telemetry:
        return telemetry.configure(service_name=service, exporter="otlp", endpoint="http://127.0.0.1:4318",
                                   metrics_exporter="otlp", metric_export_interval_s=10, setup_logs=False)

    handle = None if per_call_process else configure()
    for i in range(n):
        if per_call_process:
            handle = configure()  # a fresh SDK: a new service.instance.id, as in a new job process
        async with telemetry.call(call_id=f"growth-{uuid.uuid4().hex[:12]}") as call:
            for turn in range(3):
                call.next_turn()
                await stt()
                if turn == 0:
                    await find_tyres("205/55 R16")
                await tts(await llm())
                telemetry.metrics.record_time_to_first_word(rng.uniform(0.5, 2.5))
            call.set_outcome(rng.choice([CallOutcome.RESOLVED_BY_BOT, CallOutcome.TRANSFERRED]))
        if per_call_process and handle is not None:
            await handle.shutdown(timeout=5)  # the job process exits: its last export
        if i % 50 == 49:
            await asyncio.sleep(0)
    if handle is not None and not per_call_process:
        await handle.flush(timeout=10)
        await handle.shutdown(timeout=10)


def _prom(http: httpx.Client, query: str) -> float:
    r = http.get(f"{PROM}/api/v1/query", params={"query": query})
    r.raise_for_status()
    res = r.json()["data"]["result"]
    return sum(float(x["value"][1]) for x in res)


def growth(levels: Sequence[int] = (10, 100, 1000)) -> list[dict[str, Any]]:
    out = []
    env = {"VOXPULSE_TRACE_SAMPLING_PERCENT": "10", "VOXPULSE_TRACE_DECISION_AFTER_ROOT": "2s",
           "VOXPULSE_SPANMETRICS_FLUSH": "5s"}
    os.environ["VOXPULSE_TRACE_SAMPLING_PERCENT"] = "10"
    for per_call_process in (False, True):
        with tiered_stack(2, env) as state, httpx.Client(timeout=10) as http:
            service = f"vp-growth-{uuid.uuid4().hex[:6]}"
            rng = random.Random(7)
            done = 0
            head0 = _prom(http, "prometheus_tsdb_head_series")
            for level in levels:
                asyncio.run(_calls(level - done, per_call_process, service, rng))
                done = level
                time.sleep(20)  # span-metric flush (5 s) + a scrape (15 s): every series exposed
                exposed = {
                    job: _prom(http, f'sum(scrape_samples_scraped{{job="{job}"}})')
                    for job in ("otel-collector", "otel-collector-spans", "otel-collector-internal")
                }
                mem = {n: round(rss_mb(p), 1) for n, p in pids(state).items() if n.startswith("otelcol")}
                out.append({
                    "agent": "one process per call" if per_call_process else "one process",
                    "calls": level,
                    "series_exposed": {k: int(v) for k, v in exposed.items()},
                    "series_exposed_total": int(sum(exposed.values())),
                    "agent_instances": int(_prom(http, f'count(count by (instance) (voice_calls_total{{service_name="{service}"}}))')),
                    "prometheus_head_series_added": int(_prom(http, "prometheus_tsdb_head_series") - head0),
                    "collector_rss_mb": mem,
                })
    return out


# --- report ---------------------------------------------------------------------------------------


def run(parts: Sequence[str], seconds: float) -> dict[str, Any]:
    result: dict[str, Any] = {"parts": list(parts), "cores": os.cpu_count()}
    if "saturation" in parts:
        result["saturation"] = saturation(seconds)
    if "scaling" in parts:
        result["scaling"] = scaling(seconds)
    if "fault" in parts:
        result["fault"] = fault(seconds)
    if "growth" in parts:
        result["growth"] = growth()
    result["verdict"] = _verdict(result)
    return result


def _verdict(r: dict[str, Any]) -> str:
    notes = []
    for s in r.get("saturation", []):
        notes.append(f"one processing collector, {s['sampling_percent']:g} % sampling: {s['spans_per_s_per_core']} "
                     f"spans/s per core ({'saturated' if s['saturated'] else 'NOT saturated: load-limited'})")
    if r.get("scaling"):
        rates = ", ".join(f"{x['collectors']}: {x['spans_per_s']}" for x in r["scaling"])
        notes.append(f"spans/s by processing collectors ({rates}) on {r['cores']} cores")
    if f := r.get("fault"):
        match = "matches" if f["lost"] == f["lost_by_trace"] else "DOES NOT match"
        notes.append(f"collector killed: {f['lost']} of {f['spans_acknowledged']} acknowledged spans lost "
                     f"(Jaeger's counter), {match} the {f['lost_by_trace']} missing span by span")
    if g := r.get("growth"):
        for shape in ("one process", "one process per call"):
            rows = [x for x in g if x["agent"] == shape]
            if rows:
                flat = rows[-1]["series_exposed_total"] <= rows[0]["series_exposed_total"] * 1.1
                notes.append(f"series x1->x100 calls, {shape}: {rows[0]['series_exposed_total']} -> "
                             f"{rows[-1]['series_exposed_total']} ({'flat' if flat else 'GROWS'})")
    return "; ".join(notes)


def to_markdown(r: dict[str, Any]) -> str:
    out: list[str] = []
    if r.get("saturation"):
        out += ["One processing collector on one core (`GOMAXPROCS=1`), every shipped processor, telemetrygen at",
                "its OTLP port unthrottled (8-span traces, voice-like attributes with a phone number to redact):", "",
                "| sampling | spans/s | collector CPU (cores) | spans/s per core | saturated | telemetrygen CPU | Jaeger CPU | collector RSS MB |",
                "|---:|---:|---:|---:|---|---:|---:|---:|"]
        for s in r["saturation"]:
            c = s["cpu_cores"]
            out.append(f"| {s['sampling_percent']:g} % | {s['spans_per_s']} | {s['collector_cpu_cores']} | "
                       f"{s['spans_per_s_per_core']} | {'yes' if s['saturated'] else 'no'} | {c.get('telemetrygen', 0)} | "
                       f"{c.get('jaeger', 0)} | {s['rss_mb'].get('otelcol-1', 0)} |")
        out.append("")
    if r.get("scaling"):
        out += ["The tier on this machine: telemetrygen at the load-balancing collector, 10 % sampling, 1 to 3",
                "processing collectors; CPU in cores per process (the machine has "
                f"{r['cores']}):", "",
                "| processing collectors | spans/s | load-balancing | processing (each) | Jaeger | telemetrygen | busy cores |",
                "|---:|---:|---:|---|---:|---:|---:|"]
        for x in r["scaling"]:
            c = x["cpu_cores"]
            each = ", ".join(str(c[k]) for k in sorted(c) if k.startswith("otelcol-"))
            out.append(f"| {x['collectors']} | {x['spans_per_s']} | {c.get('otelcol', 0)} | {each} | {c.get('jaeger', 0)} | "
                       f"{c.get('telemetrygen', 0)} | {x['machine_cpu_cores_busy']} |")
        out.append("")
    if f := r.get("fault"):
        out += [f"Processing collector 2 of 3 SIGKILLed a third into a {f['seconds']:g} s load of {f['traces']} traces "
                "(100 % sampling):", "",
                "| spans sent | acknowledged by the load-balancing tier | its receivers' counter | stored (Jaeger's counter) "
                "| stored (span by span) | lost = acknowledged - stored | lost span by span | traces touched | traces wholly lost |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                f"| {f['spans_sent']} | {f['spans_acknowledged']} | {f['lb_receiver_accepted']} | {f['jaeger_stored_counter']} | "
                f"{f['stored_by_trace']} | {f['lost']} | {f['lost_by_trace']} | {f['traces_with_lost_spans']} | "
                f"{f['traces_wholly_lost']} |", "",
                f"The lost spans belong to traces started {f['lost_trace_start_s_from_kill']} s from the kill; the ring "
                f"changed {f['ring_changes']} time(s) and ended as {f['ring_after']}.", ""]
    if g := r.get("growth"):
        out += ["Series and memory as the call volume grows (2 processing collectors, 10 % sampling):", "",
                "| agent | calls | series exposed (SDK / span metrics / collectors' own) | agent instances | Prometheus head series added | collector RSS MB |",
                "|---|---:|---|---:|---:|---|"]
        for x in g:
            e = x["series_exposed"]
            mem = ", ".join(f"{k} {v}" for k, v in sorted(x["collector_rss_mb"].items()))
            out.append(f"| {x['agent']} | {x['calls']} | {x['series_exposed_total']} ({e.get('otel-collector', 0)} / "
                       f"{e.get('otel-collector-spans', 0)} / {e.get('otel-collector-internal', 0)}) | "
                       f"{x['agent_instances']} | {x['prometheus_head_series_added']} | {mem} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--seconds", type=float, default=30.0, help="measurement window per run")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    parts = [x for x in args.parts.split(",") if x]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    result = run(parts, args.seconds)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(to_markdown(result))
    print(result["verdict"], file=sys.stderr)


if __name__ == "__main__":
    main()
