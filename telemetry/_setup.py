"""configure(): one keyword-only call sets up tracing, metrics and logs.

Precedence: explicit argument > environment variable (``_env``) > default. Export always happens
off the event loop (BatchSpanProcessor thread, periodic metric reader thread), and the handle's
``flush``/``shutdown`` run in a daemon thread with a deadline, so they never block the loop -- even
with a dead collector, where the SDK's own shutdown can block for 30 s.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import importlib
import logging
import multiprocessing.util
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, overload

from opentelemetry import metrics as metrics_api
from opentelemetry import trace
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from telemetry import _env
from telemetry import metrics as _metrics
from telemetry._env import Exporter, MetricsExporter, Protocol
from telemetry._instrumentation import _in_livekit_job, instrument_libraries, preload_libraries, route_livekit
from telemetry._processors import CallIdProcessor, ChangedPointsExporter, QueueingSpanProcessor, SafeExporter
from telemetry._state import STATE, TRACER_NAME
from telemetry.exceptions import TelemetryConfigError
from telemetry.redaction import ContentMode, Redactor
from telemetry.sampling import KeptTraceExemplarFilter
from telemetry.semconv import DISTRO, LIVEKIT_METER, LIVEKIT_METRIC_LABELS, Attr

__all__ = [
    "Signal", "Telemetry", "TelemetryConfig", "configure", "install", "metric_views", "otlp_exporter", "preload",
    "resolve",
]

Signal = Literal["traces", "metrics"]

_logger = logging.getLogger("voxpulse")
# The OTLP exporters log every retry; our SafeExporter logs failure and recovery once each.
_RETRY_LOGGERS = ("opentelemetry.exporter.otlp.proto.http", "opentelemetry.exporter.otlp.proto.grpc",
                  "opentelemetry.sdk._shared_internal")


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """The resolved configuration (arguments, then environment, then defaults).

    ``endpoint`` is the collector's base URL: the argument, else ``OTEL_EXPORTER_OTLP_ENDPOINT``,
    else the protocol's default (``_env.OTLP_HTTP_ENDPOINT`` / ``OTLP_GRPC_ENDPOINT``).
    ``traces_endpoint`` / ``metrics_endpoint`` are the URLs each signal is sent to, resolved once
    here (:func:`_signal_endpoint`) and used as they are by :func:`otlp_exporter`.
    """

    disabled: bool
    service_name: str
    service_version: str | None
    environment: str | None
    exporter: Exporter
    endpoint: str
    protocol: Protocol
    metrics_exporter: MetricsExporter
    prometheus_addr: str
    content: ContentMode
    max_attribute_length: int
    metric_export_interval_s: float
    traces_endpoint: str = _env.OTLP_HTTP_ENDPOINT + "/v1/traces"
    metrics_endpoint: str = _env.OTLP_HTTP_ENDPOINT + "/v1/metrics"
    metrics_relay: str | None = None
    """The worker's metrics relay: ``"auto"`` (default), ``"off"``, or its OTLP/HTTP base URL; on the
    handle of a configured process, the relay's URL the metrics go to, or None (exported directly)."""
    trace_sampling_percent: float = 100.0
    livekit: bool = True  # LiveKit Agents' spans routed into this pipeline
    libraries: bool = True  # asyncpg and Redis instrumented


def _distro_version() -> str:
    from telemetry import __version__  # the package's, read once it is imported (this module is part of it)

    return __version__


def _run_bounded(fn: Callable[[], object], timeout: float) -> bool:
    """Runs ``fn`` in a daemon thread; True if it finished within ``timeout`` seconds."""
    done = threading.Event()

    def target() -> None:
        try:
            fn()
        except Exception:  # shutdown of a broken exporter must not raise into the caller
            _logger.debug("telemetry shutdown step failed", exc_info=True)
        finally:
            done.set()

    threading.Thread(target=target, name="voxpulse-flush", daemon=True).start()
    return done.wait(timeout)


class _OffLoop:
    """One long-lived thread that runs flushes and shutdowns for event loops. Starting a thread
    blocks its starter until the thread runs (``Thread.start`` waits on an event): on a loaded
    machine that is tens of milliseconds, so a flush must not start one on a call's loop. This
    thread is started by :func:`configure` (a worker's set-up function, before any call) and takes
    work through a queue whose ``put`` never blocks."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:  # a forked child has the queue but not the thread
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="voxpulse-offloop", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                job()
            except Exception:  # pragma: no cover - jobs catch their own errors
                _logger.debug("off-loop job failed", exc_info=True)

    def submit(self, job: Callable[[], None]) -> None:
        if self._thread is None:
            self.start()  # only when configure() never ran here: once, and then never again
        self._queue.put(job)


_OFF_LOOP = _OffLoop()


class Telemetry:
    """Handle returned by :func:`configure`."""

    def __init__(
        self, config: TelemetryConfig, tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None, exporter: SafeExporter | None,
        span_processor: QueueingSpanProcessor | None, metric_exporter: ChangedPointsExporter | None = None,
    ) -> None:
        self.config = config
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._exporter = exporter
        self._span_processor = span_processor
        self._closed = False
        self._abandoned = 0
        self._metric_exporter = metric_exporter
        _OFF_LOOP.start()  # here, in the set-up, so that flush() and shutdown() never start a thread

    @property
    def dropped_spans(self) -> int:
        """Spans not delivered: queue full, the exporter failed, or still unexported when a
        flush/shutdown deadline passed."""
        queued = self._span_processor.dropped if self._span_processor else 0
        failed = self._exporter.failed_spans if self._exporter else 0
        return queued + failed + self._abandoned

    def _count_abandoned(self, action: str) -> None:
        """After a shutdown deadline passed: the spans still queued or in the exporter are counted
        (voxpulse.export.dropped and dropped_spans) and reported in one log line, never silently
        lost; then the exporters are stopped, so no retry loop outlives the deadline."""
        if self._metric_exporter is not None:
            self._metric_exporter.shutdown()
        if self._span_processor is None or self._exporter is None:
            return
        left = self._span_processor.pending + self._exporter.in_flight
        self._exporter.abort()
        if left <= 0:
            return
        self._abandoned += left
        _metrics._export_dropped(left)
        _logger.warning("telemetry %s deadline passed with %d spans not exported (collector slow or down)",
                        action, left)

    def _flush_blocking(self, timeout: float) -> None:
        deadline_ms = int(timeout * 1000)
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush(deadline_ms)
        if self.meter_provider is not None:
            self.meter_provider.force_flush(deadline_ms)

    def _shutdown_blocking(self, timeout: float) -> None:
        start = time.monotonic()
        # Spans: flush, then stop. Metrics: the reader's shutdown collects and exports once more
        # itself; a flush before it would only add an export.
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush(int(timeout * 1000))
        left = max(0.1, timeout - (time.monotonic() - start))
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown(timeout_millis=left * 1000)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Exports what is queued; returns False if the deadline passed. Never blocks the loop."""
        return await self._in_thread(lambda: self._flush_blocking(timeout), timeout)

    async def shutdown(self, timeout: float = 5.0) -> bool:
        """Flushes and stops exporting; returns False if the deadline passed. Never blocks the loop."""
        if self._closed:
            return True
        self._closed = True
        _deactivate(self)
        ok = await self._in_thread(lambda: self._shutdown_blocking(timeout), timeout)
        if not ok:
            self._count_abandoned("shutdown")
        return ok

    def shutdown_sync(self, timeout: float = 5.0) -> bool:
        """Blocking form for process exit or sync code; bounded by ``timeout``."""
        if self._closed:
            return True
        self._closed = True
        _deactivate(self)
        ok = _run_bounded(lambda: self._shutdown_blocking(timeout), timeout)
        if not ok:
            self._count_abandoned("shutdown")
        return ok

    @staticmethod
    async def _in_thread(fn: Callable[[], None], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()

        def target() -> None:
            ok = _run_bounded(fn, timeout)

            def resolve() -> None:
                if not fut.done():
                    fut.set_result(ok)

            with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
                loop.call_soon_threadsafe(resolve)

        _OFF_LOOP.submit(target)  # never starts a thread on the caller's loop
        return await fut


_active: Telemetry | None = None
_active_key: TelemetryConfig | None = None
_globals_set = False
_atexit_registered = False


def _deactivate(handle: Telemetry) -> None:
    global _active, _active_key
    if _active is handle:
        _active = None
        _active_key = None
        STATE.enabled = False
        STATE.tracer = trace.NoOpTracer()
        STATE.meter_provider = None


def _at_exit() -> None:
    if _active is not None:
        _active.shutdown_sync(timeout=3.0)


def _resolve(
    *, service_name: str | None, service_version: str | None, environment: str | None,
    exporter: Exporter | None, endpoint: str | None, protocol: Protocol | None,
    metrics_exporter: MetricsExporter | None, prometheus_addr: str | None, content: ContentMode | None,
    metric_export_interval_s: float | None,
    disabled: bool | None, metrics_relay: str | None = None, trace_sampling_percent: float | None = None,
    livekit: bool = True, libraries: bool = True, metrics_endpoint: str | None = None,
) -> TelemetryConfig:
    interval_ms = _env.number(_env.OTEL_METRIC_EXPORT_INTERVAL, None, minimum=100)
    protocol = _env.choice(_env.OTEL_EXPORTER_OTLP_PROTOCOL, protocol, _env.PROTOCOLS)
    default = _env.OTLP_GRPC_ENDPOINT if protocol == "grpc" else _env.OTLP_HTTP_ENDPOINT
    base = _env.text(_env.OTEL_EXPORTER_OTLP_ENDPOINT, endpoint) or default
    return TelemetryConfig(
        disabled=_env.flag(_env.OTEL_SDK_DISABLED, disabled),
        service_name=str(_env.text(_env.OTEL_SERVICE_NAME, service_name)),
        service_version=service_version,
        environment=environment,
        exporter=_env.choice(_env.VOXPULSE_EXPORTER, exporter, _env.EXPORTERS),
        endpoint=base,
        protocol=protocol,
        metrics_exporter=_env.choice(_env.VOXPULSE_METRICS_EXPORTER, metrics_exporter, _env.METRICS_EXPORTERS),
        prometheus_addr=str(_env.text(_env.VOXPULSE_PROMETHEUS_ADDR, prometheus_addr)),
        content=_env.choice(_env.VOXPULSE_CONTENT, content, _env.CONTENT_MODES),
        max_attribute_length=int(_env.number(_env.VOXPULSE_MAX_ATTRIBUTE_LENGTH, None, minimum=64)),
        metric_export_interval_s=(
            metric_export_interval_s if metric_export_interval_s is not None else interval_ms / 1000
        ),
        traces_endpoint=_signal_endpoint("traces", base, protocol, explicit=endpoint is not None),
        metrics_endpoint=metrics_endpoint or _signal_endpoint("metrics", base, protocol,
                                                              explicit=endpoint is not None),
        metrics_relay=_env.text(_env.VOXPULSE_METRICS_RELAY, metrics_relay),
        trace_sampling_percent=_percent(_env.VOXPULSE_TRACE_SAMPLING_PERCENT, trace_sampling_percent),
        livekit=livekit,
        libraries=libraries,
    )


def resolve(
    *, service_name: str | None = None, endpoint: str | None = None, protocol: Protocol | None = None,
    metric_export_interval_s: float | None = None, metrics_relay: str | None = None,
    metrics_endpoint: str | None = None,
) -> TelemetryConfig:
    """The configuration ``configure()`` would resolve from these arguments and the environment:
    the one reader of the settings (the worker's metrics relay, the ``voxpulse`` CLI and the example
    agent read theirs through it). ``metrics_endpoint``: the metrics' full URL, as resolved by
    another process (the relay started by a job process sends where that process would have)."""
    return _resolve(
        service_name=service_name, service_version=None, environment=None, exporter=None, endpoint=endpoint,
        protocol=protocol, metrics_exporter=None, prometheus_addr=None, content=None,
        metric_export_interval_s=metric_export_interval_s, disabled=None, metrics_relay=metrics_relay,
        metrics_endpoint=metrics_endpoint,
    )


_SIGNAL_ENDPOINTS: Final = {
    "traces": _env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "metrics": _env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
}


def _signal_endpoint(signal: Signal, base: str, protocol: Protocol, *, explicit: bool) -> str:
    """Where ``signal`` goes (the OTLP exporter spec's rule): an explicit base URL wins, else the
    signal's own variable (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, as it is), else ``base``; over
    http/protobuf a base URL gets the ``/v1/<signal>`` path, gRPC takes it as it is."""
    if not explicit and (own := _env.text(_SIGNAL_ENDPOINTS[signal])):
        return own
    return base if protocol == "grpc" else f"{base.rstrip('/')}/v1/{signal}"


def _percent(var: _env.EnvVar, explicit: float | None = None) -> float:
    value = _env.number(var, explicit)
    if value > 100:
        source = "argument" if explicit is not None else f"environment variable {var.name}"
        raise TelemetryConfigError(f"{source} is {value}; expected 0 to 100")
    return value


def _span_exporter(config: TelemetryConfig) -> SpanExporter | None:
    if config.exporter == "none":
        return None
    if config.exporter == "console":
        from telemetry.span_tree import ConsoleTreeExporter

        return ConsoleTreeExporter()
    return otlp_exporter(config, "traces")


def _grpc_insecure(endpoint: str) -> bool:
    """gRPC in plaintext? ``https://`` never, ``http://`` always; without a scheme as
    ``OTEL_EXPORTER_OTLP_INSECURE`` says, else plaintext (the collector on this machine)."""
    scheme = endpoint.partition("://")[0].lower() if "://" in endpoint else ""
    if scheme in ("http", "https"):
        return scheme == "http"
    insecure = _env.optional_flag(_env.OTEL_EXPORTER_OTLP_INSECURE)
    return True if insecure is None else insecure


@overload
def otlp_exporter(config: TelemetryConfig, signal: Literal["traces"]) -> SpanExporter: ...
@overload
def otlp_exporter(
    config: TelemetryConfig, signal: Literal["metrics"], *, relay: str | None = None,
) -> MetricExporter: ...
def otlp_exporter(
    config: TelemetryConfig, signal: Signal, *, relay: str | None = None,
) -> SpanExporter | MetricExporter:
    """The one OTLP exporter factory: spans and metrics of ``configure()``, the worker's metrics relay
    (``telemetry.relay``) and a job process's leg to that relay all come from here.

    It decides per signal the URL (``config.traces_endpoint`` / ``metrics_endpoint``, resolved once
    by :func:`resolve`), the protocol (``config.protocol``) and, over gRPC, plaintext or TLS
    (:func:`_grpc_insecure`). The exporters add what the OTel SDK reads itself, per signal:
    headers (``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]HEADERS``), certificates
    (``..._CERTIFICATE``, ``..._CLIENT_KEY``, ``..._CLIENT_CERTIFICATE``), compression and timeout.

    ``relay``: the base URL of the worker's metrics relay (metrics only): deltas over OTLP/HTTP on
    the loopback, uncompressed, whatever the collector's protocol.
    """
    if relay is not None:
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as RelayExporter

        kinds: tuple[type, ...] = (
            Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge,
        )
        delta: dict[type, AggregationTemporality] = dict.fromkeys(kinds, AggregationTemporality.DELTA)
        return RelayExporter(endpoint=relay.rstrip("/") + "/v1/metrics", preferred_temporality=delta,
                             compression=Compression.NoCompression)
    url = config.traces_endpoint if signal == "traces" else config.metrics_endpoint
    if config.protocol == "grpc":
        insecure = _grpc_insecure(url)
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

            return GrpcSpans(endpoint=url, insecure=insecure)
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

        return GrpcMetrics(endpoint=url, insecure=insecure)
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

        return HttpSpans(endpoint=url)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

    return HttpMetrics(endpoint=url)


def _metric_readers(config: TelemetryConfig) -> tuple[list[MetricReader], ChangedPointsExporter | None]:
    """The configured readers, and the OTLP metric exporter among them (stopped at a shutdown deadline).
    ``config.metrics_relay`` is resolved: the relay's URL (a job process of a LiveKit worker: deltas to
    the worker's relay, the one writer of the worker's series) or None."""
    readers: list[MetricReader] = []
    otlp: ChangedPointsExporter | None = None
    if config.metrics_exporter in ("otlp", "both") and config.exporter == "otlp":
        exporter = otlp_exporter(config, "metrics", relay=config.metrics_relay)
        otlp = ChangedPointsExporter(exporter)
        readers.append(PeriodicExportingMetricReader(
            otlp, export_interval_millis=config.metric_export_interval_s * 1000,
        ))
    if config.metrics_exporter in ("prometheus", "both"):
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        host, _, port = config.prometheus_addr.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1")
        readers.append(PrometheusMetricReader())
    return readers, otlp


def install(
    tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None, *, redactor: Redactor,
    service_version: str | None, livekit: bool = True, libraries: bool = True,
) -> None:
    """Points the library (and LiveKit, asyncpg, Redis) at these providers."""
    STATE.redactor = redactor
    STATE.service_version = service_version
    STATE.meter_provider = meter_provider
    if livekit:
        # with no provider LiveKit is routed to a no-op one: it would otherwise keep a previous one
        route_livekit(tracer_provider or trace.NoOpTracerProvider(), redactor.content)
    if tracer_provider is None:
        STATE.enabled = False
        STATE.tracer = trace.NoOpTracer()
        return
    STATE.tracer = tracer_provider.get_tracer(TRACER_NAME)
    STATE.enabled = True
    if libraries:
        instrument_libraries(tracer_provider)


def configure(
    *,
    service_name: str | None = None,
    service_version: str | None = None,
    environment: str | None = None,
    exporter: Exporter | None = None,
    endpoint: str | None = None,
    protocol: Protocol | None = None,
    metrics_exporter: MetricsExporter | None = None,
    prometheus_addr: str | None = None,
    content: ContentMode | None = None,
    metric_export_interval_s: float | None = None,
    disabled: bool | None = None,
    additional_span_processors: Sequence[SpanProcessor] = (),
    additional_metric_readers: Sequence[MetricReader] = (),
    setup_logs: bool | None = None,
    trace_sampling_percent: float | None = None,
    span_exporter: SpanExporter | None = None,
    id_generator: IdGenerator | None = None,
    livekit: bool = True,
    libraries: bool = True,
    set_global_providers: bool = True,
) -> Telemetry:
    """Sets up tracing, metrics and logs for the agent process; returns the handle.

    Safe to call twice: the same settings return the same handle; other settings replace the
    previous pipeline (the old one is shut down in the background).

    ``additional_span_processors`` / ``additional_metric_readers`` run next to the configured
    export (tests, a second backend). ``setup_logs``: ``True`` installs VoxPulse's log handler on the
    root logger (JSON or text with call and trace ids, redacted; see ``setup_logging``) and sets the
    root level; ``False`` leaves logging alone; ``None`` (default) installs it only when the root
    logger has no handler yet, so an application that set up its own logging keeps it.

    ``trace_sampling_percent``: the share of calls the collectors' tail sampling keeps (as
    ``VOXPULSE_TRACE_SAMPLING_PERCENT``); exemplars come only from those. ``span_exporter``: an
    exporter object used instead of the one ``exporter`` names, behind the same redaction, queue
    and hold-back (``telemetry.testing`` injects an in-memory one). ``id_generator``: the trace and
    span ids (the SDK's random ones by default). ``livekit`` / ``libraries``: route LiveKit
    Agents' spans into this pipeline / instrument asyncpg and Redis. ``set_global_providers``:
    ``False`` leaves the OpenTelemetry global providers alone (they can be set once per process;
    ``telemetry.testing`` leaves them for the application).
    """
    global _active, _active_key, _globals_set, _atexit_registered
    config = _resolve(
        service_name=service_name, service_version=service_version, environment=environment,
        exporter=exporter, endpoint=endpoint, protocol=protocol, metrics_exporter=metrics_exporter,
        prometheus_addr=prometheus_addr, content=content, metric_export_interval_s=metric_export_interval_s,
        disabled=disabled, trace_sampling_percent=trace_sampling_percent, livekit=livekit, libraries=libraries,
    )
    if (_active is not None and _active_key == config and not additional_span_processors
            and not additional_metric_readers and span_exporter is None and id_generator is None):
        return _active
    if _active is not None:
        old = _active
        _deactivate(old)
        old._closed = True
        _run_bounded(lambda: old._shutdown_blocking(5.0), 0)
    from telemetry import logs

    if setup_logs or (setup_logs is None and not logs.has_handlers()):
        logs.setup_logging()  # masks the other handlers on the root logger too
    elif setup_logs is None:
        # the application's or LiveKit's handlers (a LiveKit job process forwards every record to
        # the worker process, which writes it): masked where they are, no second handler added
        logs.mask_logs()
    redactor = Redactor(content=config.content, max_length=config.max_attribute_length)
    key = config
    if config.disabled:
        handle = Telemetry(dataclasses.replace(config, metrics_relay=None), None, None, None, None)
        install(None, None, redactor=redactor, service_version=service_version, livekit=livekit,
                libraries=libraries)
        _active, _active_key = handle, key
        return handle
    config = dataclasses.replace(config, metrics_relay=_relay_endpoint(config))
    if _in_livekit_job() and _env.text(_env.DATABASE_URL):
        # instrument_session() opens the call history per call: its imports (asyncpg, redis) here,
        # in the job process's set-up, not on a call's event loop
        try:
            importlib.import_module("telemetry.history")
        except ImportError:
            _logger.warning("DATABASE_URL is set but the history extra is not installed: no call history")

    attrs: dict[str, str] = {"service.name": config.service_name, Attr.DISTRO_NAME: DISTRO,
                             Attr.DISTRO_VERSION: _distro_version()}
    if service_version:
        attrs["service.version"] = service_version
    if environment:
        attrs["deployment.environment.name"] = environment
    resource = Resource.create(attrs)

    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False, id_generator=id_generator)
    inner = span_exporter if span_exporter is not None else _span_exporter(config)
    safe: SafeExporter | None = None
    batch: QueueingSpanProcessor | None = None
    if inner is not None:
        safe = SafeExporter(inner, redactor)
        batch = QueueingSpanProcessor(safe)  # also stamps call_id
        tracer_provider.add_span_processor(batch)
    else:
        tracer_provider.add_span_processor(CallIdProcessor())
    for processor in additional_span_processors:
        tracer_provider.add_span_processor(processor)

    readers, otlp_metrics = _metric_readers(config)
    readers = [*readers, *additional_metric_readers]
    # Exemplars only from traces the collectors' tail sampling keeps (telemetry/sampling.py).
    exemplars = KeptTraceExemplarFilter(config.trace_sampling_percent)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False,
                                   views=metric_views(), exemplar_filter=exemplars)

    if set_global_providers and not _globals_set:  # the OTel globals can be set once per process
        _globals_set = True
        trace.set_tracer_provider(tracer_provider)
        metrics_api.set_meter_provider(meter_provider)
    install(tracer_provider, meter_provider, redactor=redactor, service_version=service_version,
            livekit=livekit, libraries=libraries)
    for name in _RETRY_LOGGERS:  # unless the application set their level itself
        retry_logger = logging.getLogger(name)
        if retry_logger.level == logging.NOTSET:
            retry_logger.setLevel(logging.CRITICAL)

    handle = Telemetry(config, tracer_provider, meter_provider, safe, batch, otlp_metrics)
    _active, _active_key = handle, key
    if not _atexit_registered:  # bounded (3 s); also under pytest (a test's subprocess must flush too)
        _atexit_registered = True
        atexit.register(_at_exit)
        # LiveKit runs each job in a multiprocessing child, which leaves with os._exit(): atexit
        # hooks never run there, multiprocessing's finalizers do. The job's last spans (its root,
        # job_shutdown) end after the job's own code has returned: only this flush exports them.
        multiprocessing.util.Finalize(None, _at_exit, exitpriority=100)
    return handle


def preload() -> None:
    """Imports what ``configure()`` and a call's instrumentation import in a LiveKit job process
    with this environment's settings, and creates nothing (no provider, thread, socket or file):
    for a process that forks the job processes, so that each inherits the modules instead of
    loading them (LiveKit's forkserver: ``telemetry.livekit._preload``). Raises what
    :func:`resolve` raises on a malformed setting."""
    config = resolve()
    if config.disabled:
        return
    importlib.import_module("telemetry.livekit")  # instrument_session and its parts
    if config.exporter == "otlp":
        if config.protocol == "grpc":
            importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
            importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.metric_exporter")
        else:
            importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        # the job processes' leg to the worker's metrics relay (OTLP/HTTP whatever the protocol)
        importlib.import_module("opentelemetry.exporter.otlp.proto.http.metric_exporter")
        importlib.import_module("telemetry.relay")
    if _env.text(_env.DATABASE_URL):  # configure() loads the call history in a job process (see above)
        with contextlib.suppress(ImportError):
            importlib.import_module("telemetry.history")
    preload_libraries()


def _relay_endpoint(config: TelemetryConfig) -> str | None:
    """The metrics relay the OTLP metrics go to: the URL set, else (``auto``, in a LiveKit job
    process) the worker's relay, started by the first job process that needs it; else None."""
    if config.exporter != "otlp" or config.metrics_exporter not in ("otlp", "both"):
        return None
    setting = (config.metrics_relay or "off").strip()
    if setting.lower() == "off":
        return None
    if setting.lower() != "auto":
        return setting
    if not _in_livekit_job():
        return None
    from telemetry import relay

    return relay.worker_relay_endpoint(config)


def metric_views() -> list[View]:
    """LiveKit Agents' metrics keep only low-cardinality labels (semconv.LIVEKIT_METRIC_LABELS):
    the per-job room_id and job_id it stamps on every point never become series."""
    return [View(meter_name=LIVEKIT_METER, instrument_name="*", attribute_keys=set(LIVEKIT_METRIC_LABELS))]
