"""configure(): one keyword-only call sets up tracing, metrics and logs.

Precedence: explicit argument > environment variable (``_env``) > default. Export always happens
off the event loop (BatchSpanProcessor thread, periodic metric reader thread), and the handle's
``flush``/``shutdown`` run in a daemon thread with a deadline, so they never block the loop -- even
with a dead collector, where the SDK's own shutdown can block for 30 s.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from opentelemetry import metrics as metrics_api
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from telemetry import _env
from telemetry import metrics as _metrics
from telemetry._processors import CallIdProcessor, ChangedPointsExporter, QueueingSpanProcessor, SafeExporter
from telemetry._state import STATE, TRACER_NAME
from telemetry.redaction import ContentMode, Redactor

__all__ = ["Telemetry", "TelemetryConfig", "configure"]

_logger = logging.getLogger("voxpulse")

Exporter = Literal["otlp", "console", "none"]
MetricsExporter = Literal["otlp", "prometheus", "both", "none"]
Protocol = Literal["http/protobuf", "grpc"]


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """The resolved configuration (arguments, then environment, then defaults)."""

    disabled: bool
    service_name: str
    service_version: str | None
    environment: str | None
    exporter: Exporter
    endpoint: str | None
    protocol: Protocol
    metrics_exporter: MetricsExporter
    prometheus_addr: str
    content: ContentMode
    max_attribute_length: int
    metric_export_interval_s: float


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
        _metrics.export_dropped(left)
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

            loop.call_soon_threadsafe(resolve)

        threading.Thread(target=target, name="voxpulse-shutdown", daemon=True).start()
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
    exporter: str | None, endpoint: str | None, protocol: str | None, metrics_exporter: str | None,
    prometheus_addr: str | None, content: str | None, metric_export_interval_s: float | None,
    disabled: bool | None,
) -> TelemetryConfig:
    interval_ms = _env.number(_env.OTEL_METRIC_EXPORT_INTERVAL, None, minimum=100)
    return TelemetryConfig(
        disabled=_env.flag(_env.OTEL_SDK_DISABLED, disabled),
        service_name=_env.text(_env.OTEL_SERVICE_NAME, service_name) or "voxpulse-agent",
        service_version=service_version,
        environment=environment,
        exporter=_env.choice(_env.VOXPULSE_EXPORTER, exporter),  # type: ignore[arg-type]
        endpoint=_env.text(_env.OTEL_EXPORTER_OTLP_ENDPOINT, endpoint),
        protocol=_env.choice(_env.OTEL_EXPORTER_OTLP_PROTOCOL, protocol),  # type: ignore[arg-type]
        metrics_exporter=_env.choice(_env.VOXPULSE_METRICS_EXPORTER, metrics_exporter),  # type: ignore[arg-type]
        prometheus_addr=_env.text(_env.VOXPULSE_PROMETHEUS_ADDR, prometheus_addr) or "127.0.0.1:8080",
        content=_env.choice(_env.VOXPULSE_CONTENT, content),  # type: ignore[arg-type]
        max_attribute_length=int(_env.number(_env.VOXPULSE_MAX_ATTRIBUTE_LENGTH, None, minimum=64)),
        metric_export_interval_s=(
            metric_export_interval_s if metric_export_interval_s is not None else interval_ms / 1000
        ),
    )


def _span_exporter(config: TelemetryConfig) -> SpanExporter | None:
    if config.exporter == "none":
        return None
    if config.exporter == "console":
        from telemetry.console import ConsoleTreeExporter

        return ConsoleTreeExporter()
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=config.endpoint, insecure=True) if config.endpoint else GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    if config.endpoint:
        return HttpExporter(endpoint=config.endpoint.rstrip("/") + "/v1/traces")
    return HttpExporter()


def _metric_readers(config: TelemetryConfig) -> tuple[list[MetricReader], ChangedPointsExporter | None]:
    """The configured readers, and the OTLP metric exporter among them (stopped at a shutdown deadline)."""
    readers: list[MetricReader] = []
    otlp: ChangedPointsExporter | None = None
    if config.metrics_exporter in ("otlp", "both") and config.exporter == "otlp":
        if config.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )

            exporter: MetricExporter = (
                GrpcMetricExporter(endpoint=config.endpoint, insecure=True) if config.endpoint
                else GrpcMetricExporter()
            )
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpMetricExporter,
            )

            exporter = (
                HttpMetricExporter(endpoint=config.endpoint.rstrip("/") + "/v1/metrics") if config.endpoint
                else HttpMetricExporter()
            )
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


def _route_livekit(tracer_provider: trace.TracerProvider, content: ContentMode) -> None:
    """Routes LiveKit Agents' own spans into our provider (metrics follow the global provider).

    LiveKit's content attributes (prompts, chat context, transcripts, tool arguments, serialised on
    the event loop for every LLM request) are captured only with ``content="full"``; otherwise our
    own spans carry the redacted transcripts and tool arguments (turn, speech_to_text,
    execute_tool), which costs far less CPU per call.
    """
    if "livekit.agents" not in sys.modules and importlib.util.find_spec("livekit.agents") is None:
        return
    from livekit.agents import telemetry as lk_telemetry
    from livekit.agents.telemetry import gen_ai as lk_gen_ai

    # allow_pii=True: LiveKit's own filter would strip every key with a `pii` segment (ours too) and
    # every exception message; our exporter redacts instead (telemetry.redaction).
    lk_telemetry.set_tracer_provider(tracer_provider, allow_pii=True)
    lk_gen_ai.set_capture_content(content == "full")


def _instrument_libraries(tracer_provider: TracerProvider) -> None:
    """asyncpg and Redis spans join the current call (their spans get call_id from our processor)."""
    for module, cls_name in (
        ("opentelemetry.instrumentation.asyncpg", "AsyncPGInstrumentor"),
        ("opentelemetry.instrumentation.redis", "RedisInstrumentor"),
    ):
        if importlib.util.find_spec(module) is None:
            continue
        instrumentor = getattr(importlib.import_module(module), cls_name)()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(tracer_provider=tracer_provider)


def install(
    tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None, *, redactor: Redactor,
    service_version: str | None, livekit: bool = True, libraries: bool = True,
) -> None:
    """Points the library (and LiveKit, asyncpg, Redis) at these providers."""
    STATE.redactor = redactor
    STATE.service_version = service_version
    STATE.meter_provider = meter_provider
    if tracer_provider is None:
        STATE.enabled = False
        STATE.tracer = trace.NoOpTracer()
        if livekit:  # LiveKit would otherwise keep a previous provider
            _route_livekit(trace.NoOpTracerProvider(), redactor.content)
        return
    STATE.tracer = tracer_provider.get_tracer(TRACER_NAME)
    STATE.enabled = True
    if livekit:
        _route_livekit(tracer_provider, redactor.content)
    if libraries:
        _instrument_libraries(tracer_provider)


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
    span_processors: Sequence[SpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
    setup_logs: bool = True,
) -> Telemetry:
    """Sets up tracing, metrics and logs for the agent process; returns the handle.

    Safe to call twice: the same settings return the same handle; other settings replace the
    previous pipeline (the old one is shut down in the background).
    """
    global _active, _active_key, _globals_set, _atexit_registered
    config = _resolve(
        service_name=service_name, service_version=service_version, environment=environment,
        exporter=exporter, endpoint=endpoint, protocol=protocol, metrics_exporter=metrics_exporter,
        prometheus_addr=prometheus_addr, content=content, metric_export_interval_s=metric_export_interval_s,
        disabled=disabled,
    )
    if _active is not None and _active_key == config and not span_processors and not metric_readers:
        return _active
    if _active is not None:
        old = _active
        _deactivate(old)
        old._closed = True
        _run_bounded(lambda: old._shutdown_blocking(5.0), 0)
    if setup_logs:
        from telemetry.logs import setup_logging

        setup_logging()
    redactor = Redactor(content=config.content, max_length=config.max_attribute_length)
    if config.disabled:
        handle = Telemetry(config, None, None, None, None)
        install(None, None, redactor=redactor, service_version=service_version)
        _active, _active_key = handle, config
        return handle

    attrs: dict[str, str] = {"service.name": config.service_name}
    if service_version:
        attrs["service.version"] = service_version
    if environment:
        attrs["deployment.environment.name"] = environment
    resource = Resource.create(attrs)

    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    inner = _span_exporter(config)
    safe: SafeExporter | None = None
    batch: QueueingSpanProcessor | None = None
    if inner is not None:
        safe = SafeExporter(inner, redactor)
        batch = QueueingSpanProcessor(safe)  # also stamps call_id
        tracer_provider.add_span_processor(batch)
    else:
        tracer_provider.add_span_processor(CallIdProcessor())
    for processor in span_processors:
        tracer_provider.add_span_processor(processor)

    readers, otlp_metrics = _metric_readers(config)
    readers = [*readers, *metric_readers]
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)

    if not _globals_set:  # the OTel globals can be set once per process
        _globals_set = True
        trace.set_tracer_provider(tracer_provider)
        metrics_api.set_meter_provider(meter_provider)
    install(tracer_provider, meter_provider, redactor=redactor, service_version=service_version)
    # The OTLP exporters log every retry; our SafeExporter logs failure and recovery once each.
    for name in ("opentelemetry.exporter.otlp.proto.http", "opentelemetry.exporter.otlp.proto.grpc",
                 "opentelemetry.sdk._shared_internal"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    handle = Telemetry(config, tracer_provider, meter_provider, safe, batch, otlp_metrics)
    _active, _active_key = handle, config
    if not _atexit_registered and "pytest" not in sys.modules:
        _atexit_registered = True
        atexit.register(_at_exit)
    return handle
