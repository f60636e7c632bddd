"""Test helpers: capture spans and metrics in memory, with deterministic ids.

    from telemetry.testing import capture_telemetry

    def test_my_tool():
        with capture_telemetry() as cap:
            asyncio.run(handle_call())
        assert cap.spans_named("call")[0].attributes["call_id"] == "c-1"

Spans are stored as the exporter would send them: stamped with ``call_id`` the way ``configure()``'s
processor does it and redacted per ``content`` by the same exporter wrapper, but exported at once
(no batching queue, no OTLP). LiveKit Agents' spans, asyncpg's and Redis's are routed here too while
the capture is active.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from telemetry._callmap import CALLS
from telemetry._processors import CallIdProcessor, SafeExporter
from telemetry._setup import install, metric_views
from telemetry._state import STATE
from telemetry.redaction import ContentMode, Redactor
from telemetry.sampling import KeptTraceExemplarFilter

__all__ = ["CapturedTelemetry", "IncrementalIdGenerator", "capture_telemetry"]


class IncrementalIdGenerator(IdGenerator):
    """Trace ids 1, 2, 3, ... and span ids 1, 2, 3, ...: stable across runs."""

    def __init__(self) -> None:
        self._trace = 0
        self._span = 0

    def generate_trace_id(self) -> int:
        self._trace += 1
        return self._trace

    def generate_span_id(self) -> int:
        self._span += 1
        return self._span


@dataclass
class CapturedTelemetry:
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    # The SDK resets exemplars on every collection; keep the ones seen per point so repeated
    # reads return them all.
    _exemplars: dict[tuple[str, frozenset[Any]], list[Any]] = field(default_factory=dict)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def spans_named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def clear(self) -> None:
        self.exporter.clear()

    def metrics(self) -> list[Metric]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        out: list[Metric] = []
        for metric in (m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics):
            points = []
            for point in metric.data.data_points:
                key = (metric.name, frozenset((point.attributes or {}).items()))
                seen = self._exemplars.setdefault(key, [])
                seen.extend(getattr(point, "exemplars", None) or ())
                del seen[:-50]
                points.append(replace(point, exemplars=list(seen)) if hasattr(point, "exemplars") else point)
            out.append(replace(metric, data=replace(metric.data, data_points=points)))  # type: ignore[arg-type]
        return out

    def metric_points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` (e.g. ``voice.call.duration``), all attribute sets."""
        points: list[Any] = []
        for metric in self.metrics():
            if metric.name == name:
                points.extend(metric.data.data_points)
        return points


@contextmanager
def capture_telemetry(
    *, content: ContentMode = "redacted", deterministic_ids: bool = True, livekit: bool = True,
    libraries: bool = True, service_name: str = "voxpulse-test", trace_sampling_percent: float = 100.0,
) -> Iterator[CapturedTelemetry]:
    """Routes all telemetry into memory for the duration of the block, then restores the previous state.

    Exemplars go through the same filter as with ``configure()`` (``trace_sampling_percent`` as
    ``VOXPULSE_TRACE_SAMPLING_PERCENT``): only from traces the collectors' tail sampling keeps.
    """
    saved = (STATE.enabled, STATE.tracer, STATE.meter_provider, STATE.redactor, STATE.service_version)
    resource = Resource.create({"service.name": service_name})
    tracer_provider = TracerProvider(
        resource=resource, shutdown_on_exit=False,
        id_generator=IncrementalIdGenerator() if deterministic_ids else None,
    )
    redactor = Redactor(content=content)
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(CallIdProcessor())
    tracer_provider.add_span_processor(SimpleSpanProcessor(SafeExporter(exporter, redactor)))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False,
                                   views=metric_views(),
                                   exemplar_filter=KeptTraceExemplarFilter(trace_sampling_percent))
    install(tracer_provider, meter_provider, redactor=redactor, service_version=None,
            livekit=livekit, libraries=libraries)
    CALLS.clear()  # trace ids restart at 1: no call of an earlier capture may claim them
    try:
        yield CapturedTelemetry(exporter, reader, tracer_provider, meter_provider)
    finally:
        STATE.enabled, STATE.tracer, STATE.meter_provider, STATE.redactor, STATE.service_version = saved
        tracer_provider.shutdown()
        meter_provider.shutdown()
