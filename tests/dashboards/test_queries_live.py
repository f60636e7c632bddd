"""Every panel query of the dashboards against the real native stack, fed by simulated calls.

* every PromQL query parses on Prometheus's /api/v1/query, and panels on our own metrics return data
  after ``voxpulse simulate`` (LiveKit / node exporter / blackbox panels only have to parse);
* every query that targets the trace store, panel or data link, runs on the native trace store,
  Jaeger (the Jaeger set of dashboards, through voxpulse_console.tracestore: the request Grafana's
  Jaeger data source sends), and the call explorer's search by call_id finds a simulated call, its
  "Slow turns" panel the turn marked slow (``voice.turn.slow``: time to first word over the objective)
  that the test sent, and not a long turn with a fast answer sent with it (a duration filter lists both);
  the Tempo set's TraceQL cannot run here (no Tempo is built: AGPL): test_dashboards.py checks the
  names in it against telemetry.semconv;
* the exemplar chain: the response-latency panel's exemplar -> trace id -> the trace in Jaeger ->
  a span with a call_id -> the call explorer's search by that call_id finds the same trace -> the
  PostgreSQL ``calls`` row of that call holds that trace id;
* the recording rules produce the per-stage quantiles.

Uses a stack that already answers on the standard ports, else starts one (voxpulse_console.stack) in a
temporary state dir. SQL panels run on PostgreSQL in test_sql_panels.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import set_span_in_context

from telemetry.semconv import (
    SPANMETRICS_KEPT_CALLS,
    SPANMETRICS_KEPT_DURATION,
    TTFW_OBJECTIVE_S,
    Attr,
    Metric,
    SpanName,
    metric_spec,
)
from tests.support import unavailable, wait_for
from voxpulse_console.tracestore import JaegerTraceStore, Trace

pytestmark = [pytest.mark.stack, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PROM = "http://127.0.0.1:9090"
JAEGER = "http://127.0.0.1:16686"
COLLECTOR = "http://127.0.0.1:4318"
S = 1_000_000_000  # ns per second
DEADLINE_S = 120.0
VERDICTS = metric_spec(Metric.INSIGHTS_VERDICTS).prometheus
T = TypeVar("T")

# Panels fed by exporters the native stack does not run, or by events simulated calls need not
# produce: they must parse, and may be empty. The kept spans' series (the hidden exemplar siblings)
# exist only in the scale-out topology: tests/stack/test_tiered_e2e.py proves them there.
MAY_BE_EMPTY_METRIC_PREFIXES = ("livekit_", "node_", "probe_success", SPANMETRICS_KEPT_DURATION,
                                SPANMETRICS_KEPT_CALLS)
MAY_BE_EMPTY_PANELS = {
    "Operator queue",  # set only while callers queue for an operator
    "Errors by type",  # error spans / store API errors happen only in some simulated calls
    # the simulated callers never talk over the agent: tests/realcalls (a caller barges in) checks these two
    "Interruptions per minute by direction",
    "Time to yield after a barge-in p95",
    # only a turn over its budget or an impossible duration LiveKit reports: tests/telemetry covers both series
    "Budget breaches and data errors per minute",
}
# The agent's judges and outcomes, from the insights receiver: fed by `judged` below when PostgreSQL is
# here (the receiver counts what it stored); without it they only have to parse.
INSIGHTS_PANELS = {"Verdicts per hour by judge and result", "Failed share by judge (15 min)", "Outcomes per hour"}


def poll(fn: Callable[[], T | None], what: str, deadline_s: float = DEADLINE_S, every_s: float = 1.0) -> T:
    """:func:`tests.support.wait_for` with this module's deadline."""
    return wait_for(fn, what, deadline_s, every_s)


def _ready() -> bool:
    from voxpulse_console import stack

    return all(stack.ready(c.ready_url) for c in stack.COMPONENTS.values())


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from voxpulse_console import stack

    missing = [n for n in ("otelcol", "jaeger", "prometheus", "alertmanager") if stack.binaries().get(n) is None]
    if missing:
        unavailable("STACK", f"missing {', '.join(missing)}: run scripts/build-backends.sh")
    if _ready():
        yield
        return
    state = tmp_path_factory.mktemp("stack")
    stack.up(state_dir=state, env={"VOXPULSE_SPANMETRICS_FLUSH": "16s"}, wait_s=90)
    try:
        yield
    finally:
        stack.down(state_dir=state)


@pytest.fixture(scope="module")
def simulated(live_stack: None, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Simulated calls exported by OTLP to the collector, their history in a throw-away PostgreSQL
    database when one is available; returns their call ids, service and database."""
    try:
        dsn: str | None = request.getfixturevalue("migrated_db")
    except pytest.skip.Exception:  # no PostgreSQL here (VOXPULSE_REQUIRE_DB unset): traces only
        dsn = None
    seed = os.getpid() % 90000 + 10000
    service = f"vp-dash-{seed}"
    run = uuid.uuid4().hex[:6]
    env = os.environ | {"OTEL_SERVICE_NAME": service, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    env.pop("VOXPULSE_DATABASE_URL", None)
    env.pop("DATABASE_URL", None)
    if dsn:
        env["DATABASE_URL"] = dsn
    proc = subprocess.run(
        [sys.executable, "-m", "voxpulse_console", "simulate", "--calls", "6", "--concurrency", "3",
         "--seed", str(seed), "--run-id", run, "--exporter", "otlp", "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"service": service, "seed": seed, "call_ids": [f"sim-{seed}-{run}-{i:04d}" for i in range(6)],
            "t0": time.time() - 600, "dsn": dsn}


@pytest.fixture(scope="module")
def judged(simulated: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> bool:
    """LiveKit Agents' logs upload of two calls (the committed capture: a judge's pass and a judge's fail,
    an outcome) posted to the insights receiver, its metrics exported by OTLP to the stack's collector as
    ``voxpulse insights-receiver`` exports them; twice, a few scrapes apart, so that rate() has two
    samples. False without PostgreSQL (the receiver stores before it counts)."""
    if not simulated["dsn"]:
        return False
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from tests.insights.capture import FIXTURE_KEY, FIXTURE_SECRET
    from tests.insights.test_metrics import logs_body
    from tests.insights.test_wire import token
    from voxpulse_console.insights import InsightsConfig, start

    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{COLLECTOR}/v1/metrics"),
                                           export_interval_millis=3_600_000)  # exported by force_flush
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": simulated["service"]}))
    config = InsightsConfig(dsn=simulated["dsn"], keys={FIXTURE_KEY: FIXTURE_SECRET},
                            folder=tmp_path_factory.mktemp("insights"), meter_provider=provider)
    run = uuid.uuid4().hex[:6]

    async def upload(n: int) -> None:
        runner = await start(config, "127.0.0.1:0")
        host, port = runner.addresses[0][:2]
        try:
            async with httpx.AsyncClient() as client:
                r = await client.post(
                    f"http://{host}:{port}/observability/logs/otlp/v0",
                    content=logs_body(f"RM_dash{run}{n}", verdicts={"task_completion": "pass", "conciseness": "fail"},
                                      outcome="success"),
                    headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip",
                             "Authorization": f"Bearer {token()}"})
                assert r.status_code == 200, r.text
        finally:
            await runner.cleanup()
        assert provider.force_flush(10_000)

    try:
        asyncio.run(upload(0))
        with httpx.Client(timeout=15) as http:  # scraped twice: the second upload is a later sample
            poll(lambda: prom_query(http, f'count_over_time({VERDICTS}{{service_name="{simulated["service"]}"}}[1m])'
                                    " >= 2"), "the insights receiver's verdicts in Prometheus, scraped twice")
        asyncio.run(upload(1))
    finally:
        provider.shutdown()
    return True


def prom_query(http: httpx.Client, expr: str) -> list[dict[str, Any]]:
    r = http.get(f"{PROM}/api/v1/query", params={"query": expr})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return list(body["data"]["result"])


def _ours(queries: ModuleType, expr: str) -> bool:
    names = queries.promql_names(expr).metrics
    return bool(names) and not any(m.startswith(MAY_BE_EMPTY_METRIC_PREFIXES) for m in names)


def test_every_promql_panel_query(simulated: dict[str, Any], queries: ModuleType, judged: bool) -> None:
    promql = [q for q in queries.panel_queries() if q.language == "promql"]
    assert promql
    with httpx.Client(timeout=15) as http:
        # the simulated calls reached Prometheus through the collector
        poll(lambda: prom_query(http, f'sum(traces_span_metrics_calls_total{{service_name="{simulated["service"]}"}})'),
             "span metrics of the simulated calls")
        # ... and the recording rules have evaluated on them
        poll(lambda: prom_query(http, "voice_stage:traces_span_metrics_duration_milliseconds:p95_5m"),
             "recorded per-stage p95")
        empty, checked, panels = [], 0, set()
        for q in promql:
            expr = queries.expand(q, rate_interval="5m", range_="1h")
            result = prom_query(http, expr)  # parses and runs
            if not _ours(queries, q.query) or q.panel in MAY_BE_EMPTY_PANELS or (q.panel in INSIGHTS_PANELS
                                                                                    and not judged):
                continue
            checked += 1
            panels.add(q.panel)
            if not result:
                result = poll(lambda e=expr: prom_query(http, e), f"{q.dashboard} / {q.panel}", deadline_s=45)
            if not result:
                empty.append(f"{q.dashboard} / {q.panel}: {expr}")
        assert not empty, "\n".join(empty)
        assert checked >= 20, checked
        assert not judged or panels >= INSIGHTS_PANELS, INSIGHTS_PANELS - panels  # fed: checked for data


def jaeger(fn: Callable[[JaegerTraceStore], Awaitable[T]]) -> T:
    """``fn(store)`` on the native trace store (Jaeger), in a fresh event loop."""

    async def run() -> T:
        async with JaegerTraceStore(JAEGER) as store:
            return await fn(store)

    return asyncio.run(run())


def run_jaeger_query(queries: ModuleType, q: Any, variables: dict[str, str], start_s: float,
                     end_s: float) -> list[Trace]:
    """A Jaeger panel or link query with its variables, as Grafana's Jaeger data source sends it."""
    kwargs = queries.jaeger_search(q, variables=variables)
    if "trace_id" in kwargs:
        trace = jaeger(lambda s: s.trace(kwargs["trace_id"]))
        return [trace] if trace is not None else []
    return jaeger(lambda s: s.search(start_s=start_s, end_s=end_s, **kwargs))


def send_turns(service: str) -> dict[str, str]:
    """Two calls of ``service``, sent by OTLP to the collector with the turn attributes the library
    sets (each a ``call`` root with one ``turn``, ended about 30 s ago): one whose turn's time to first
    word is over the objective (3.4 s, marked slow, a 5 s turn in a 6 s call), one whose answer came in
    0.6 s but lasted long (a 3.5 s turn in a 4 s call, not slow). Returns their trace ids by ``"slow"`` /
    ``"fast"``. A duration filter (the panel's old query, minDuration 2s) lists both."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{COLLECTOR}/v1/traces")))
    tracer = provider.get_tracer("voxpulse.test")
    start = time.time_ns() - 40 * S
    out: dict[str, str] = {}
    for label, ttfw_s, turn_ns, call_ns in (("slow", TTFW_OBJECTIVE_S + 0.4, 5 * S, 6 * S),
                                            ("fast", 0.6, 7 * S // 2, 4 * S)):
        call_id = f"dash-{label}-{uuid.uuid4().hex[:8]}"
        root = tracer.start_span(SpanName.CALL, start_time=start, attributes={Attr.CALL_ID: call_id})
        turn = tracer.start_span(SpanName.TURN, context=set_span_in_context(root), start_time=start + S // 10,
                                 attributes={Attr.CALL_ID: call_id, Attr.STAGE: "turn", Attr.TURN_TTFW: ttfw_s,
                                             Attr.TURN_SLOW: ttfw_s >= TTFW_OBJECTIVE_S})
        turn.end(end_time=start + S // 10 + turn_ns)
        root.end(end_time=start + call_ns)
        out[label] = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return out


@pytest.fixture(scope="module")
def own_turns(simulated: dict[str, Any]) -> dict[str, str]:
    """:func:`send_turns` for the simulated calls' service, once both traces are in Jaeger."""
    turns = send_turns(simulated["service"])
    for label, tid in turns.items():
        poll(lambda t=tid: jaeger(lambda s: s.trace(t)), f"the {label} turn's trace {tid} in Jaeger")
    return turns


def slow_turns(queries: ModuleType, service: str) -> list[Trace]:
    """The call explorer's "Slow turns in Jaeger" panel, run for ``service`` over the last hour."""
    (q,) = [q for q in queries.panel_queries("jaeger") if q.panel == "Slow turns in Jaeger"]
    return run_jaeger_query(queries, q, {"service": service}, time.time() - 3600, time.time() + 60)


def test_every_trace_store_query_runs_on_jaeger(simulated: dict[str, Any], queries: ModuleType,
                                                own_turns: dict[str, str]) -> None:
    call_id = simulated["call_ids"][0]
    trace_ids = poll(lambda: jaeger(lambda s: s.traces_for_call(call_id, lookback_s=3600)), f"{call_id} in Jaeger")
    panels = [q for q in queries.panel_queries("jaeger") if q.language == "jaeger"]
    links = [q for q in queries.link_queries("jaeger") if q.language == "jaeger"]
    assert {q.panel for q in panels} == {"Slow turns in Jaeger", "Trace of the selected call"}
    assert len(links) == 5
    start, end = time.time() - 3600, time.time() + 60
    found: dict[str, list[Trace]] = {}
    for q in panels + links:
        value = trace_ids[0] if "trace_id:" in q.panel else call_id  # the cell a data link is clicked on
        variables = {"service": simulated["service"], "call_id": call_id, "__value.raw": value}
        found[f"{q.file} / {q.panel}"] = run_jaeger_query(queries, q, variables, start, end)  # runs, or raises
    # every search by call_id (the selected call, each call_id cell) and by trace id finds the call's trace
    for where, traces in found.items():
        if "Slow turns" in where:  # lists the slow turn the test sent (what else: the test below)
            assert own_turns["slow"] in [t.trace_id for t in traces], (where, own_turns, traces)
            continue
        assert [t.trace_id for t in traces] == trace_ids[:1], where
        assert traces[0].call_id == call_id, where


def test_slow_turns_in_jaeger_lists_only_traces_with_a_slow_turn(simulated: dict[str, Any], queries: ModuleType,
                                                                 own_turns: dict[str, str]) -> None:
    """The panel lists the turn whose time to first word is over the objective and not the long turn
    with a fast answer (its old query, Jaeger's minDuration over any span of the trace, listed both);
    every trace it lists has a turn marked slow."""
    traces = slow_turns(queries, simulated["service"])
    found_ids = [t.trace_id for t in traces]
    assert own_turns["slow"] in found_ids, (own_turns, found_ids)
    assert own_turns["fast"] not in found_ids, (own_turns, found_ids)
    assert all(any(s.name == SpanName.TURN and s.attributes.get(Attr.TURN_SLOW) is True for s in t.spans)
               for t in traces), found_ids


def test_exemplar_opens_the_trace_of_a_call(simulated: dict[str, Any], queries: ModuleType) -> None:
    """The latency panel's exemplar -> trace_id -> Jaeger trace with a call_id -> the call explorer's
    search by call_id finds it -> the PostgreSQL calls row of that call holds that trace id."""
    (panel_q,) = [q for q in queries.panel_queries("jaeger")
                  if q.panel == "Response latency (time to first word) p50 / p95 / p99" and q.ref_id == "B"]
    assert panel_q.exemplar
    expr = queries.expand(panel_q, rate_interval="5m")
    with httpx.Client(timeout=15) as http:
        def exemplars() -> list[dict[str, Any]] | None:
            r = http.get(f"{PROM}/api/v1/query_exemplars",
                         params={"query": expr, "start": simulated["t0"], "end": time.time() + 60})
            data = r.json().get("data") or []
            return [e for series in data if series.get("seriesLabels", {}).get("service_name") == simulated["service"]
                    for e in series.get("exemplars", []) if e["labels"].get("trace_id")] or None

        found = poll(exemplars, "exemplars of the simulated calls in the time-to-first-word histogram")
    trace_id = found[-1]["labels"]["trace_id"].rjust(32, "0")
    trace = poll(lambda: jaeger(lambda s: s.trace(trace_id)), f"trace {trace_id} in Jaeger")
    call_ids = {str(s.attributes[Attr.CALL_ID]) for s in trace.spans if Attr.CALL_ID in s.attributes}
    assert len(call_ids) == 1, f"trace {trace_id} carries call_ids {call_ids}"
    (call_id,) = call_ids
    assert call_id in simulated["call_ids"]
    # the call explorer's "Trace of the selected call" (Jaeger: service + call_id tag) finds it
    (selected,) = [q for q in queries.panel_queries("jaeger") if q.panel == "Trace of the selected call"]
    traces = run_jaeger_query(queries, selected, {"service": trace.spans[0].service, "call_id": call_id},
                              time.time() - 3600, time.time() + 60)
    assert [t.trace_id for t in traces] == [trace_id]
    assert jaeger(lambda s: s.traces_for_call(call_id, lookback_s=3600)) == [trace_id]
    # ... and the call history has that trace id on the call's row
    if simulated["dsn"] is None:
        unavailable("DB", "no PostgreSQL (scripts/services.sh): the chain is checked up to the trace store")

    async def row() -> Any:
        conn = await asyncpg.connect(simulated["dsn"], timeout=5)
        try:
            return await conn.fetchrow("SELECT call_id, trace_id FROM calls WHERE call_id = $1", call_id)
        finally:
            await conn.close()

    stored = asyncio.run(row())
    assert stored is not None, f"no calls row for {call_id}"
    assert stored["trace_id"] == trace_id
