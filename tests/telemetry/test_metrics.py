"""Metrics: exemplars point at the call's trace; no metric carries a high-cardinality attribute."""

from __future__ import annotations

import asyncio

import telemetry
from telemetry import metrics
from telemetry.semconv import ATTRIBUTES, Attr, CallOutcome
from telemetry.testing import CapturedTelemetry

LABELS = {a.key for a in ATTRIBUTES if a.metric_label}


async def _a_busy_call(call_id: str) -> telemetry.CallScope:
    @telemetry.trace_llm(model="gpt", provider="openai")
    async def llm() -> str:
        await asyncio.sleep(0)
        metrics.record_time_to_first_word(0.42)
        return "ok"

    async with telemetry.call(call_id, caller="+380501234567", room="room-1") as call:
        call.set_scenario("fitting")
        await llm()
        metrics.record_time_to_first_chunk("tts", 0.2, provider="cartesia", model="sonic")
        metrics.order_created()
        metrics.fitting_booked()
        metrics.store_api_error(503)
        metrics.set_operator_queue(3)
        metrics.tool_anomaly("dump_database", "unknown_tool")
        call.add_cost(0.02, stage="llm", provider="openai", model="gpt")
        call.set_outcome(CallOutcome.TRANSFERRED, reason="angry_caller")
    return call


async def test_histogram_exemplars_carry_the_calls_trace_id(cap: CapturedTelemetry) -> None:
    call = await _a_busy_call("ex-1")
    trace_id = int(call.trace_id, 16)
    for name in ("voice.turn.time_to_first_word", "voice.stage.time_to_first_chunk", "voice.call.duration",
                 "voice.call.cost"):
        points = cap.metric_points(name)
        assert points, name
        exemplars = [e for p in points for e in p.exemplars]
        assert exemplars, name
        assert all(e.trace_id == trace_id for e in exemplars), name


async def test_no_metric_has_a_high_cardinality_attribute(cap: CapturedTelemetry) -> None:
    await _a_busy_call("card-1")
    await _a_busy_call("card-2")
    names = set()
    for metric in cap.metrics():
        names.add(metric.name)
        for point in metric.data.data_points:
            keys = set(point.attributes or {})
            assert keys <= LABELS, (metric.name, keys - LABELS)
            values = " ".join(str(v) for v in (point.attributes or {}).values())
            assert "card-" not in values and "380" not in values and "room-1" not in values
    assert Attr.CALL_ID not in LABELS
    assert {"voice.calls", "voice.transfers", "voice.orders.created", "voice.fittings.booked",
            "voice.store_api.errors", "voice.operator.queue_length", "voice.tool.anomalies",
            "voice.api.spend", "voice.calls.active"} <= names


async def test_business_counters(cap: CapturedTelemetry) -> None:
    await _a_busy_call("b-1")
    calls = cap.metric_points("voice.calls")
    assert [(dict(p.attributes), p.value) for p in calls] == [
        ({Attr.CALL_OUTCOME: "transferred", Attr.CALL_SCENARIO: "fitting", Attr.CALL_DIRECTION: "inbound"}, 1)
    ]
    (active,) = cap.metric_points("voice.calls.active")
    assert active.value == 0
    (errors,) = cap.metric_points("voice.store_api.errors")
    assert dict(errors.attributes) == {Attr.HTTP_STATUS: 503}


def test_unchanged_points_are_not_re_exported_so_exemplars_survive() -> None:
    """A flush followed by shutdown (or an idle periodic export) must not send the same counts
    again without exemplars: the collector's Prometheus exporter would expose that point instead."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        HistogramDataPoint,
        MetricExporter,
        MetricExportResult,
        MetricsData,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider

    from telemetry._processors import ChangedPointsExporter

    class Capture(MetricExporter):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[MetricsData] = []

        def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
                   **kwargs: object) -> MetricExportResult:
            self.batches.append(metrics_data)
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
            return None

    def points(batch: MetricsData) -> list[HistogramDataPoint]:
        return [p for rm in batch.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                for p in m.data.data_points if isinstance(p, HistogramDataPoint)]

    capture = Capture()
    wrapped = ChangedPointsExporter(capture)
    provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(wrapped, export_interval_millis=3_600_000)])
    histogram = provider.get_meter("t").create_histogram("ttfw", unit="s")
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("turn"):
        histogram.record(0.7)
    provider.force_flush()
    (first,) = [points(b) for b in capture.batches]
    assert first[0].count == 1 and first[0].exemplars  # the exemplar goes out once
    provider.force_flush()  # nothing new: nothing sent, the collector keeps the exemplar
    provider.shutdown()
    assert len(capture.batches) == 1
    # a changed series is sent again; a stale one after the keepalive
    capture2 = Capture()
    wrapped2 = ChangedPointsExporter(capture2, keepalive_s=0.0)
    provider2 = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(wrapped2, export_interval_millis=3_600_000)])
    counter = provider2.get_meter("t").create_counter("calls")
    counter.add(1)
    provider2.force_flush()
    provider2.force_flush()
    assert len(capture2.batches) == 2
    provider2.shutdown()
    capture3 = Capture()
    provider3 = MeterProvider(metric_readers=[
        PeriodicExportingMetricReader(ChangedPointsExporter(capture3), export_interval_millis=3_600_000)])
    counter = provider3.get_meter("t").create_counter("calls")
    counter.add(1)
    provider3.force_flush()
    counter.add(1)
    provider3.force_flush()
    assert len(capture3.batches) == 2
    provider3.shutdown()


def test_each_new_meter_provider_gets_its_own_instruments() -> None:
    # A freed provider's address is soon reused; instruments cached by id() then recorded into the
    # dead provider and the new one saw nothing (a CI flake: 6 of 200 captures lost their points).
    import gc

    from telemetry.testing import capture_telemetry

    lost = 0
    for _ in range(200):
        with capture_telemetry(livekit=False, libraries=False) as fresh:
            metrics.store_api_error(500)
            lost += not fresh.metric_points("voice.store_api.errors")
        del fresh
        gc.collect()
    assert lost == 0
