"""End to end on the native scale-out topology (docs/scaling.md), against the real processes.

``voxpulse stack up --collectors 2`` in a temporary state folder: a load-balancing collector on the
agents' ports, two processing collectors with tail sampling at 10 %, the collector-ring, Jaeger,
Prometheus. A few hundred synthetic calls go through the library's real exporter with
``VOXPULSE_TRACE_SAMPLING_PERCENT=10`` (the agent's exemplar filter); some have an error, a slow
turn, a transfer or a tool anomaly. Through the HTTP APIs only, the tests prove:

* every span of a stored call came through one processing collector (``voxpulse.collector``), and
  both collectors took calls;
* every call with an error, a slow turn, a transfer or a tool anomaly is stored, and of the others
  exactly those whose trace id is in the 10 % share (``telemetry.sampling.in_share``, the
  collectors' own hash) -- their number within 5 standard deviations of 10 % (binomial; a false
  alarm about once in 3.5 million runs);
* the span-metric counts (summed over the collectors) equal the spans sent, not the sampled number,
  and the kept series count exactly the stored calls' spans;
* at least 200 exemplars taken from Prometheus (SDK histograms from the load-balancing collector,
  kept span metrics from the processing ones) each open a stored trace whose spans carry the
  call_id of the call that made it, with the exemplar's span in it;
* killing a processing collector: the ring drops it, the load-balancing collector is reloaded
  without it, and new calls are stored whole through the survivor.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import telemetry
from telemetry.sampling import in_share
from telemetry.semconv import (
    METRICS,
    SPANMETRICS_CALLS,
    SPANMETRICS_KEPT_CALLS,
    SPANMETRICS_KEPT_DURATION,
    TTFW_OBJECTIVE_S,
    Attr,
    CallOutcome,
    Stage,
)
from tests.support import PromClient, binary, wait_for
from tests.support.tier import TierSettled
from voxpulse_console import stack, tracestore
from voxpulse_console.tracestore import Trace

pytestmark = [pytest.mark.stack, pytest.mark.slow]

PROM = "http://127.0.0.1:9090"
PERCENT = 10.0
N_PLAIN = 400
N_EACH_RULE = 12
COLLECTORS = 2
MIN_EXEMPLARS = 200
PROM_NAME = {m.name: m.prometheus for m in METRICS}
SDK_HISTOGRAMS = ("voice.turn.time_to_first_word", "voice.stage.time_to_first_chunk", "voice.call.duration",
                  "voice.call.cost")
DEADLINE_S = 90.0
TRACES_HELD = 'otelcol_processor_tail_sampling_sampling_traces_on_memory{job="otel-collector-internal"}'

T = TypeVar("T")


def poll(fn: Callable[[], T | None], what: str, deadline_s: float = DEADLINE_S, every_s: float = 0.5) -> T:
    return wait_for(fn, what, deadline_s, every_s)


# --- the stack ---------------------------------------------------------------------------------------


@dataclass
class Tiered(PromClient):
    state_dir: Path
    http: httpx.Client


@pytest.fixture(scope="module")
def tiered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiered]:
    for tool in ("otelcol", "jaeger", "prometheus", "alertmanager"):
        binary(tool)
    state = tmp_path_factory.mktemp("tiered")
    ports = {p for c in stack.components(state_dir=state).values() for p in c.ports}
    ports |= {p for k in range(1, COLLECTORS + 1) for p in (stack.processing_ports(k).otlp, 13150)}
    poll(lambda: not any(stack.port_busy(p) for p in ports), "free stack ports (another stack runs)", 120)
    env = {
        "VOXPULSE_TRACE_SAMPLING_PERCENT": f"{PERCENT:g}",
        "VOXPULSE_SPANMETRICS_FLUSH": "16s",  # > the 15 s scrape: every flush's exemplars are scraped
        "VOXPULSE_TRACE_DECISION_AFTER_ROOT": "2s",
        "VOXPULSE_TRACE_DECISION_WAIT": "60s",
    }
    try:
        started = stack.up(state_dir=state, env=env, wait_s=90, collectors=COLLECTORS)
        assert {"otelcol", "otelcol-1", "otelcol-2", "collector-ring"} <= set(started)
        with httpx.Client(timeout=10) as http:
            yield Tiered(state, http)
    finally:
        stopped = stack.down(state_dir=state)
        assert "otelcol-1" in stopped and "collector-ring" in stopped
        assert not [r.name for r in stack.status(state_dir=state) if r.running]
        assert not [p for p in ports if stack.port_busy(p)], "ports open after down()"


# --- the calls ---------------------------------------------------------------------------------------

RULES = ("error", "slow_turn", "transfer", "tool_anomaly")
PROVIDERS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("google", "gemini-2.0-flash")]
TTS = [("cartesia", "sonic"), ("elevenlabs", "flash-v2")]
TOOLS = ("find_tyres", "create_order", "book_fitting")


@dataclass
class Sent:
    service: str
    t0: float
    calls: dict[str, str] = field(default_factory=dict)  # call_id -> trace id (32 hex)
    rule: dict[str, str] = field(default_factory=dict)  # call_id -> the rule it was made to hit
    spans: list[ReadableSpan] = field(default_factory=list)

    def spans_of(self, trace_id: str) -> list[ReadableSpan]:
        return [s for s in self.spans if format(s.context.trace_id, "032x") == trace_id]


class ProviderDown(RuntimeError):
    pass


async def one_call(call_id: str, rule: str | None, rng: random.Random) -> str:
    provider, model = rng.choice(PROVIDERS)
    tts_provider, tts_model = rng.choice(TTS)
    tool = rng.choice(TOOLS)

    @telemetry.trace_stt(provider="deepgram", model="nova-3")
    async def transcribe() -> str:
        return "шини 205/55 R16"

    @telemetry.trace_llm(provider=provider, model=model)
    async def think(fail: bool) -> str:
        await asyncio.sleep(0)
        if fail:
            raise ProviderDown("503 from the provider")
        telemetry.metrics.record_time_to_first_chunk(Stage.LLM, rng.uniform(0.2, 1.4), provider=provider,
                                                     model=model)
        return "Маємо шини."

    @telemetry.trace_tts(provider=tts_provider, model=tts_model)
    async def speak(text: str) -> bytes:
        telemetry.metrics.record_time_to_first_chunk(Stage.TTS, rng.uniform(0.05, 0.6), provider=tts_provider,
                                                     model=tts_model)
        return b"\0"

    @telemetry.trace_tool(name=tool)
    async def use_tool(anomalous: bool) -> str:
        if anomalous:
            span = trace.get_current_span()
            span.set_attribute(Attr.TOOL_ANOMALY, "injection_pattern")
            telemetry.metrics.tool_anomaly(tool, "injection_pattern")
        return "ok"

    @telemetry.traced(name="turn", stage=Stage.TURN)
    async def turn(index: int, ttfw_s: float) -> None:
        await transcribe()
        if index == 0:
            await use_tool(rule == "tool_anomaly")
        try:
            answer = await think(rule == "error" and index == 1)
        except ProviderDown:
            answer = "Вибачте."
        await speak(answer)
        trace.get_current_span().set_attribute(Attr.TURN_TTFW, ttfw_s)
        telemetry.metrics.record_time_to_first_word(ttfw_s)

    async with telemetry.call(call_id=call_id, direction="inbound") as call:
        for index in range(2):
            call.next_turn()
            slow = rule == "slow_turn" and index == 1
            await turn(index, TTFW_OBJECTIVE_S + 0.7 if slow else rng.uniform(0.4, 2.2))
        call.add_cost(0.004 + rng.random() / 100, stage=Stage.LLM, provider=provider, model=model)
        if rule == "transfer":
            call.set_outcome(CallOutcome.TRANSFERRED, reason="customer_request")
        else:
            call.set_outcome(CallOutcome.RESOLVED_BY_BOT)
        return call.trace_id


def _configure(service: str, spans: InMemorySpanExporter) -> telemetry.Telemetry:
    saved = os.environ.get("VOXPULSE_TRACE_SAMPLING_PERCENT")
    os.environ["VOXPULSE_TRACE_SAMPLING_PERCENT"] = f"{PERCENT:g}"  # the agent's half of the sampling
    try:
        return telemetry.configure(
            service_name=service, exporter="otlp", endpoint="http://127.0.0.1:4318", protocol="http/protobuf",
            metrics_exporter="otlp", metric_export_interval_s=8,
            additional_span_processors=(SimpleSpanProcessor(spans),), setup_logs=False,
        )
    finally:
        if saved is None:
            del os.environ["VOXPULSE_TRACE_SAMPLING_PERCENT"]
        else:
            os.environ["VOXPULSE_TRACE_SAMPLING_PERCENT"] = saved


@pytest.fixture(scope="module")
def sent(tiered: Tiered) -> Iterator[Sent]:
    service = f"vp-tiered-{uuid.uuid4().hex[:8]}"
    spans = InMemorySpanExporter()
    handle = _configure(service, spans)
    result = Sent(service, time.time())
    rng = random.Random(14)
    plan: list[str | None] = [None] * N_PLAIN + [r for r in RULES for _ in range(N_EACH_RULE)]
    rng.shuffle(plan)

    async def run() -> None:
        # spread over ~65 s: several metric exports and span-metric flushes, so several exemplars
        # per series reach Prometheus
        for i, rule in enumerate(plan):
            call_id = f"tiered-{uuid.uuid4().hex[:12]}"
            result.calls[call_id] = await one_call(call_id, rule, rng)
            if rule:
                result.rule[call_id] = rule
            await asyncio.sleep(65 / len(plan))
            if i % 50 == 0:
                await handle.flush(timeout=15)
        assert await handle.flush(timeout=15)

    try:
        asyncio.run(run())
        result.spans = list(spans.get_finished_spans())
        yield result
    finally:
        handle.shutdown_sync(timeout=10)


# --- helpers on the trace store ----------------------------------------------------------------------


def stored(trace_ids: list[str]) -> dict[str, Trace | None]:
    async def get() -> dict[str, Trace | None]:
        async with tracestore.from_env() as store:
            sem = asyncio.Semaphore(8)

            async def one(tid: str) -> tuple[str, Trace | None]:
                async with sem:
                    return tid, await store.trace(tid)

            return dict(await asyncio.gather(*(one(t) for t in trace_ids)))

    return asyncio.run(get())


def _decided(tiered: Tiered, sent: Sent) -> bool | None:
    """True once every trace has had its decision: the collectors hold none and sent all they kept."""
    held = tiered.prom_value(f"sum({TRACES_HELD})")
    spans_in = tiered.prom_value(f'sum({SPANMETRICS_CALLS}{{service_name="{sent.service}"}})')
    return (held == 0 and spans_in == len(sent.spans)) or None


@pytest.fixture(scope="module")
def store_view(tiered: Tiered, sent: Sent) -> dict[str, Trace | None]:
    poll(lambda: _decided(tiered, sent), "every trace decided", 120, every_s=2)
    wait_for(TierSettled(COLLECTORS), "every kept span written in Jaeger", 120)
    return stored(list(sent.calls.values()))


# --- the tests ---------------------------------------------------------------------------------------


def test_spans_of_one_call_all_land_on_one_processing_collector(
    sent: Sent, store_view: dict[str, Trace | None]
) -> None:
    used: Counter[str] = Counter()
    kept = {tid: t for tid, t in store_view.items() if t is not None}
    assert kept
    for tid, t in kept.items():
        collectors = {s.attributes.get(Attr.COLLECTOR) for s in t.spans}
        assert len(collectors) == 1 and None not in collectors, (tid, collectors)
        used[collectors.pop()] += 1
        assert len(t.spans) == len(sent.spans_of(tid)), f"trace {tid} incomplete"
    assert set(used) == {f"p{k}" for k in range(1, COLLECTORS + 1)}, used


def test_sampling_keeps_every_rule_and_the_share_of_the_rest(sent: Sent, store_view: dict[str, Trace | None]) -> None:
    kept = {tid for tid, t in store_view.items() if t is not None}
    for call_id, rule in sent.rule.items():
        assert sent.calls[call_id] in kept, f"{rule} call {call_id} was sampled away"
    plain = {sent.calls[c] for c in sent.calls if c not in sent.rule}
    in_the_share = {t for t in plain if in_share(int(t, 16), PERCENT)}
    assert kept & plain == in_the_share  # exactly the collectors' deterministic share, no more
    n, p = len(plain), PERCENT / 100
    sd = (n * p * (1 - p)) ** 0.5
    assert abs(len(in_the_share) - n * p) <= 5 * sd, (len(in_the_share), n)


def test_span_metric_counts_are_the_spans_sent_not_the_sampled(
    tiered: Tiered, sent: Sent, store_view: dict[str, Trace | None]
) -> None:
    sel = f'{{service_name="{sent.service}"}}'
    kept_spans = sum(len(t.spans) for t in store_view.values() if t is not None)
    assert kept_spans < len(sent.spans) / 2

    def counts() -> tuple[float | None, float | None] | None:
        got = (tiered.prom_value(f"sum({SPANMETRICS_CALLS}{sel})"),
               tiered.prom_value(f"sum({SPANMETRICS_KEPT_CALLS}{sel})"))
        return got if got == (float(len(sent.spans)), float(kept_spans)) else None

    poll(counts, f"span metrics = {len(sent.spans)} sent, kept = {kept_spans}", 60)
    # both collectors count: the sum is over instances, each span counted once
    per_collector = tiered.prom(f"sum by (collector) ({SPANMETRICS_CALLS}{sel})")
    assert len(per_collector) == COLLECTORS


def _exemplars(tiered: Tiered, sent: Sent, metric: str) -> list[dict[str, Any]]:
    r = tiered.http.get(
        f"{PROM}/api/v1/query_exemplars",
        params={"query": f'{metric}{{service_name="{sent.service}"}}', "start": sent.t0 - 60, "end": time.time() + 60},
    )
    r.raise_for_status()
    # each exemplar with the series it is stored on (Prometheus keeps exemplars per series)
    return [{**e, "series": series["seriesLabels"]} for series in r.json()["data"] for e in series["exemplars"]]


def test_200_exemplars_all_open_a_stored_trace_of_their_call(
    tiered: Tiered, sent: Sent, store_view: dict[str, Trace | None]
) -> None:
    metrics = [f"{SPANMETRICS_KEPT_DURATION}_bucket", f"{SPANMETRICS_KEPT_CALLS}",
               *(f"{PROM_NAME[n]}_bucket" for n in SDK_HISTOGRAMS), PROM_NAME["voice.calls"]]

    def collect() -> list[dict[str, Any]]:
        found = {(tuple(sorted(e["series"].items())), e["labels"].get("trace_id"), e["labels"].get("span_id"),
                  e["timestamp"]): e for m in metrics for e in _exemplars(tiered, sent, m)}
        return list(found.values())

    # every span-metric flush and metric export reaches Prometheus within a flush and a scrape (31 s)
    end = time.monotonic() + 60
    exemplars = collect()
    while len(exemplars) < MIN_EXEMPLARS and time.monotonic() < end:
        time.sleep(3)
        exemplars = collect()
    assert len(exemplars) >= MIN_EXEMPLARS, f"{len(exemplars)} exemplars in Prometheus, fewer than {MIN_EXEMPLARS}"
    by_trace = {tid: cid for cid, tid in sent.calls.items()}
    ids = sorted({e["labels"]["trace_id"].rjust(32, "0") for e in exemplars})
    traces = stored(ids)
    for e in exemplars:
        tid = e["labels"]["trace_id"].rjust(32, "0")
        t = traces[tid]
        assert t is not None, f"exemplar {e} points at trace {tid}, which the collectors dropped"
        assert {s.attributes.get(Attr.CALL_ID) for s in t.spans} == {by_trace[tid]}
        span_id = e["labels"].get("span_id")
        if span_id:
            assert span_id.rjust(16, "0") in {s.span_id for s in t.spans}, f"exemplar span {span_id} not in {tid}"


def test_a_killed_processing_collector_is_routed_around(tiered: Tiered, sent: Sent,
                                                        store_view: dict[str, Trace | None]) -> None:
    # stopped: the ring sees a refused connection either way, and a killed one would be back within
    # seconds (its keeper) while this test needs it gone
    assert stack.stop("otelcol-2", state_dir=tiered.state_dir)
    ring = poll(lambda: (r := tiered.http.get(f"http://{stack.RING_LISTEN}/ring").json())["changes"] >= 1 and r,
                "the ring to drop otelcol-2", 15, every_s=0.3)
    assert ring["ring"] == [stack.processing_ports(1).endpoint]
    poll(lambda: stack.ready(stack.components(state_dir=tiered.state_dir)["otelcol"].ready_url),
         "the load-balancing collector back after its reload", 30)
    spans = InMemorySpanExporter()
    handle = _configure(sent.service, spans)
    rng = random.Random(15)

    async def run() -> dict[str, str]:
        calls = {}
        for _ in range(20):
            call_id = f"tiered-after-{uuid.uuid4().hex[:10]}"
            calls[call_id] = await one_call(call_id, "error", rng)  # kept by a rule whatever the share
        assert await handle.flush(timeout=15)
        return calls

    try:
        calls = asyncio.run(run())
    finally:
        handle.shutdown_sync(timeout=10)
    finished = list(spans.get_finished_spans())

    def whole() -> dict[str, Trace | None] | None:
        view = stored(list(calls.values()))
        complete = all(
            t is not None and len(t.spans) == sum(1 for s in finished if format(s.context.trace_id, "032x") == tid)
            for tid, t in view.items()
        )
        return view if complete else None

    view = poll(whole, "the calls after the kill, whole, in the trace store", 60, every_s=2)
    assert {s.attributes.get(Attr.COLLECTOR) for t in view.values() if t for s in t.spans} == {"p1"}
    assert stack.start("otelcol-2", state_dir=tiered.state_dir) == "started"
    back = poll(lambda: len((r := tiered.http.get(f"http://{stack.RING_LISTEN}/ring").json())["ring"]) == 2 and r,
                "otelcol-2 back in the ring", 20, every_s=0.5)
    assert back["changes"] >= 2
