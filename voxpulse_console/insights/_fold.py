"""LiveKit's DELTA metrics from every job process, folded into cumulative series the receiver writes alone.

A LiveKit job process exports its metrics every 30 s with DELTA temporality, stamps every point with
its job (``room_id``, ``job_id``) and its resource with a random ``service.instance.id``. Forwarded as
they come, each job is a series of its own in Prometheus (a new series per call), and a delta stream
ends with its process. :class:`DeltaFolder` makes the receiver the single writer instead:

* the per-job keys (:data:`PER_JOB_KEYS` on points, ``service.instance.id`` on the resource) are
  dropped, so the jobs of one agent add up in one stream per metric and label set;
* each delta sum and histogram point is added to that stream's running total, and the total goes out
  as a CUMULATIVE point whose start is when the receiver first saw the stream (a receiver restart is a
  counter reset, which Prometheus handles);
* gauges go through with the per-job keys dropped (the last value wins); cumulative and exponential
  points from an exporter that sends them go through untouched.

The totals live in the receiver's memory, bounded by the streams' count (the labels left are LiveKit's
model, provider and operation names, and what the agent's own metrics carry): one receiver per
deployment writes them. Two receivers behind a balancer would each write their share as the same
series; give each its own ``service.instance.id`` first (docs/insights.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["PER_JOB_KEYS", "DeltaFolder"]

#: the attributes LiveKit stamps on every point of a job: one value per call
PER_JOB_KEYS: Final = frozenset({"room_id", "job_id", "lk.simulation.job_id"})
#: the resource attribute that differs per process
PER_PROCESS_KEYS: Final = frozenset({"service.instance.id"})

DELTA: Final = 1  # AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE: Final = 2


@dataclass
class _Stream:
    start_ns: int
    last_ns: int = 0
    value: float | int = 0
    count: int = 0
    total: float = 0.0
    bounds: tuple[float, ...] = ()
    buckets: list[int] = field(default_factory=list)
    low: float | None = None
    high: float | None = None


def _key_of(attributes: Any, drop: frozenset[str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((kv.key, kv.SerializeToString().hex()) for kv in attributes if kv.key not in drop))


def _strip(attributes: Any, drop: frozenset[str]) -> None:
    keep = [kv for kv in attributes if kv.key not in drop]
    del attributes[:]
    attributes.extend(keep)


class DeltaFolder:
    """Folds OTLP metrics requests (see the module's docstring); one per receiver process."""

    def __init__(self) -> None:
        self._streams: dict[tuple[Any, ...], _Stream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def fold(self, body: bytes) -> bytes | None:
        """An ``ExportMetricsServiceRequest`` -> the request to forward, or None when nothing is left.
        ValueError when ``body`` is not such a request."""
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        request = ExportMetricsServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise ValueError(f"not an OTLP metrics request ({exc})") from exc
        now = time.time_ns()
        for rm in request.resource_metrics:
            _strip(rm.resource.attributes, PER_PROCESS_KEYS)
            resource = _key_of(rm.resource.attributes, frozenset())
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    self._fold_metric(metric, (resource, sm.scope.name, metric.name), now)
        left = any(m.WhichOneof("data") for rm in request.resource_metrics for sm in rm.scope_metrics
                   for m in sm.metrics)
        return request.SerializeToString() if left else None

    def _fold_metric(self, metric: Any, where: tuple[Any, ...], now: int) -> None:
        kind = metric.WhichOneof("data")
        if kind == "gauge":
            for p in metric.gauge.data_points:
                _strip(p.attributes, PER_JOB_KEYS)
            return
        if kind not in ("sum", "histogram"):
            return  # exponential histograms and summaries: as they came
        data = getattr(metric, kind)
        if data.aggregation_temporality != DELTA:
            return
        for p in data.data_points:
            _strip(p.attributes, PER_JOB_KEYS)
            key = (*where, kind, _key_of(p.attributes, frozenset()))
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = _Stream(start_ns=min(p.start_time_unix_nano or now, now))
            if kind == "sum":
                self._add_sum(stream, p)
            else:
                self._add_histogram(stream, p)
            p.start_time_unix_nano = stream.start_ns
            # never older than what the stream sent (jobs' clocks and batches interleave)
            stream.last_ns = p.time_unix_nano = max(stream.last_ns, p.time_unix_nano)
        # the same stream twice in one request (two jobs in one batch): its last point holds the total
        seen: dict[tuple[Any, ...], Any] = {}
        for p in data.data_points:
            seen[_key_of(p.attributes, frozenset())] = p
        if len(seen) < len(data.data_points):
            last = []
            for p in seen.values():
                copy = type(p)()
                copy.CopyFrom(p)
                last.append(copy)
            del data.data_points[:]
            data.data_points.extend(last)
        data.aggregation_temporality = CUMULATIVE

    @staticmethod
    def _add_sum(stream: _Stream, p: Any) -> None:
        if p.WhichOneof("value") == "as_int":
            stream.value = int(stream.value) + p.as_int
            p.as_int = int(stream.value)
        else:
            stream.value = float(stream.value) + p.as_double
            p.as_double = float(stream.value)

    @staticmethod
    def _add_histogram(stream: _Stream, p: Any) -> None:
        bounds = tuple(p.explicit_bounds)
        if stream.buckets and bounds != stream.bounds:  # the buckets changed: a new stream from here
            stream.count, stream.total, stream.buckets, stream.low, stream.high = 0, 0.0, [], None, None
        stream.bounds = bounds
        counts = list(p.bucket_counts)
        stream.buckets = [a + b for a, b in zip(stream.buckets, counts, strict=True)] if stream.buckets else counts
        stream.count += p.count
        stream.total += p.sum
        if p.HasField("min"):
            stream.low = p.min if stream.low is None else min(stream.low, p.min)
        if p.HasField("max"):
            stream.high = p.max if stream.high is None else max(stream.high, p.max)
        p.count, p.sum = stream.count, stream.total
        del p.bucket_counts[:]
        p.bucket_counts.extend(stream.buckets)
        if stream.low is not None:
            p.min = stream.low
        if stream.high is not None:
            p.max = stream.high
