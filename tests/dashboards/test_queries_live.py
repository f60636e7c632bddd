"""Every panel query of the dashboards against the real native stack, fed by simulated calls.

* every PromQL query parses on Prometheus's /api/v1/query, and panels on our own metrics return data
  after ``voxpulse simulate`` (LiveKit / node exporter / blackbox panels only have to parse);
* every TraceQL query runs on Tempo's /api/search, and TraceQL by call_id finds a simulated call;
* the exemplar of the response-latency panel resolves to a trace that carries a call_id, and the
  call explorer's TraceQL by that call_id finds the same trace;
* the recording rules produce the per-stage quantiles.

Uses a stack that already answers on the standard ports, else starts one (voxpulse_console.stack) in a
temporary state dir. SQL panels run on PostgreSQL in test_sql_panels.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import httpx
import pytest

pytestmark = [pytest.mark.stack, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PROM = "http://127.0.0.1:9090"
TEMPO = "http://127.0.0.1:3200"
DEADLINE_S = 120.0
T = TypeVar("T")

# Panels fed by exporters the native stack does not run, or by events simulated calls need not
# produce: they must parse, and may be empty.
MAY_BE_EMPTY_METRIC_PREFIXES = ("livekit_", "node_", "probe_success")
MAY_BE_EMPTY_PANELS = {
    "Operator queue",  # set only while callers queue for an operator
    "Errors by type",  # error spans / store API errors happen only in some simulated calls
}


def poll(fn: Callable[[], T | None], what: str, deadline_s: float = DEADLINE_S, every_s: float = 1.0) -> T:
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            value = fn()
        except httpx.HTTPError as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what} ({last!r})")


def _ready() -> bool:
    from voxpulse_console import stack

    return all(stack._ready(c.ready_url) for c in stack.COMPONENTS.values())


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from voxpulse_console import stack

    missing = [n for n in ("otelcol", "tempo", "prometheus", "alertmanager") if stack.binaries().get(n) is None]
    if missing:
        msg = f"missing {', '.join(missing)}: run scripts/build-backends.sh"
        if os.environ.get("VOXPULSE_REQUIRE_STACK"):
            pytest.fail(msg)
        pytest.skip(msg)
    if _ready():
        yield
        return
    state = tmp_path_factory.mktemp("stack")
    stack.up(state_dir=state, env={"VOXPULSE_SPANMETRICS_FLUSH": "16s", "VOXPULSE_TEMPO_IDLE": "1s"}, wait_s=90)
    try:
        yield
    finally:
        stack.down(state_dir=state)


@pytest.fixture(scope="module")
def simulated(live_stack: None) -> dict[str, Any]:
    """Simulated calls exported by OTLP to the collector; returns their call ids and service."""
    seed = os.getpid() % 90000 + 10000
    service = f"vp-dash-{seed}"
    run = uuid.uuid4().hex[:6]
    env = os.environ | {"OTEL_SERVICE_NAME": service, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    proc = subprocess.run(
        [sys.executable, "-m", "voxpulse_console", "simulate", "--calls", "6", "--concurrency", "3",
         "--seed", str(seed), "--run-id", run, "--exporter", "otlp", "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"service": service, "seed": seed, "call_ids": [f"sim-{seed}-{run}-{i:04d}" for i in range(6)],
            "t0": time.time() - 600}


def prom_query(http: httpx.Client, expr: str) -> list[dict[str, Any]]:
    r = http.get(f"{PROM}/api/v1/query", params={"query": expr})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return list(body["data"]["result"])


def _ours(queries: ModuleType, expr: str) -> bool:
    names = queries.promql_names(expr).metrics
    return bool(names) and not any(m.startswith(MAY_BE_EMPTY_METRIC_PREFIXES) for m in names)


def test_every_promql_panel_query(simulated: dict[str, Any], queries: ModuleType) -> None:
    promql = [q for q in queries.panel_queries() if q.language == "promql"]
    assert promql
    with httpx.Client(timeout=15) as http:
        # the simulated calls reached Prometheus through the collector
        poll(lambda: prom_query(http, f'sum(traces_span_metrics_calls_total{{service_name="{simulated["service"]}"}})'),
             "span metrics of the simulated calls")
        # ... and the recording rules have evaluated on them
        poll(lambda: prom_query(http, "voice_stage:traces_span_metrics_duration_milliseconds:p95_5m"),
             "recorded per-stage p95")
        empty, checked = [], 0
        for q in promql:
            expr = queries.expand(q, rate_interval="5m", range_="1h")
            result = prom_query(http, expr)  # parses and runs
            if not _ours(queries, q.query) or q.panel in MAY_BE_EMPTY_PANELS:
                continue
            checked += 1
            if not result:
                result = poll(lambda e=expr: prom_query(http, e), f"{q.dashboard} / {q.panel}", deadline_s=45)
            if not result:
                empty.append(f"{q.dashboard} / {q.panel}: {expr}")
        assert not empty, "\n".join(empty)
        assert checked >= 20, checked


def test_every_traceql_panel_query(simulated: dict[str, Any], queries: ModuleType) -> None:
    call_id = simulated["call_ids"][0]
    now = int(time.time())
    with httpx.Client(timeout=15) as http:
        for q in [q for q in queries.panel_queries() if q.language == "traceql"]:
            query = queries.expand(q, variables={"call_id": call_id})
            r = http.get(f"{TEMPO}/api/search", params={"q": query, "limit": 20, "start": now - 3600, "end": now + 60})
            assert r.status_code == 200, f"{q.panel}: {query}: {r.text}"
        found = poll(lambda: http.get(f"{TEMPO}/api/search", params={
            "q": f'{{ span.call_id = "{call_id}" }}', "limit": 5, "start": now - 3600,
            "end": now + 60}).json().get("traces"), f"trace of {call_id} in Tempo")
        assert found[0]["traceID"]


def test_exemplar_opens_the_trace_of_a_call(simulated: dict[str, Any], queries: ModuleType) -> None:
    """The latency panel's exemplar -> trace_id -> Tempo trace with a call_id -> TraceQL by call_id."""
    (panel_q,) = [q for q in queries.panel_queries()
                  if q.panel == "Response latency (time to first word) p50 / p95 / p99" and q.ref_id == "B"]
    assert panel_q.exemplar
    expr = queries.expand(panel_q, rate_interval="5m")
    with httpx.Client(timeout=15) as http:
        def exemplars() -> list[dict[str, Any]] | None:
            r = http.get(f"{PROM}/api/v1/query_exemplars",
                          params={"query": expr, "start": simulated["t0"], "end": time.time() + 60})
            data = r.json().get("data") or []
            return [e for series in data for e in series.get("exemplars", [])] or None

        found = poll(exemplars, "exemplars of the time-to-first-word histogram")
        trace_id = found[-1]["labels"]["trace_id"]

        def trace() -> dict[str, Any] | None:
            r = http.get(f"{TEMPO}/api/traces/{trace_id}")
            return r.json() if r.status_code == 200 else None

        doc = poll(trace, f"trace {trace_id} in Tempo")
        text = json.dumps(doc)
        call_ids = [c for c in simulated["call_ids"] if c in text] or [
            c for c in _attr_values(doc, "call_id")]
        assert call_ids, f"trace {trace_id} carries no call_id"
        now = int(time.time())
        r = http.get(f"{TEMPO}/api/search", params={"q": f'{{ span.call_id = "{call_ids[0]}" }}', "limit": 5,
                                                    "start": now - 3600, "end": now + 60})
        assert trace_id.lstrip("0") in {t["traceID"].lstrip("0") for t in r.json().get("traces", [])}


def _attr_values(doc: Any, key: str) -> list[str]:
    out: list[str] = []
    if isinstance(doc, dict):
        if doc.get("key") == key and isinstance(doc.get("value"), dict):
            out.append(str(doc["value"].get("stringValue")))
        for v in doc.values():
            out.extend(_attr_values(v, key))
    elif isinstance(doc, list):
        for v in doc:
            out.extend(_attr_values(v, key))
    return out
