"""One metrics writer per LiveKit worker, however many job processes it runs.

LiveKit runs every call in a job process of its own. Exported straight to the collector, each
process's metrics are series of their own (every process has its own ``service.instance.id``,
which the collector's Prometheus exporter turns into the ``instance`` label): one more series set
per call, for every metric, until the exporter expires them. Merging them in the collector does
not work either: several writers of the same cumulative series overwrite each other, and the
collector's delta-to-cumulative conversions assume a single writer per series.

The relay is that single writer. It runs in the worker's main process; the job processes export
their metrics to it as deltas (``configure()`` does that when ``VOXPULSE_METRICS_RELAY`` names the
relay), and it adds them up into cumulative series under the worker's own resource and exports
those to the collector, only the series that changed (plus a keep-alive), so the exemplars
(trace ids) of the last measurements are what the collector exposes.

    relay = MetricsRelay().start()                     # in the worker's main process
    # VOXPULSE_METRICS_RELAY=relay.endpoint in the environment of the job processes (before they start)
    ...
    relay.stop()                                       # the last deltas, then a final export

OTLP/HTTP protobuf in and out; standard library and the OpenTelemetry protobuf classes only.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Exemplar,
    Histogram,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

__all__ = ["MetricsRelay"]

_logger = logging.getLogger("voxpulse.relay")

KEEPALIVE_S: Final = 300.0  # unchanged series are re-sent this often (the collector expires them at 30 min)
MAX_EXEMPLARS: Final = 5
_CUMULATIVE: Final = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA: Final = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


@dataclass
class _Stream:
    """One series: a metric of one scope with one attribute set, summed across the job processes."""

    scope: InstrumentationScope
    metric: Metric  # name, description, unit (no data)
    kind: str  # "sum" | "gauge" | "histogram"
    attributes: list[KeyValue]
    monotonic: bool = False
    start_ns: int = 0
    time_ns: int = 0
    value: float = 0.0
    as_int: bool = False
    bounds: list[float] = field(default_factory=list)
    buckets: list[int] = field(default_factory=list)
    count: int = 0
    total: float = 0.0
    minimum: float | None = None
    maximum: float | None = None
    exemplars: list[Exemplar] = field(default_factory=list)
    dirty: bool = True
    sent_at: float = 0.0


def _key(scope: InstrumentationScope, name: str, attributes: Any) -> tuple[Any, ...]:
    return (scope.name, scope.version, name,
            tuple(sorted((kv.key, kv.value.SerializeToString(deterministic=True)) for kv in attributes)))


class MetricsRelay:
    """See the module docstring. ``forward_to`` is the collector's OTLP/HTTP base URL."""

    def __init__(
        self, *, forward_to: str = "http://127.0.0.1:4318", resource: Mapping[str, str] | None = None,
        interval_s: float = 20.0, keepalive_s: float = KEEPALIVE_S, port: int = 0,
    ) -> None:
        self.forward_to = forward_to.rstrip("/")
        self.interval_s = interval_s
        self.keepalive_s = keepalive_s
        attrs = {"service.instance.id": str(uuid.uuid4()), **(resource or {})}
        self._resource = Resource(attributes=[_kv(k, v) for k, v in attrs.items()])
        self._streams: dict[tuple[Any, ...], _Stream] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.received = 0  # delta requests taken in
        self.exported = 0  # requests sent on
        self.failed = 0  # requests the collector did not take (retried with the next export)
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = 200
                try:
                    relay.merge(ExportMetricsServiceRequest.FromString(body))
                except Exception:  # a request the relay cannot read is refused, the relay carries on
                    _logger.warning("metrics relay: could not read a request", exc_info=True)
                    status = 400
                payload = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="voxpulse-relay-in", daemon=True),
            threading.Thread(target=self._run, name="voxpulse-relay-out", daemon=True),
        ]

    @property
    def endpoint(self) -> str:
        """The OTLP/HTTP base URL the job processes export their deltas to."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> MetricsRelay:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stops taking deltas, then exports what changed (bounded by ``timeout_s``)."""
        self._server.shutdown()
        self._server.server_close()
        self._stop.set()
        self._threads[1].join(timeout_s)
        self.export(timeout_s=timeout_s)

    # -- in --------------------------------------------------------------------------------------
    def merge(self, request: ExportMetricsServiceRequest) -> None:
        with self._lock:
            self.received += 1
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        self._merge_metric(sm.scope, metric)

    def _merge_metric(self, scope: InstrumentationScope, metric: Metric) -> None:
        kind = metric.WhichOneof("data")
        if kind == "sum":
            for p in metric.sum.data_points:
                s = self._stream(scope, metric, "sum", p)
                s.monotonic = metric.sum.is_monotonic
                s.as_int = p.WhichOneof("value") == "as_int"
                v = float(p.as_int if s.as_int else p.as_double)
                s.value = s.value + v if metric.sum.aggregation_temporality == _DELTA else v
                self._touch(s, p.time_unix_nano)
                self._keep_exemplars(s, p.exemplars)
        elif kind == "gauge":
            for p in metric.gauge.data_points:
                s = self._stream(scope, metric, "gauge", p)
                s.as_int = p.WhichOneof("value") == "as_int"
                s.value = float(p.as_int if s.as_int else p.as_double)
                self._touch(s, p.time_unix_nano)
        elif kind == "histogram":
            delta = metric.histogram.aggregation_temporality == _DELTA
            for hp in metric.histogram.data_points:
                s = self._stream(scope, metric, "histogram", hp)
                bounds = list(hp.explicit_bounds)
                if s.bounds != bounds or not delta:  # first point, new buckets, or a cumulative one
                    s.bounds, s.buckets, s.count, s.total = bounds, [0] * len(hp.bucket_counts), 0, 0.0
                    s.minimum = s.maximum = None
                for i, c in enumerate(hp.bucket_counts):
                    s.buckets[i] += int(c)
                s.count += int(hp.count)
                s.total += float(hp.sum)
                if hp.HasField("min"):
                    s.minimum = hp.min if s.minimum is None else min(s.minimum, hp.min)
                if hp.HasField("max"):
                    s.maximum = hp.max if s.maximum is None else max(s.maximum, hp.max)
                self._touch(s, hp.time_unix_nano)
                self._keep_exemplars(s, hp.exemplars)
        # exponential histograms and summaries are not produced by VoxPulse or LiveKit: dropped

    def _stream(self, scope: InstrumentationScope, metric: Metric, kind: str, point: Any) -> _Stream:
        key = _key(scope, metric.name, point.attributes)
        s = self._streams.get(key)
        if s is None:
            meta = Metric(name=metric.name, description=metric.description, unit=metric.unit)
            s = _Stream(scope=scope, metric=meta, kind=kind, attributes=list(point.attributes),
                        start_ns=int(point.start_time_unix_nano) or time.time_ns())
            self._streams[key] = s
        return s

    @staticmethod
    def _touch(s: _Stream, time_ns: int) -> None:
        s.time_ns = max(s.time_ns, int(time_ns) or time.time_ns())
        s.dirty = True

    @staticmethod
    def _keep_exemplars(s: _Stream, exemplars: Any) -> None:
        if exemplars:
            s.exemplars = [*s.exemplars, *exemplars][-MAX_EXEMPLARS:]

    # -- out -------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.export()

    def export(self, timeout_s: float = 10.0) -> bool:
        """Sends the series that changed (and those due a keep-alive); True when the collector took them."""
        now = time.monotonic()
        with self._lock:
            due = [s for s in self._streams.values() if s.dirty or now - s.sent_at >= self.keepalive_s]
            request = self._request(due)
        if not due:
            return True
        req = urllib.request.Request(
            self.forward_to + "/v1/metrics", data=request.SerializeToString(), method="POST",
            headers={"Content-Type": "application/x-protobuf"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                ok = 200 <= int(resp.status) < 300
        except (urllib.error.URLError, OSError):
            ok = False
        with self._lock:
            if ok:
                self.exported += 1
                for s in due:
                    s.dirty, s.sent_at = False, now
            else:
                self.failed += 1
        if not ok and self.failed == 1:
            _logger.warning("metrics relay: the collector at %s did not take the metrics; retrying",
                            self.forward_to)
        return ok

    def _request(self, streams: list[_Stream]) -> ExportMetricsServiceRequest:
        by_scope: dict[tuple[str, str], ScopeMetrics] = {}
        metrics: dict[tuple[str, str, str], Metric] = {}
        for s in streams:
            sk = (s.scope.name, s.scope.version)
            sm = by_scope.get(sk)
            if sm is None:
                sm = by_scope[sk] = ScopeMetrics(scope=s.scope)
            mk = (*sk, s.metric.name)
            m = metrics.get(mk)
            if m is None:
                m = metrics[mk] = sm.metrics.add()
                m.CopyFrom(s.metric)
            if s.kind == "histogram":
                if not m.HasField("histogram"):
                    m.histogram.CopyFrom(Histogram(aggregation_temporality=_CUMULATIVE))
                hp = m.histogram.data_points.add()
                hp.attributes.extend(s.attributes)
                hp.start_time_unix_nano, hp.time_unix_nano = s.start_ns, s.time_ns
                hp.count, hp.sum = s.count, s.total
                hp.bucket_counts.extend(s.buckets)
                hp.explicit_bounds.extend(s.bounds)
                if s.minimum is not None:
                    hp.min = s.minimum
                if s.maximum is not None:
                    hp.max = s.maximum
                hp.exemplars.extend(s.exemplars)
            else:
                if s.kind == "sum":
                    if not m.HasField("sum"):
                        m.sum.CopyFrom(Sum(aggregation_temporality=_CUMULATIVE, is_monotonic=s.monotonic))
                    p = m.sum.data_points.add()
                    p.exemplars.extend(s.exemplars)
                else:
                    p = m.gauge.data_points.add()
                _number(p, s)
        rm = ResourceMetrics(resource=self._resource, scope_metrics=list(by_scope.values()))
        return ExportMetricsServiceRequest(resource_metrics=[rm])


def _number(p: NumberDataPoint, s: _Stream) -> None:
    p.attributes.extend(s.attributes)
    p.start_time_unix_nano, p.time_unix_nano = s.start_ns, s.time_ns
    if s.as_int:
        p.as_int = round(s.value)
    else:
        p.as_double = s.value


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))




