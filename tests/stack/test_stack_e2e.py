"""End to end against the real processes: library -> collector -> Prometheus and the trace store (Jaeger).

Several simulated calls go through the library's real OTLP exporter (telemetry.configure +
telemetry.call + the decorators); then, through the HTTP APIs only (Prometheus's, and Jaeger's
through voxpulse_console.tracestore), the test proves that Prometheus has the span-derived
histogram per stage with the exact counts and the SDK histograms, that exemplars lead to Jaeger
traces holding the call's spans, that the search by call_id finds exactly that call, that no series
carries call_id or a phone number, and that a phone number in a `pii` attribute is masked by the
collector before the trace store.

The stack is started by voxpulse_console/stack/ in a temporary state folder (or a stack that already
answers on the standard ports is reused, without the tests that restart its components or read its
alerts receiver's database: they skip with the reason, or fail under VOXPULSE_REQUIRE_STACK).
Waits are polls with deadlines.
Exemplars need the span-metrics flush interval to be longer than the scrape interval (15 s), so
the worst case is one flush (16 s here) plus one scrape (15 s).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import telemetry
from telemetry.semconv import METRICS, SPANMETRICS_CALLS, SPANMETRICS_DURATION, Attr, CallOutcome, Stage
from tests.support import PromClient, binary, database_url, unavailable, wait_for
from voxpulse_console import stack, tracestore
from voxpulse_console.tracestore import Trace

pytestmark = [pytest.mark.stack, pytest.mark.slow]

PROM = "http://127.0.0.1:9090"
PHONE = "+380501234567"
# an id with a run of 15 digits between hyphens: the collector's card pattern matches it, and a join
# key must pass verbatim all the same (CI once saw "sim-14055-381789-0000" stored as "sim-****")
RAW_CALL_ID = "raw-14055-381789-0000"
CARD = "4111 1111 1111 1111"
PHONE_MASKED = "+380***567"
N_CALLS = 3
STAGES = ("stt", "llm", "tts", "tool")
PROM_NAME = {m.name: m.prometheus for m in METRICS}
SDK_HISTOGRAMS = ("voice.turn.time_to_first_word", "voice.stage.time_to_first_chunk", "voice.call.cost")
DEADLINE_S = 75.0

T = TypeVar("T")


def poll(fn: Callable[[], T | None], what: str, deadline_s: float = DEADLINE_S, every_s: float = 0.5) -> T:
    """:func:`tests.support.wait_for` with this module's deadline."""
    return wait_for(fn, what, deadline_s, every_s)


# --- the stack -----------------------------------------------------------------------------------


@dataclass
class Stack(PromClient):
    state_dir: Path | None  # None: a stack that was already running is reused
    http: httpx.Client

    @property
    def owned(self) -> bool:
        return self.state_dir is not None


# The tests that restart the stack's components or read what its receiver wrote need a stack of
# their own: with another one on the standard ports they skip with this reason, or fail under
# VOXPULSE_REQUIRE_STACK (CI runs with the ports free, so they always run there).
_NOT_OURS = ("a stack this test did not start answers on the standard ports and this test {what}: "
             "stop that stack (voxpulse stack down) or run the tests in a network namespace of their own "
             "(scripts/netns.sh), where they start a stack in a temporary state dir")


def _all_ready() -> bool:
    return all(stack.ready(c.ready_url) for c in stack.COMPONENTS.values())


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for tool in ("otelcol", "jaeger", "prometheus", "alertmanager"):
        binary(tool)
    # another stack (a concurrent test run) may be starting or stopping: wait until it is either
    # fully up (reuse it) or gone (start ours)
    ports = [p for c in stack.COMPONENTS.values() for p in c.ports]
    poll(lambda: _all_ready() or not any(stack.port_busy(p) for p in ports), "a settled stack", 120)
    if _all_ready():
        with httpx.Client(timeout=10) as http:
            yield Stack(None, http)
        return
    state = tmp_path_factory.mktemp("stack")
    env = {
        # > the 15 s scrape interval, so every flush's exemplars are scraped once
        "VOXPULSE_SPANMETRICS_FLUSH": "16s",
    }
    dsn = database_url()
    if dsn:  # the stack's alerts receiver writes where test_alertmanager_of_the_stack_... reads
        env["DATABASE_URL"] = dsn
    try:
        started = stack.up(state_dir=state, env=env, wait_s=90)
        assert set(started.values()) == {"started"}
        with httpx.Client(timeout=10) as http:
            yield Stack(state, http)
    finally:
        stopped = stack.down(state_dir=state)
        rows = stack.status(state_dir=state)
        assert not [r.name for r in rows if r.running], "down() left processes running"
        assert set(stopped) == set(stack.COMPONENTS)
        busy = [p for c in stack.COMPONENTS.values() for p in c.ports if stack.port_busy(p)]
        assert not busy, f"ports still open after down(): {busy}"


# --- the calls ------------------------------------------------------------------------------------


@dataclass
class Sent:
    service: str
    t0: float
    calls: dict[str, str]  # call_id -> trace id (32 hex)
    spans: list[ReadableSpan]
    sdk_counts: dict[str, int]  # OTel histogram name -> number of recordings
    raw_trace_id: str  # a span sent around the library, with a raw phone number in a pii key
    stage_counts: dict[str, int] = field(default_factory=dict)


@telemetry.trace_stt(provider="deepgram", model="nova-3")
async def transcribe(audio: bytes) -> str:
    await asyncio.sleep(0.03)
    return "мені потрібні шини 205/55 R16"


@telemetry.trace_llm(provider="openai", model="gpt-4o-mini")
async def think(prompt: str):  # type: ignore[no-untyped-def]  # async generator (a stream)
    for token in ("Маємо ", "шини ", "в наявності."):
        await asyncio.sleep(0.02)
        yield token


@telemetry.trace_tts(provider="cartesia", model="sonic", voice="uk-female")
async def speak(text: str) -> bytes:
    await asyncio.sleep(0.04)
    return b"\0" * 320


@telemetry.trace_tool
async def find_tyres(size: str) -> list[dict[str, str]]:
    await asyncio.sleep(0.01)
    return [{"size": size, "brand": "Nokian"}]


async def one_call(call_id: str, outcome: CallOutcome) -> str:
    async with telemetry.call(call_id=call_id, direction="inbound", caller=PHONE, room=call_id) as call:
        for turn in range(2):
            call.next_turn()
            text = await transcribe(b"pcm")
            if turn == 0:
                await find_tyres("205/55 R16")
            answer = "".join([tok async for tok in think(text)])
            await speak(answer)
            telemetry.metrics.record_time_to_first_word(0.6 + 0.1 * turn)
        call.add_cost(0.0123, stage=Stage.LLM, provider="openai", model="gpt-4o-mini")
        call.set_outcome(outcome, reason="customer_request" if outcome is CallOutcome.TRANSFERRED else None)
        return call.trace_id


def send_raw_pii_span(service: str) -> str:
    """A span exported by a plain OTel SDK, without the library's redaction: only the collector
    stands between this phone number and the trace store."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint="http://127.0.0.1:4318/v1/traces")))
    try:
        with provider.get_tracer("e2e.raw").start_as_current_span(
            "raw_pii",
            attributes={Attr.CALL_CALLER: PHONE, "voice.note": f"call me back at {PHONE}", Attr.CALL_ID: RAW_CALL_ID,
                        "voice.card": CARD},
        ) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
    finally:
        provider.shutdown()
    return trace_id


def _histogram_counts(reader: InMemoryMetricReader) -> dict[str, int]:
    counts: dict[str, int] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    if isinstance(point, HistogramDataPoint):
                        counts[metric.name] = counts.get(metric.name, 0) + point.count
    return counts


@pytest.fixture(scope="module")
def sent(running: Stack) -> Iterator[Sent]:
    service = f"vp-e2e-{uuid.uuid4().hex[:8]}"
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    handle = telemetry.configure(
        service_name=service,
        exporter="otlp",
        endpoint="http://127.0.0.1:4318",
        protocol="http/protobuf",
        metrics_exporter="otlp",
        content="full",  # the library keeps the caller's number: the collector must mask it
        metric_export_interval_s=600,  # one export, by the flush below: its exemplars stay exposed
        additional_span_processors=(SimpleSpanProcessor(spans),),
        additional_metric_readers=(reader,),
        setup_logs=False,
    )
    t0 = time.time()
    outcomes = [CallOutcome.RESOLVED_BY_BOT, CallOutcome.TRANSFERRED, CallOutcome.ABANDONED]

    async def run() -> dict[str, str]:
        calls: dict[str, str] = {}
        for i in range(N_CALLS):
            call_id = f"e2e-{uuid.uuid4().hex[:12]}"
            calls[call_id] = await one_call(call_id, outcomes[i % len(outcomes)])
        assert await handle.flush(timeout=15)
        return calls

    try:
        calls = asyncio.run(run())
        raw_trace_id = send_raw_pii_span(service)
        finished = list(spans.get_finished_spans())
        result = Sent(service, t0, calls, finished, _histogram_counts(reader), raw_trace_id)
        for s in finished:
            stage = (s.attributes or {}).get(Attr.STAGE)
            if stage:
                result.stage_counts[str(stage)] = result.stage_counts.get(str(stage), 0) + 1
        yield result
    finally:
        handle.shutdown_sync(timeout=10)


# --- Prometheus -----------------------------------------------------------------------------------


def test_span_metrics_per_stage_count_every_span(running: Stack, sent: Sent) -> None:
    assert set(STAGES) <= set(sent.stage_counts), sent.stage_counts
    assert sent.stage_counts["stt"] == 2 * N_CALLS
    assert sent.stage_counts["tool"] == N_CALLS

    def counts() -> dict[str, float] | None:
        got = {}
        for stage in STAGES:
            sel = f'{{service_name="{sent.service}",voice_stage="{stage}"}}'
            got[stage] = running.prom_value(f"sum({SPANMETRICS_DURATION}_count{sel})")
            got[stage + "/calls"] = running.prom_value(f"sum({SPANMETRICS_CALLS}{sel})")
        want = {**{s: float(sent.stage_counts[s]) for s in STAGES},
                **{s + "/calls": float(sent.stage_counts[s]) for s in STAGES}}
        return got if got == want else None

    poll(counts, f"span metrics per stage = {sent.stage_counts}")
    # the explicit voice buckets reached Prometheus (le formatting differs between 2.x and 3.x)
    les = {r["metric"]["le"] for r in running.prom(f'{SPANMETRICS_DURATION}_bucket{{service_name="{sent.service}"}}')}
    assert {float(le) for le in les} >= {25.0, 500.0, 60000.0, float("inf")}


def test_sdk_histograms_reach_prometheus(running: Stack, sent: Sent) -> None:
    for name in SDK_HISTOGRAMS:
        assert sent.sdk_counts.get(name), f"the library recorded no {name}: {sent.sdk_counts}"

    def counts() -> dict[str, float] | None:
        got = {
            name: running.prom_value(f'sum({PROM_NAME[name]}_count{{service_name="{sent.service}"}})')
            for name in SDK_HISTOGRAMS
        }
        return got if got == {n: float(sent.sdk_counts[n]) for n in SDK_HISTOGRAMS} else None

    poll(counts, f"SDK histogram counts = {sent.sdk_counts}")


def _exemplar_trace_ids(running: Stack, sent: Sent, metric: str) -> set[str]:
    r = running.http.get(
        f"{PROM}/api/v1/query_exemplars",
        params={"query": f'{metric}{{service_name="{sent.service}"}}', "start": sent.t0 - 60, "end": time.time() + 60},
    )
    r.raise_for_status()
    return {
        e["labels"]["trace_id"].rjust(32, "0")
        for series in r.json()["data"]
        for e in series["exemplars"]
        if "trace_id" in e["labels"]
    }


def stored_trace(trace_id: str) -> Trace | None:
    """The trace from the trace store (Jaeger; VOXPULSE_TRACE_STORE), None while it does not have it."""

    async def get() -> Trace | None:
        async with tracestore.from_env() as store:
            return await store.trace(trace_id)

    return asyncio.run(get())


def traces_for_call(call_id: str) -> list[str]:
    async def find() -> list[str]:
        async with tracestore.from_env() as store:
            return await store.traces_for_call(call_id, lookback_s=3600)

    return asyncio.run(find())


@pytest.mark.parametrize(
    "metric",
    [f"{SPANMETRICS_DURATION}_bucket", *(f"{PROM_NAME[n]}_bucket" for n in SDK_HISTOGRAMS)],
)
def test_exemplars_lead_to_the_calls_traces(running: Stack, sent: Sent, metric: str) -> None:
    ids = poll(lambda: _exemplar_trace_ids(running, sent, metric), f"exemplars of {metric}")
    by_trace = {tid: cid for cid, tid in sent.calls.items()}
    by_trace[sent.raw_trace_id] = RAW_CALL_ID  # the raw span below the library is a span of this service too
    assert ids & set(sent.calls.values()), "no exemplar points at a call's trace"
    assert ids <= set(by_trace), f"exemplar trace ids {ids - set(by_trace)} are not the calls' traces"
    for tid in ids:
        trace = poll(lambda tid=tid: stored_trace(tid), f"trace {tid} in the trace store")
        call_ids = {s.attributes.get(Attr.CALL_ID) for s in trace.spans}
        assert call_ids == {by_trace[tid]}, call_ids


# --- the trace store (Jaeger) ---------------------------------------------------------------------


def test_search_by_call_id_finds_exactly_that_call(running: Stack, sent: Sent) -> None:
    for call_id, trace_id in sent.calls.items():
        found = poll(lambda call_id=call_id: traces_for_call(call_id), f"search for {call_id}")
        assert found == [trace_id]
        trace = poll(lambda trace_id=trace_id: stored_trace(trace_id), f"trace {trace_id}")
        stages = sorted(str(s.attributes[Attr.STAGE]) for s in trace.spans if Attr.STAGE in s.attributes)
        assert {s for s in stages} >= set(STAGES)
        assert trace.call_id == call_id
        assert all(s.attributes.get(Attr.CALL_ID) == call_id for s in trace.spans), "every span carries call_id"


def test_phone_numbers_are_masked_before_the_trace_store(running: Stack, sent: Sent) -> None:
    digits = PHONE.lstrip("+")
    for trace_id in [sent.raw_trace_id, *sent.calls.values()]:
        trace = poll(lambda trace_id=trace_id: stored_trace(trace_id), f"trace {trace_id}")
        text = json.dumps([[s.name, dict(s.attributes), [list(e) for e in s.events]] for s in trace.spans],
                          ensure_ascii=False, default=str)
        assert digits not in text, f"raw phone number reached the trace store in {trace_id}"
        assert "501234567" not in text
        callers = [s.attributes[Attr.CALL_CALLER] for s in trace.spans if Attr.CALL_CALLER in s.attributes]
        assert callers == [PHONE_MASKED], callers


def test_join_keys_pass_redaction_verbatim(running: Stack, sent: Sent) -> None:
    """A call id that the collector's card pattern matches is stored and found as it was sent; the
    same digits in any other attribute are masked."""
    trace = poll(lambda: stored_trace(sent.raw_trace_id), f"trace {sent.raw_trace_id}")
    (span,) = trace.spans
    assert span.attributes[Attr.CALL_ID] == RAW_CALL_ID
    assert span.attributes["voice.card"] == "****"
    assert poll(lambda: traces_for_call(RAW_CALL_ID), f"search for {RAW_CALL_ID}") == [sent.raw_trace_id]


# --- labels ---------------------------------------------------------------------------------------


def test_no_series_is_keyed_by_call_or_person(running: Stack, sent: Sent) -> None:
    poll(lambda: running.prom(f'{{service_name="{sent.service}"}}'), "the test's series")
    r = running.http.get(f"{PROM}/api/v1/label/{Attr.CALL_ID}/values")
    r.raise_for_status()
    assert r.json()["data"] == []
    r = running.http.get(f"{PROM}/api/v1/labels")
    r.raise_for_status()
    names = r.json()["data"]
    assert not [n for n in names if "call_id" in n or re.search(r"(^|_)pii(_|$)", n)], names
    phone = re.compile(r"\+?\d[\d ()\-]{8,}\d")
    for selector in (f'{{service_name="{sent.service}"}}', f'{{job="{sent.service}"}}'):
        r = running.http.get(f"{PROM}/api/v1/series", params={"match[]": selector, "start": sent.t0 - 60})
        r.raise_for_status()
        for series in r.json()["data"]:
            for key, value in series.items():
                assert key != Attr.CALL_ID
                assert value not in sent.calls, f"{key}={value} is a call id"
                assert not phone.fullmatch(value) or key == "le", f"{key}={value} looks like a phone number"


# --- the stack's own controls -----------------------------------------------------------------------


def test_up_is_idempotent_and_the_collector_survives_a_kill(running: Stack, sent: Sent) -> None:
    if not running.owned:
        unavailable("STACK", _NOT_OURS.format(what="kills and restarts the collector"))
    assert set(stack.up(state_dir=running.state_dir).values()) == {"running"}
    old = stack.pid("otelcol", state_dir=running.state_dir)
    restarts = {r.name: r.restarts for r in stack.status(state_dir=running.state_dir)}["otelcol"]
    assert stack.kill("otelcol", state_dir=running.state_dir)
    # gone (its keeper waits 1 s before the restart) ...
    assert not stack.ready(stack.COMPONENTS["otelcol"].ready_url)
    # ... and back by itself: start() finds it running (its keeper) and waits until it is ready
    assert stack.start("otelcol", state_dir=running.state_dir) == "running"
    rows = {r.name: r for r in stack.status(state_dir=running.state_dir)}
    assert all(r.ready for r in rows.values()), rows
    assert rows["otelcol"].pid not in (None, old) and rows["otelcol"].restarts == restarts + 1, rows["otelcol"]
    assert "exited unasked" in stack.logs("otelcol", 400, state_dir=running.state_dir)
    # a stop is not undone: the keeper stops the collector and exits
    assert stack.stop("otelcol", state_dir=running.state_dir)
    rows = {r.name: r for r in stack.status(state_dir=running.state_dir)}
    assert not rows["otelcol"].running and rows["otelcol"].pid is None
    assert stack.start("otelcol", state_dir=running.state_dir) == "started"


# --- alerts: the stack's Alertmanager -> the stack's receiver -> PostgreSQL alerts_history ----------


def test_alertmanager_of_the_stack_records_alerts_in_history(running: Stack) -> None:
    import asyncpg

    if not running.owned:
        unavailable("STACK", _NOT_OURS.format(what="reads the database of the stack's alerts receiver"))
    dsn = database_url()
    if not dsn:
        unavailable("DB", "no DATABASE_URL: the stack's receiver has no database (scripts/services.sh writes one)")
    name = f"StackE2E{uuid.uuid4().hex[:8]}"
    alert = {"labels": {"alertname": name, "severity": "warning", "service": "voice-agent"},
             "annotations": {"summary": "stack e2e"}}
    r = running.http.post("http://127.0.0.1:9093/api/v2/alerts", json=[alert])
    assert r.status_code == 200, r.text

    async def stored() -> int:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            exists = await conn.fetchval("SELECT to_regclass('alerts_history') IS NOT NULL")
            if not exists:
                return 0
            return int(await conn.fetchval("SELECT count(*) FROM alerts_history WHERE alertname = $1", name))
        finally:
            await conn.close()

    # the history route's group_wait is 30 s
    poll(lambda: asyncio.run(stored()) or None, f"alert {name} in alerts_history", 75, every_s=2)
