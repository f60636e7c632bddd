"""One metrics writer per LiveKit worker, however many job processes it runs.

LiveKit runs every call in a job process of its own. Exported straight to the collector, each
process's metrics are series of their own (every process has its own ``service.instance.id``,
which the collector's Prometheus exporter turns into the ``instance`` label): one more series set
per call, for every metric, until the exporter expires them. Merging them in the collector does
not work either: several writers of the same cumulative series overwrite each other, and the
collector's delta-to-cumulative conversions assume a single writer per series.

The relay is that single writer. The job processes export their metrics to it as deltas; it adds
them up into cumulative series under the job processes' resource (their ``service.name``,
``service.version``, ``OTEL_RESOURCE_ATTRIBUTES``...) with one ``service.instance.id`` of its own,
and exports those to the collector -- only the series that changed (plus a keep-alive), so the
exemplars (trace ids) of the last measurements are what the collector exposes. It exports through
the exporter ``configure()`` builds (:func:`telemetry._setup.otlp_exporter`): the same
endpoint, protocol, headers and TLS settings.

Nothing to write for it in a stock LiveKit agent: ``telemetry.configure()`` in the worker's set-up
function (``setup_fnc``, run in each job process) finds the worker's relay, or starts it -- a small
process of its own that lives as long as the worker's main process, found through a Unix socket
named after that process (``VOXPULSE_METRICS_RELAY=auto``, the default). To run it inside the
worker's main process instead (no extra process; what ``python -m agent`` does)::

    with telemetry.relay.worker_relay():               # sets VOXPULSE_METRICS_RELAY for the job processes
        cli.run_app(server)

or by hand::

    relay = MetricsRelay().start()                     # in the worker's main process
    # VOXPULSE_METRICS_RELAY=relay.endpoint in the environment of the job processes (before they start)
    relay.stop()                                       # the last deltas, then a final export

OTLP/HTTP protobuf in; out through the SDK's OTLP exporters.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import logging
import math
import multiprocessing
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Exemplar, Metric
from opentelemetry.sdk.metrics import Exemplar as SdkExemplar
from opentelemetry.sdk.metrics.export import AggregationTemporality as SdkTemporality
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    HistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics.export import Metric as SdkMetric
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope as SdkScope

from telemetry import _env
from telemetry._setup import TelemetryConfig, otlp_exporter, resolve

__all__ = ["MetricsRelay", "worker_relay", "worker_relay_endpoint"]

_logger = logging.getLogger("voxpulse.relay")

KEEPALIVE_S: Final = 300.0  # unchanged series are re-sent this often (the collector expires them at 30 min)
MAX_EXEMPLARS: Final = 5
_INSTANCE: Final = "service.instance.id"
_CUMULATIVE: Final = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA: Final = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_SPAWN_WAIT_S: Final = 15.0  # a job process waits this long for the relay it started to answer


@dataclass
class _Stream:
    """One series: a metric of one scope with one attribute set, summed across the job processes."""

    resource: tuple[Any, ...]  # key of the (job processes') resource it came under
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


def _kv_key(attributes: Any) -> tuple[Any, ...]:
    return tuple(sorted((kv.key, kv.value.SerializeToString(deterministic=True)) for kv in attributes))


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def _attrs(attributes: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in attributes}


class MetricsRelay:
    """See the module docstring.

    ``config`` (default: what ``configure()`` resolves from the environment) gives the exporter to
    the collector, built like ``configure()``'s, and the export interval; ``forward_to`` overrides
    its endpoint, ``exporter`` replaces it. ``resource`` adds attributes to the resource the job
    processes send (``service.instance.id`` is always the relay's own).
    """

    def __init__(
        self, *, config: TelemetryConfig | None = None, forward_to: str | None = None,
        exporter: MetricExporter | None = None, resource: Mapping[str, str] | None = None,
        interval_s: float | None = None, keepalive_s: float = KEEPALIVE_S, port: int = 0,
    ) -> None:
        self.config = config if config is not None else resolve(endpoint=forward_to)
        self._exporter = exporter if exporter is not None else otlp_exporter(self.config, "metrics")
        self.interval_s = interval_s if interval_s is not None else self.config.metric_export_interval_s
        self.keepalive_s = keepalive_s
        self.instance_id = str(uuid.uuid4())
        self._extra_resource = dict(resource or {})
        self._resources: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._streams: dict[tuple[Any, ...], _Stream] = {}
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._stop = threading.Event()
        self.received = 0  # delta requests taken in
        self.exported = 0  # exports the collector took
        self.failed = 0  # exports the collector did not take (the series are sent again with the next)
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = 200
                try:
                    encoding = (self.headers.get("Content-Encoding") or "").lower()
                    if encoding == "gzip":
                        body = gzip.decompress(body)
                    elif encoding == "deflate":
                        body = zlib.decompress(body)
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
        self._server.daemon_threads = True
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
        """Stops taking deltas, then exports what changed (bounded by the exporter's timeout)."""
        self._server.shutdown()
        self._server.server_close()
        self._stop.set()
        if self._threads[1].is_alive():
            self._threads[1].join(timeout_s)
        self.export(timeout_s=timeout_s)
        with contextlib.suppress(Exception):
            self._exporter.shutdown()

    # -- in --------------------------------------------------------------------------------------
    def merge(self, request: ExportMetricsServiceRequest) -> None:
        with self._lock:
            self.received += 1
            for rm in request.resource_metrics:
                resource = [kv for kv in rm.resource.attributes if kv.key != _INSTANCE]
                rkey = _kv_key(resource)
                if rkey not in self._resources:
                    self._resources[rkey] = _attrs(resource)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        self._merge_metric(rkey, sm.scope, metric)

    def _merge_metric(self, rkey: tuple[Any, ...], scope: InstrumentationScope, metric: Metric) -> None:
        kind = metric.WhichOneof("data")
        if kind == "sum":
            for p in metric.sum.data_points:
                s = self._stream(rkey, scope, metric, "sum", p)
                s.monotonic = metric.sum.is_monotonic
                s.as_int = p.WhichOneof("value") == "as_int"
                v = float(p.as_int if s.as_int else p.as_double)
                s.value = s.value + v if metric.sum.aggregation_temporality == _DELTA else v
                self._touch(s, p.time_unix_nano)
                self._keep_exemplars(s, p.exemplars)
        elif kind == "gauge":
            for p in metric.gauge.data_points:
                s = self._stream(rkey, scope, metric, "gauge", p)
                s.as_int = p.WhichOneof("value") == "as_int"
                s.value = float(p.as_int if s.as_int else p.as_double)
                self._touch(s, p.time_unix_nano)
        elif kind == "histogram":
            delta = metric.histogram.aggregation_temporality == _DELTA
            for hp in metric.histogram.data_points:
                s = self._stream(rkey, scope, metric, "histogram", hp)
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

    def _stream(self, rkey: tuple[Any, ...], scope: InstrumentationScope, metric: Metric, kind: str,
                point: Any) -> _Stream:
        key = (rkey, scope.name, scope.version, metric.name, _kv_key(point.attributes))
        s = self._streams.get(key)
        if s is None:
            meta = Metric(name=metric.name, description=metric.description, unit=metric.unit)
            s = _Stream(resource=rkey, scope=scope, metric=meta, kind=kind, attributes=list(point.attributes),
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
        with self._export_lock:
            now = time.monotonic()
            with self._lock:
                due = [s for s in self._streams.values() if s.dirty or now - s.sent_at >= self.keepalive_s]
                for s in due:
                    s.dirty = False  # a merge while the export runs marks it again
                data = self._metrics_data(due)
            if not due:
                return True
            try:
                ok = self._exporter.export(data, timeout_millis=timeout_s * 1000) is MetricExportResult.SUCCESS
            except Exception:  # an exporter error is a failed export, never the relay's end
                _logger.debug("metrics relay: export failed", exc_info=True)
                ok = False
            with self._lock:
                if ok:
                    self.exported += 1
                    for s in due:
                        s.sent_at = now
                else:
                    self.failed += 1
                    for s in due:
                        s.dirty = True
            if not ok and self.failed == 1:
                _logger.warning("metrics relay: the collector did not take the metrics; retrying with the next export")
            return ok

    def _metrics_data(self, streams: list[_Stream]) -> MetricsData:
        # resource -> scope -> metric name -> (first stream, points)
        tree: dict[tuple[Any, ...], dict[tuple[str, str], dict[str, tuple[_Stream, list[Any]]]]] = {}
        for s in streams:
            scopes = tree.setdefault(s.resource, {})
            metrics = scopes.setdefault((s.scope.name, s.scope.version), {})
            _first, points = metrics.setdefault(s.metric.name, (s, []))
            points.append(self._point(s))
        out: list[ResourceMetrics] = []
        for rkey, scopes in tree.items():
            attrs = {**self._resources.get(rkey, {}), **self._extra_resource, _INSTANCE: self.instance_id}
            scope_metrics = []
            for (name, version), metrics in scopes.items():
                sdk_metrics = [SdkMetric(name=m.metric.name, description=m.metric.description,
                                         unit=m.metric.unit, data=self._data(m, points))
                               for m, points in metrics.values()]
                scope_metrics.append(ScopeMetrics(scope=SdkScope(name, version or None), metrics=sdk_metrics,
                                                  schema_url=""))
            out.append(ResourceMetrics(resource=Resource(attrs), scope_metrics=scope_metrics, schema_url=""))
        return MetricsData(resource_metrics=out)

    @staticmethod
    def _data(s: _Stream, points: list[Any]) -> Sum | Gauge | Histogram:
        if s.kind == "histogram":
            return Histogram(data_points=points, aggregation_temporality=SdkTemporality.CUMULATIVE)
        if s.kind == "sum":
            return Sum(data_points=points, aggregation_temporality=SdkTemporality.CUMULATIVE,
                       is_monotonic=s.monotonic)
        return Gauge(data_points=points)

    @staticmethod
    def _point(s: _Stream) -> NumberDataPoint | HistogramDataPoint:
        attrs = _attrs(s.attributes)
        exemplars = [_exemplar(e) for e in s.exemplars]
        if s.kind == "histogram":
            return HistogramDataPoint(
                attributes=attrs, start_time_unix_nano=s.start_ns, time_unix_nano=s.time_ns, count=s.count,
                sum=s.total, bucket_counts=list(s.buckets), explicit_bounds=list(s.bounds),
                min=s.minimum if s.minimum is not None else math.nan,
                max=s.maximum if s.maximum is not None else math.nan, exemplars=exemplars,
            )
        value: int | float = round(s.value) if s.as_int else s.value
        return NumberDataPoint(attributes=attrs, start_time_unix_nano=s.start_ns, time_unix_nano=s.time_ns,
                               value=value, exemplars=exemplars if s.kind == "sum" else [])


def _exemplar(e: Exemplar) -> SdkExemplar:
    value: int | float = e.as_int if e.WhichOneof("value") == "as_int" else e.as_double
    return SdkExemplar(
        filtered_attributes=_attrs(e.filtered_attributes), value=value, time_unix_nano=e.time_unix_nano,
        span_id=int.from_bytes(e.span_id, "big") if e.span_id else None,
        trace_id=int.from_bytes(e.trace_id, "big") if e.trace_id else None,
    )


# ------------------------------------------------------------------------------------------------
# the worker's relay
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def worker_relay(config: TelemetryConfig | None = None) -> Iterator[MetricsRelay | None]:
    """Runs the relay in the worker's main process while the block runs (wrap ``cli.run_app``) and
    points the job processes at it (``VOXPULSE_METRICS_RELAY``, which they inherit). Yields None,
    and does nothing, when the settings (read like ``configure()``'s) export no OTLP metrics or name
    a relay already (a URL, or ``off``)."""
    config = config if config is not None else resolve()
    setting = (config.metrics_relay or "auto").strip().lower()
    if (config.disabled or config.exporter != "otlp" or config.metrics_exporter not in ("otlp", "both")
            or setting != "auto"):
        yield None
        return
    relay = MetricsRelay(config=config).start()
    _env.set_for_children(_env.VOXPULSE_METRICS_RELAY, relay.endpoint)
    try:
        yield relay
    finally:
        _env.set_for_children(_env.VOXPULSE_METRICS_RELAY, None)
        relay.stop()


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which tells a pid reused apart."""
    fields = _stat(pid)
    return fields[19] if fields else None


def _socket_name(owner: int) -> bytes | None:
    """The abstract Unix socket the relay of the worker process ``owner`` listens on (Linux)."""
    ticks = _start_ticks(owner)
    if ticks is None or not sys.platform.startswith("linux"):
        return None
    return f"\0voxpulse-metrics-relay/{os.getuid()}/{owner}/{ticks}".encode()


def _discover(name: bytes, timeout_s: float = 2.0) -> str | None:
    """The endpoint of the relay listening on ``name`` (run by this user), or None."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(name)
            _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                   struct.calcsize("3i")))
            if uid != os.getuid():
                return None
            data = b""
            while not data.endswith(b"\n") and len(data) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return None
    url = data.decode("ascii", "replace").strip()
    return url if url.startswith("http://127.0.0.1:") else None


_warned = False


def worker_relay_endpoint(config: TelemetryConfig) -> str | None:
    """In a LiveKit job process: the endpoint of its worker's relay, started (as a process of its
    own, living as long as the worker's main process) when none answers yet; None where none can
    be had (not Linux, or it did not start: the process then exports its metrics itself)."""
    global _warned
    owner = multiprocessing.parent_process()
    name = _socket_name(owner.pid) if owner is not None and owner.pid is not None else None
    if name is None or owner is None or owner.pid is None:
        if not _warned:
            _warned = True
            _logger.warning("no metrics relay for this worker (needs Linux): each job process exports its "
                            "own series")
        return None
    url = _discover(name)
    if url is not None:
        return url
    args = ["--owner", str(owner.pid), "--interval", str(config.metric_export_interval_s),
            "--protocol", config.protocol]
    args += ["--metrics-endpoint", config.metrics_endpoint]  # where this process would send them
    root = str(Path(__file__).resolve().parent.parent)
    code = f"import sys; sys.path.insert(0, {root!r}); from telemetry.relay import _main; _main()"
    # its own session: the terminal's Ctrl-C reaches the worker, which stops its jobs (their last
    # deltas come in), and the relay follows the worker's exit with a final export
    subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)
    deadline = time.monotonic() + _SPAWN_WAIT_S
    while time.monotonic() < deadline:  # several job processes may start one at once: one binds the name
        url = _discover(name)
        if url is not None:
            return url
        time.sleep(0.05)
    _logger.warning("the worker's metrics relay did not start: this job process exports its own series")
    return None


def _alive(pid: int, ticks: str | None) -> bool:
    """The process runs (not a zombie waiting for its parent to reap it) and is the one we saw."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(pid)
    if fields is None:
        return ticks is None
    return fields[0] not in ("Z", "X") and (ticks is None or fields[19] == ticks)


def _main(argv: list[str] | None = None) -> None:
    """The relay process of a worker (``worker_relay_endpoint`` starts it): binds the worker's relay
    socket (or leaves: another job process's relay won), serves until the worker's main process is
    gone, then takes the last deltas and exports once more."""
    parser = argparse.ArgumentParser(prog="telemetry.relay")
    parser.add_argument("--owner", type=int, required=True)
    parser.add_argument("--interval", type=float, default=None)
    parser.add_argument("--protocol", default=None)
    parser.add_argument("--metrics-endpoint", default=None)
    parser.add_argument("--grace", type=float, default=2.0)
    opts = parser.parse_args(argv)
    # LiveKit's job processes ignore SIGINT/SIGTERM, and ignored signals survive exec
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    name = _socket_name(opts.owner)
    if name is None:
        return
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(name)  # the worker's one relay: a second one leaves here
    except OSError:
        return
    listener.listen(64)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = resolve(metrics_endpoint=opts.metrics_endpoint, protocol=opts.protocol,
                     metric_export_interval_s=opts.interval)
    relay = MetricsRelay(config=config).start()
    line = (relay.endpoint + "\n").encode("ascii")

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.sendall(line)

    threading.Thread(target=serve, name="voxpulse-relay-discovery", daemon=True).start()
    ticks = _start_ticks(opts.owner)
    while _alive(opts.owner, ticks) and not stopping.wait(0.5):
        pass
    listener.close()
    time.sleep(opts.grace)  # job processes still exiting send their last deltas
    relay.stop()


if __name__ == "__main__":
    _main()
