"""Freshness through the real pipeline, the previous settings against the shipped ones in one run.

For each configuration this starts the collector, Jaeger and Prometheus (voxpulse_console/stack/,
in a temporary state folder, from a copy of the config files: the shipped ones as committed, or
the same files set back to the previous intervals) and measures, through the library's real export
path (``telemetry.configure``: batch processor, 1 s schedule delay, OTLP/HTTP to the collector):

* **Prometheus freshness**: span end -> the span-metric count of that call's series incremented in
  a Prometheus query (p50/p95/max). The clock starts when the call's root span ends; Prometheus and
  the trace store are polled every 0.2 s; calls follow one another at a random pause of 0 to one
  flush interval, so they land at different phases of the flush and scrape timers.
* **Trace store**: the same call found by call_id in Jaeger (voxpulse_console.tracestore).
* **Exemplars**: the exemplars Prometheus stored for those calls' histograms; share of the calls
  with one, and share of exemplar trace ids that Jaeger holds (the exemplar opens a stored trace).
* **Alert latency**: a breach (6 STT errors in one call, after one error that made the series exist)
  -> the alert firing in Prometheus (/api/v1/alerts). The alert is VoiceStageErrors's own expression,
  grouped by provider so that each trial has its own alert, in VoiceStageErrors's rule group (same
  evaluation interval and phase); the real VoiceStageErrors is timed on the first trial too.
  Target: the alert's ``for:`` + 15 s.
* **Cost**: over a 60 s window of steady load (4 calls/s, 5 spans each): the collector's and
  Prometheus's CPU seconds per minute (/proc), samples appended per second, Prometheus's head series
  before and after and series created (churn), the series the collector exposes.
* **Machine**: load average and the CPU of other processes (all busy CPU minus this benchmark's own
  processes) during each configuration; above 0.25 cores the figures are marked busy.

    python -m bench.bench_freshness [--samples 15] [--alert-trials 3] [--json bench/results/freshness.json]

Results (small JSON, committed) are in bench/results/freshness.json; docs/benchmarks.md's section is
generated from it (``python -m bench --report-only``) and tests/bench/test_results.py checks it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench._machine import BUSY_OTHER_CORES, Machine, proc_cpu_s
from telemetry._env import OTLP_HTTP_ENDPOINT
from voxpulse_console.settings import DEFAULT_PROMETHEUS_URL

PROM = DEFAULT_PROMETHEUS_URL
COLLECTOR = OTLP_HTTP_ENDPOINT
COLLECTOR_METRICS = "http://127.0.0.1:8889/metrics"
PROM_TARGET_P95_S = 10.0
ALERT_EXTRA_S = 15.0  # a breach fires within its for: + this
STORE_TARGET_P95_S = 5.0
DEADLINE_S = 90.0
COMPONENTS = ["jaeger", "otelcol", "prometheus"]
# The settings before issue 23 (item 4): a 20 s flush behind a 15 s scrape, rules every 15 s, 1 s batch.
PREVIOUS = {"flush": "20s", "scrape": "15s", "rule_interval": "15s", "batch": "1s"}
ALERT = "VoiceStageErrors"
BENCH_ALERT = "BenchStageErrors"
BREACH_ERRORS = 6  # VoiceStageErrors: > 5 in 10 minutes


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    if not m:
        raise ValueError(f"not a duration: {duration}")
    return float(m[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m[2]]


# --- the configurations ---------------------------------------------------------------------------


def settings(tree: Path) -> dict[str, str]:
    """The freshness settings of a config tree: span-metrics flush, the collector's scrape interval,
    the evaluation interval of VoiceStageErrors's group, the collector's batch timeout."""
    collector = (tree / "otel-collector" / "config.yaml").read_text(encoding="utf-8")
    flush = re.search(r"VOXPULSE_SPANMETRICS_FLUSH:-(\w+)\}", collector)
    batch = yaml.safe_load(collector)["processors"]["batch"]["timeout"]
    prom = yaml.safe_load((tree / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "otel-collector")
    group = _alert_group(tree)[1]
    return {"flush": flush[1] if flush else "?",
            "scrape": job.get("scrape_interval", prom["global"]["scrape_interval"]),
            "rule_interval": group.get("interval", prom["global"].get("evaluation_interval", "1m")),
            "batch": str(batch)}


def _alert_group(tree: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """(rule file, group, rule) of VoiceStageErrors in ``tree``."""
    for path in sorted((tree / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == ALERT:
                    return path, group, rule
    raise LookupError(f"no {ALERT} rule under {tree}/prometheus/rules")


def _copy_tree(src: Path, dst: Path, previous: bool) -> Path:
    """A config tree for the stack: the shipped files, or (``previous``) the same files set back to
    :data:`PREVIOUS`; either way with the bench's per-trial copy of VoiceStageErrors in its group."""
    for name in ("otel-collector", "prometheus", "jaeger"):
        shutil.copytree(src / name, dst / name)
    if previous:
        cfg = dst / "otel-collector" / "config.yaml"
        text = cfg.read_text(encoding="utf-8")
        text = re.sub(r"VOXPULSE_SPANMETRICS_FLUSH:-\w+\}", f"VOXPULSE_SPANMETRICS_FLUSH:-{PREVIOUS['flush']}}}", text)
        text, n = re.subn(r"(\n  batch:\n(?:    .*\n)*?    timeout: )\S+", rf"\g<1>{PREVIOUS['batch']}", text)
        assert n == 1, "batch timeout not found in otel-collector/config.yaml"
        cfg.write_text(text, encoding="utf-8")
        prom_path = dst / "prometheus" / "prometheus.yml"
        prom = yaml.safe_load(prom_path.read_text(encoding="utf-8"))
        prom["global"]["evaluation_interval"] = PREVIOUS["rule_interval"]
        for job in prom["scrape_configs"]:
            if job["job_name"] in ("otel-collector", "otel-collector-spans"):
                job["scrape_interval"] = PREVIOUS["scrape"]
                job.pop("scrape_timeout", None)
        prom_path.write_text(yaml.safe_dump(prom, sort_keys=False), encoding="utf-8")
        for path in (dst / "prometheus" / "rules").glob("*.yml"):
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            for group in doc["groups"]:
                group.pop("interval", None)
            path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    path, _group, rule = _alert_group(dst)
    expr = " ".join(str(rule["expr"]).split())
    stages = 'voice_stage=~"stt|tts|llm"'
    bench_expr = expr.replace(stages, stages + ', gen_ai_provider_name=~"bench-alert-.+"')
    bench_expr = bench_expr.replace("sum(", "sum by (gen_ai_provider_name) (", 1)
    assert bench_expr.count("bench-alert") == 1 and "sum by" in bench_expr, expr
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        if any(r.get("alert") == ALERT for r in group["rules"]):
            group["rules"].append({"alert": BENCH_ALERT, "expr": bench_expr, "for": rule.get("for", "0s"),
                                   "labels": {"severity": "none", "bench": "freshness"}})
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return dst


# --- the calls ------------------------------------------------------------------------------------


async def _one_call(call_id: str, stt_errors: int = 0, provider: str = "deepgram") -> tuple[float, str]:
    """One simulated call (root, turn, STT, LLM, TTS spans; ``stt_errors`` more STT spans that fail).
    Returns (time its root span ended, trace id)."""
    from opentelemetry import trace

    import telemetry

    @telemetry.trace_stt(provider=provider, model="nova-3")
    async def stt() -> str:
        await asyncio.sleep(0.02)
        return "шини 205/55 R16"

    @telemetry.trace_stt(provider=provider, model="nova-3")
    async def stt_fails() -> str:
        raise ConnectionError("stt provider unreachable (bench)")

    @telemetry.trace_llm(provider="openai", model="gpt-4o-mini")
    async def llm():  # type: ignore[no-untyped-def]
        for tok in ("Маємо ", "шини."):
            await asyncio.sleep(0.01)
            yield tok

    @telemetry.trace_tts(provider="cartesia", model="sonic")
    async def tts(text: str) -> bytes:
        await asyncio.sleep(0.02)
        return b"\0"

    @telemetry.traced(name="turn")
    async def turn() -> None:
        for _ in range(stt_errors):
            with contextlib.suppress(ConnectionError):
                await stt_fails()
        await stt()
        answer = "".join([t async for t in llm()])
        await tts(answer)

    async with telemetry.call(call_id) as call:
        trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
        call.next_turn()
        await turn()
    return time.time(), trace_id  # the root span has ended


def _prom_value(http: httpx.Client, query: str) -> float | None:
    try:
        r = http.get(f"{PROM}/api/v1/query", params={"query": query}).json()["data"]["result"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None
    return float(r[0]["value"][1]) if r else None


def _wait(cond: Callable[[], bool], deadline_s: float = DEADLINE_S, step_s: float = 0.2) -> float | None:
    """Seconds until ``cond()`` held (polled every ``step_s``), None past the deadline."""
    t0 = time.time()
    while time.time() - t0 < deadline_s:
        if cond():
            return time.time() - t0
        time.sleep(step_s)
    return None


# --- CPU and the machine ----------------------------------------------------------------------------


# --- one configuration ------------------------------------------------------------------------------


def _cost_window(http: httpx.Client, runner: asyncio.Runner, pids: dict[str, int | None], seconds: float,
                 calls_per_s: float, flush: str) -> dict[str, Any]:
    def prom_metric(name: str) -> float | None:
        # Prometheus's own /metrics (not a query: a 15 s self-scrape is too coarse for the window)
        try:
            text = http.get(f"{PROM}/metrics").text
        except httpx.HTTPError:
            return None
        got = re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE)  # summed over labels
        return sum(float(v) for v in got) if got else None

    head0 = prom_metric("prometheus_tsdb_head_series")
    created0 = prom_metric("prometheus_tsdb_head_series_created_total")
    appended0 = prom_metric("prometheus_tsdb_head_samples_appended_total")
    cpu0 = {k: proc_cpu_s(p) for k, p in pids.items()}
    t0 = time.time()
    n = 0
    while time.time() - t0 < seconds:
        runner.run(_one_call(f"load-{uuid.uuid4().hex[:12]}"))
        n += 1
        ahead = t0 + n / calls_per_s - time.time()
        if ahead > 0:
            time.sleep(ahead)
    wall = time.time() - t0
    cpu = {k: round((proc_cpu_s(p) - cpu0[k]) * 60 / wall, 2) for k, p in pids.items()}
    time.sleep(_seconds(flush))  # the last flush scraped before the series are counted
    head1 = prom_metric("prometheus_tsdb_head_series")
    created1 = prom_metric("prometheus_tsdb_head_series_created_total")
    appended1 = prom_metric("prometheus_tsdb_head_samples_appended_total")
    try:
        exposed = sum(1 for line in http.get(COLLECTOR_METRICS).text.splitlines()
                      if line and not line.startswith("#"))
    except httpx.HTTPError:
        exposed = None
    return {"seconds": round(wall, 1), "calls": n, "spans_per_s": round(5 * n / wall, 1),
            "cpu_s_per_min": cpu,
            "samples_appended_per_s": None if appended0 is None or appended1 is None
            else round((appended1 - appended0) / (time.time() - t0), 1),  # incl. the wait for the last flush
            "head_series_before": head0, "head_series_after": head1,
            "series_created": None if created0 is None or created1 is None else created1 - created0,
            "collector_exposed_samples": exposed}


def _exemplars(http: httpx.Client, runner: asyncio.Runner, store: Any, service: str, t0: float,
               calls: dict[str, str]) -> dict[str, Any]:
    """The exemplars Prometheus holds for ``service``'s histograms since ``t0``: which of ``calls``
    (trace id -> call id) have one, and whether Jaeger holds each exemplar's trace."""
    q = f'traces_span_metrics_duration_milliseconds_bucket{{service_name="{service}"}}'
    try:
        data = http.get(f"{PROM}/api/v1/query_exemplars",
                        params={"query": q, "start": t0 - 60, "end": time.time() + 60}).json()["data"]
    except (httpx.HTTPError, KeyError, ValueError):
        data = []
    ids = {e["labels"].get("trace_id", "") for s in data for e in s.get("exemplars", [])} - {""}
    stored = 0
    for tid in sorted(ids):
        with contextlib.suppress(Exception):  # a trace the store cannot return counts as not stored
            if runner.run(store.trace(tid)) is not None:
                stored += 1
    with_exemplar = sum(1 for tid in calls if tid in ids)
    return {"exemplar_trace_ids": len(ids), "stored_in_trace_store": stored,
            "calls": len(calls), "calls_with_exemplar": with_exemplar}


def _alert_firing(http: httpx.Client, name: str, provider: str | None = None) -> bool:
    try:
        alerts = http.get(f"{PROM}/api/v1/alerts").json()["data"]["alerts"]
    except (httpx.HTTPError, KeyError, ValueError):
        return False
    return any(a["labels"].get("alertname") == name and a["state"] == "firing"
               and (provider is None or a["labels"].get("gen_ai_provider_name") == provider) for a in alerts)


def _measure(label: str, tree: Path, state: Path, samples: int, store_samples: int, alert_trials: int,
             cost_s: float) -> dict[str, Any]:
    import telemetry
    from voxpulse_console import stack, tracestore

    cfg = settings(tree)
    flush_s = _seconds(cfg["flush"])
    for_s = _seconds(str(_alert_group(tree)[2].get("for", "0s")))
    os.environ["VOXPULSE_CONFIG_DIR"] = str(tree)
    stack.up(COMPONENTS, state_dir=state, wait_s=120, collectors=0)
    pids = {name: stack.pid(name, state_dir=state) for name in ("otelcol", "prometheus")}
    machine = Machine(lambda: [stack.pid(n, state_dir=state) for n in COMPONENTS])
    service = f"vp-fresh-{uuid.uuid4().hex[:8]}"
    handle = telemetry.configure(service_name=service, exporter="otlp", endpoint=COLLECTOR,
                                 protocol="http/protobuf", metrics_exporter="none", setup_logs=False)
    runner = asyncio.Runner()
    store = tracestore.from_env()
    rows: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    try:
        with httpx.Client(timeout=5) as http:
            query = f'sum(traces_span_metrics_calls_total{{service_name="{service}",span_name="call"}})'
            # warm-up, not counted: the first call of a just-started stack waits for the first scrape
            # of a new target and the first flush of new series (up to ~50 s with the previous settings)
            t_warm, _tid = runner.run(_one_call(f"warmup-{uuid.uuid4().hex[:8]}"))
            _wait(lambda: (_prom_value(http, query) or 0) >= 1)
            warmup_s = round(time.time() - t_warm, 2)
            base = _prom_value(http, query) or 0.0
            t_first = time.time()
            traces: dict[str, str] = {}
            for i in range(samples + store_samples):
                with_prom = i < samples
                time.sleep(random.uniform(0, flush_s if with_prom else 2.0))  # a random phase of the timers
                call_id = f"fresh-{uuid.uuid4().hex[:12]}"
                t_end, trace_id = runner.run(_one_call(call_id))
                traces[trace_id] = call_id
                prom_s = store_s = None
                while (store_s is None or (with_prom and prom_s is None)) and time.time() - t_end < DEADLINE_S:
                    now = time.time()
                    if with_prom and prom_s is None:
                        v = _prom_value(http, query)
                        if v is not None and v >= base + i + 1:
                            prom_s = now - t_end
                    if store_s is None:
                        try:
                            if runner.run(store.traces_for_call(call_id, lookback_s=600)):
                                store_s = now - t_end
                        except tracestore.TraceStoreError:
                            pass
                    time.sleep(0.2)
                row: dict[str, Any] = {"sample": i + 1, "call_id": call_id, "trace_id": trace_id,
                                       "prometheus_s": None if prom_s is None else round(prom_s, 2),
                                       "store_s": None if store_s is None else round(store_s, 2)}
                if not with_prom:
                    row["store_only"] = True
                rows.append(row)
                print(json.dumps({"config": label, **row}), flush=True)
            time.sleep(_seconds(cfg["scrape"]) + flush_s)  # the last flush's exemplars scraped
            sampled = {r["trace_id"]: r["call_id"] for r in rows if not r.get("store_only")}
            exemplars = _exemplars(http, runner, store, service, t_first, sampled)
            for k in range(alert_trials):
                provider = f"bench-alert-{uuid.uuid4().hex[:6]}"
                series = (f'sum(traces_span_metrics_calls_total{{gen_ai_provider_name="{provider}",'
                          'status_code="STATUS_CODE_ERROR"})')
                runner.run(_one_call(f"prime-{uuid.uuid4().hex[:8]}", stt_errors=1, provider=provider))
                primed = _wait(lambda s=series: (_prom_value(http, s) or 0) >= 1)  # type: ignore[misc]
                time.sleep(random.uniform(0, flush_s))
                t_breach, _tid = runner.run(_one_call(f"breach-{uuid.uuid4().hex[:8]}", stt_errors=BREACH_ERRORS,
                                                      provider=provider))
                real_first = k == 0 and not _alert_firing(http, ALERT)
                seen: dict[str, float | None] = {"bench": None, "real": None} if real_first else {"bench": None}
                while time.time() - t_breach < DEADLINE_S and any(v is None for v in seen.values()):
                    if seen["bench"] is None and _alert_firing(http, BENCH_ALERT, provider):
                        seen["bench"] = time.time() - t_breach
                    if real_first and seen["real"] is None and _alert_firing(http, ALERT):
                        seen["real"] = time.time() - t_breach
                    time.sleep(0.2)
                trial = {"trial": k + 1, "primed_s": None if primed is None else round(primed, 2),
                         "breach_to_firing_s": None if seen["bench"] is None else round(seen["bench"], 2)}
                if real_first:
                    trial[f"{ALERT}_breach_to_firing_s"] = None if seen["real"] is None else round(seen["real"], 2)
                alerts.append(trial)
                print(json.dumps({"config": label, "alert": trial}), flush=True)
            # last: its calls would crowd the samples' exemplars out of a flush (5 per series)
            cost = _cost_window(http, runner, pids, cost_s, 4.0, cfg["flush"])
    finally:
        runner.run(store.aclose())
        runner.close()
        handle.shutdown_sync(timeout=5)
        load = machine.done()
        stack.down(state_dir=state)
        os.environ.pop("VOXPULSE_CONFIG_DIR", None)
    prom = [r["prometheus_s"] for r in rows if not r.get("store_only")]
    fired = [a["breach_to_firing_s"] for a in alerts]
    return {"config": label, "settings": cfg, "rows": rows, "alerts": alerts,
            "prometheus_s": _stats(prom), "store_s": _stats([r["store_s"] for r in rows]),
            "alert_s": _stats(fired), "alert_for_s": for_s, "warmup_prometheus_s": warmup_s,
            "exemplars": exemplars, "cost": cost, "machine": load}


# --- summary ------------------------------------------------------------------------------------------


def _p95(got: list[float]) -> float | None:
    if not got:
        return None
    s = sorted(got)
    return s[min(len(s) - 1, max(0, round(0.95 * len(s)) - 1))]


def _stats(values: list[float | None]) -> dict[str, float | int | None]:
    got = [v for v in values if v is not None]
    return {"median": round(statistics.median(got), 2) if got else None, "p95": _p95(got),
            "min": min(got) if got else None, "max": max(got) if got else None,
            "samples": len(values), "missing": len(values) - len(got)}


def _ratio(new: float | None, old: float | None) -> float | None:
    return None if new is None or not old else round(new / old, 2)


def verdict(result: dict[str, Any]) -> str:
    """The verdict line, from the result's numbers (the shipped configuration is the last one)."""
    new = result["configs"][-1]
    p, a, s, ex = new["prometheus_s"], new["alert_s"], new["store_s"], new["exemplars"]
    prom_ok = p["p95"] is not None and p["missing"] == 0 and p["p95"] <= PROM_TARGET_P95_S
    alert_limit = new["alert_for_s"] + ALERT_EXTRA_S
    alert_ok = a["max"] is not None and a["missing"] == 0 and a["max"] <= alert_limit
    ex_ok = ex["calls_with_exemplar"] == ex["calls"] and ex["stored_in_trace_store"] == ex["exemplar_trace_ids"] > 0
    store_ok = s["p95"] is not None and s["missing"] == 0 and s["p95"] <= STORE_TARGET_P95_S
    ok = prom_ok and alert_ok and ex_ok and store_ok
    parts = [
        f"Prometheus {'met' if prom_ok else 'MISSED'} (p50 {p['median']} s, p95 {p['p95']} s, max {p['max']} s, "
        f"target p95 <= {PROM_TARGET_P95_S:.0f} s)",
        f"alert {'met' if alert_ok else 'MISSED'} (breach -> firing max {a['max']} s over {a['samples']} trials, "
        f"target for: + {ALERT_EXTRA_S:.0f} s = {alert_limit:.0f} s)",
        f"exemplars {'met' if ex_ok else 'MISSED'} ({ex['calls_with_exemplar']}/{ex['calls']} calls have one; "
        f"{ex['stored_in_trace_store']}/{ex['exemplar_trace_ids']} exemplar traces stored in the trace store)",
        f"trace store {'met' if store_ok else 'MISSED'} (p95 {s['p95']} s, target <= {STORE_TARGET_P95_S:.0f} s)",
    ]
    if len(result["configs"]) > 1:
        old = result["configs"][0]
        c_new, c_old = new["cost"]["cpu_s_per_min"], old["cost"]["cpu_s_per_min"]
        parts.append(
            f"cost against the previous settings: collector CPU x{_ratio(c_new.get('otelcol'), c_old.get('otelcol'))}, "
            f"Prometheus CPU x{_ratio(c_new.get('prometheus'), c_old.get('prometheus'))}, samples appended "
            f"x{_ratio(new['cost']['samples_appended_per_s'], old['cost']['samples_appended_per_s'])}, series "
            f"created {old['cost']['series_created']} -> {new['cost']['series_created']}")
    busy = [c["config"] for c in result["configs"] if c["machine"]["busy"]]
    text = ("met: " if ok else "MISSED: ") + "; ".join(parts)
    if busy:
        text += (f" -- measured on a BUSY machine (other processes above {BUSY_OTHER_CORES} cores during: "
                 + ", ".join(busy) + ")")
    return text


def run(samples: int, store_samples: int, alert_trials: int, cost_s: float, previous: bool) -> dict[str, Any]:
    from voxpulse_console._paths import config_dir

    root = config_dir()
    os.environ.pop("VOXPULSE_SPANMETRICS_FLUSH", None)  # the files' defaults are what is compared
    base = Path(tempfile.mkdtemp(prefix="vp-fresh-", dir=os.environ.get("VOXPULSE_STATE_DIR")))
    configs: list[dict[str, Any]] = []
    try:
        plan = [("previous", True)] if previous else []
        plan.append(("shipped", False))
        for name, prev in plan:
            tree = _copy_tree(root, base / name / "config", prev)
            cfg = settings(tree)
            label = (f"{name} (flush {cfg['flush']}, scrape {cfg['scrape']}, rules every {cfg['rule_interval']}, "
                     f"batch {cfg['batch']})")
            configs.append(_measure(label, tree, base / name / "state", samples,
                                    store_samples if not prev else 0, alert_trials, cost_s))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result: dict[str, Any] = {
        "samples": samples, "alert_trials": alert_trials, "trace_store": "jaeger (native stack)",
        "targets": {"prometheus_p95_s": PROM_TARGET_P95_S, "alert_extra_s": ALERT_EXTRA_S,
                    "store_p95_s": STORE_TARGET_P95_S, "busy_other_cores": BUSY_OTHER_CORES},
        "configs": configs,
    }
    result["verdict"] = verdict(result)
    return result


def _num(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f}"


def to_markdown(result: dict[str, Any]) -> str:
    """The report's section, from the result alone (tests/bench/test_results.py checks the document)."""
    lines = ["| configuration | Prometheus p50 s | p95 | max | alert s (max) | exemplars | trace store p95 s | "
             "collector CPU s/min | Prometheus CPU s/min | samples/s | head series before → after (created) | "
             "other load (cores) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in result["configs"]:
        p, a, s, ex, cost, m = c["prometheus_s"], c["alert_s"], c["store_s"], c["exemplars"], c["cost"], c["machine"]
        cpu = cost["cpu_s_per_min"]
        busy = " **busy**" if m["busy"] else ""
        lines.append(
            f"| {c['config']} | {p['median']} | {p['p95']} | {p['max']} | {a['median']} ({a['max']}) | "
            f"{ex['calls_with_exemplar']}/{ex['calls']} calls, {ex['stored_in_trace_store']}/"
            f"{ex['exemplar_trace_ids']} stored | {s['p95']} | {cpu.get('otelcol')} | {cpu.get('prometheus')} | "
            f"{cost['samples_appended_per_s']} | "
            f"{_num(cost['head_series_before'])} → {_num(cost['head_series_after'])} "
            f"({_num(cost['series_created'])}) | {m['other_processes_cores']}{busy} |")
    lines += ["", f"{result['samples']} calls per configuration (after one warm-up call, not counted: "
              + ", ".join(f"{c.get('warmup_prometheus_s')} s" for c in result["configs"])
              + "), one at a time at a random phase of the timers; "
              "time from the call's root span ending to its span-metric count in a Prometheus query, and to the "
              f"call found by call_id in the trace store ({result['trace_store']}). Alert: {result['alert_trials']} "
              f"breaches ({BREACH_ERRORS} STT errors in one call) -> {BENCH_ALERT} (VoiceStageErrors's expression "
              "per provider, in its rule group) firing, median (max). Cost: over "
              f"{result['configs'][-1]['cost']['seconds']:.0f} s of 4 calls/s (5 spans each). "
              "Other load: the machine's busy CPU minus this benchmark's processes (load average "
              + ", ".join(f"{m['loadavg_1_5_15'][0]}" for m in (c['machine'] for c in result['configs']))
              + f"); above {BUSY_OTHER_CORES} cores a row is marked busy. The machine is shared with other "
              "workers' builds and tests."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=15, help="calls measured in Prometheus, per configuration")
    parser.add_argument("--store-samples", type=int, default=10,
                        help="more calls measured in the trace store only (shipped configuration)")
    parser.add_argument("--alert-trials", type=int, default=3, help="breaches timed to a firing alert")
    parser.add_argument("--cost-seconds", type=float, default=60.0, help="the steady-load window for CPU and series")
    parser.add_argument("--shipped-only", action="store_true", help="skip the previous settings")
    parser.add_argument("--json", type=Path, default=Path("bench/results/freshness.json"))
    args = parser.parse_args()
    os.environ.pop("OTEL_SDK_DISABLED", None)
    result = run(args.samples, args.store_samples, args.alert_trials, args.cost_seconds, not args.shipped_only)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(to_markdown(result))
    print(f"\nverdict: {result['verdict']}")


if __name__ == "__main__":
    main()
