"""The agent's own /metrics (opentelemetry-exporter-prometheus) exposes the names semconv promises."""

from __future__ import annotations

import asyncio
import urllib.request

import telemetry
from telemetry import _quality, metrics
from telemetry.semconv import METRICS, Attr, Metric, MetricKind, MetricSpec, TurnSegment
from tests.support import free_port

APP_ERRORS = metrics.Counter(MetricSpec(
    "shop.api.errors", MetricKind.COUNTER, "{error}", "Shop API errors.", (Attr.HTTP_STATUS,)))


async def test_prometheus_names_match_semconv() -> None:
    port = free_port()  # the exporter is told its port
    handle = telemetry.configure(exporter="none", metrics_exporter="prometheus",
                                 prometheus_addr=f"127.0.0.1:{port}", setup_logs=False)
    try:
        async with telemetry.call("prom-1") as call:
            metrics.record_time_to_first_word(0.3)
            metrics.record_time_to_first_chunk("llm", 0.2, provider="openai", model="gpt")
            APP_ERRORS.add(1, {Attr.HTTP_STATUS: 500})
            metrics.set_operator_queue(2)
            metrics.tool_anomaly("x", "unknown_tool")
            metrics._turn_segment(TurnSegment.LLM_TTFT, 0.2)
            metrics._greeting(1.2, [(TurnSegment.CALL_SETUP, 0.8), (TurnSegment.TTS_TTFB, 0.4)])
            metrics._interruption("caller", "interruption")
            metrics._interruption_yield(0.3)
            metrics._budget_breach("time_to_first_word")
            assert _quality.duration("livekit.llm.ttft", -0.5) is None  # a data error
            call.add_cost(0.01, stage="llm")
            call.set_outcome("transferred", reason="operator_requested")
        metrics._calllog_records(1, result="written", buffer="postgres")
        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                return str(resp.read().decode())

        body = await asyncio.to_thread(scrape)
    finally:
        await handle.shutdown(timeout=2)
    exposed = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if line and not line.startswith("#")}
    for spec in (*METRICS, APP_ERRORS.spec):
        if spec.name in (Metric.EXPORT_DROPPED, Metric.INTERNAL_ERRORS):
            continue  # only exist once a span was dropped / an error contained
        if spec.name.startswith("voxpulse.insights."):
            continue  # the insights receiver's, not an agent's (tests/stack/test_insights_component.py scrapes them)
        wanted = f"{spec.prometheus}_bucket" if spec.kind is MetricKind.HISTOGRAM else spec.prometheus
        assert wanted in exposed, (spec.name, wanted, sorted(n for n in exposed if n.startswith(("voice", "voxpulse"))))
    assert "call_id" not in body and "prom-1" not in body
