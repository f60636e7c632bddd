"""Test helpers: capture spans and metrics in memory, with deterministic ids.

    from telemetry.testing import capture_telemetry

    def test_my_tool():
        with capture_telemetry() as cap:
            asyncio.run(handle_call())
        assert cap.spans_named("call")[0].attributes["call_id"] == "c-1"

The capture is ``configure()`` itself, as Logfire's ``capfire`` is ``logfire.configure()``: the
in-memory exporter and metric reader are injected through configure's own parameters, so spans go
through the production pipeline -- ``call_id`` stamped at start, the queue that holds the spans of
a LiveKit job until its call's id is known, redaction per ``content`` by the exporter wrapper --
and only the OTLP export is replaced. Reading the spans exports, on the reading thread, what the
export thread would send next (the queue, and the held spans whose call is known by then); spans
still held for their call appear when the block ends (the pipeline's shutdown releases them, as in
production). LiveKit Agents' spans, asyncpg's and Redis's are routed here too while the capture
is active.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from telemetry._callmap import CALLS
from telemetry._processors import QueueingSpanProcessor
from telemetry._setup import Telemetry, configure
from telemetry.redaction import ContentMode

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
    #: the handle ``configure()`` returned for this capture (``None``: spans are read as exported)
    handle: Telemetry | None = None

    def spans(self) -> list[ReadableSpan]:
        """The spans exported so far: first exports what is queued (see the module docstring)."""
        processor = self.handle._span_processor if self.handle is not None else None
        if isinstance(processor, QueueingSpanProcessor):
            processor.export_ready()
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
    """Routes all telemetry into memory for the duration of the block, through ``configure()``;
    at the end that pipeline is shut down and telemetry is off (as after ``Telemetry.shutdown``).

    Like a second ``configure()`` call, the capture replaces the pipeline configured before it.
    The OpenTelemetry global providers are left alone (they can be set once per process), and the
    root logger too. Exemplars go through the same filter as with ``configure()``
    (``trace_sampling_percent``): only from traces the collectors' tail sampling keeps.
    """
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    ids: IdGenerator | None = IncrementalIdGenerator() if deterministic_ids else None
    CALLS.clear()  # trace ids restart at 1: no call of an earlier capture may claim them
    handle = configure(
        service_name=service_name, service_version=None, environment=None, content=content,
        disabled=False, metrics_exporter="none", span_exporter=exporter, additional_metric_readers=[reader],
        id_generator=ids, trace_sampling_percent=trace_sampling_percent, livekit=livekit,
        libraries=libraries, set_global_providers=False, setup_logs=False,
    )
    assert handle.tracer_provider is not None and handle.meter_provider is not None
    try:
        yield CapturedTelemetry(exporter, reader, handle.tracer_provider, handle.meter_provider, handle=handle)
    finally:
        handle.shutdown_sync(timeout=10.0)
