"""The metrics relay: several processes' deltas become one writer's cumulative series.

Two MeterProviders stand for two job processes of one worker (each with its own random
service.instance.id); they export deltas to a real relay over OTLP/HTTP, and the relay's exports
are read where the collector would receive them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from telemetry import _setup
from telemetry.relay import MetricsRelay, worker_relay


class Collector:
    """Keeps every OTLP metrics request posted to it (the collector's place)."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path.endswith("/v1/metrics"):
                    sink.requests.append(ExportMetricsServiceRequest.FromString(body))
                    sink.headers.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def last(self) -> dict[str, list[object]]:
        out: dict[str, list[object]] = {}
        for req in self.requests:
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        out[m.name] = [rm.resource, getattr(m, kind or "sum"), kind]
        return out


@pytest.fixture
def relay() -> Iterator[tuple[MetricsRelay, Collector]]:
    collector = Collector()
    r = MetricsRelay(forward_to=collector.url, resource={"service.name": "agent"}, interval_s=3600).start()
    try:
        yield r, collector
    finally:
        r.stop()
        collector.close()


def _process(endpoint: str) -> tuple[MeterProvider, PeriodicExportingMetricReader]:
    delta = {Counter: AggregationTemporality.DELTA, UpDownCounter: AggregationTemporality.DELTA,
             Histogram: AggregationTemporality.DELTA}
    exporter = OTLPMetricExporter(endpoint=endpoint + "/v1/metrics", preferred_temporality=delta)  # type: ignore[arg-type]
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return MeterProvider(resource=Resource.create({"service.name": "agent"}), metric_readers=[reader]), reader


def test_many_processes_one_writer(relay: tuple[MetricsRelay, Collector]) -> None:
    r, collector = relay
    tracer = TracerProvider().get_tracer("t")
    for calls, active_left in ((2, 0), (3, 1)):  # two job processes, one after the other overlapping
        provider, reader = _process(r.endpoint)
        meter = provider.get_meter("voxpulse")
        counter = meter.create_counter("voice.calls")
        active = meter.create_up_down_counter("voice.calls.active")
        ttfw = meter.create_histogram("voice.turn.time_to_first_word", unit="s")
        for _ in range(calls):
            counter.add(1, {"voice.call.outcome": "resolved_by_bot"})
            active.add(1)
            with trace.use_span(tracer.start_span("turn"), end_on_exit=True):
                ttfw.record(0.9)
        active.add(-(calls - active_left))
        reader.force_flush()
        reader.force_flush()  # a second export without measurements: no new deltas
        provider.shutdown()
    assert r.received >= 2
    assert r.export()
    got = collector.last()
    resources = {str(res) for res, _, _ in got.values()}
    assert len(resources) == 1, "one writer: the worker's resource"
    resource = {kv.key: kv.value.string_value for kv in next(iter(got.values()))[0].attributes}  # type: ignore[attr-defined]
    assert resource["service.name"] == "agent", "the job processes' resource"
    assert resource["service.instance.id"] == r.instance_id, "with the relay's one instance id"
    _, calls_sum, kind = got["voice.calls"]
    assert kind == "sum" and calls_sum.aggregation_temporality == AggregationTemporality.CUMULATIVE.value
    (point,) = calls_sum.data_points
    assert point.as_int == 5
    _, active_sum, _ = got["voice.calls.active"]
    assert active_sum.data_points[0].as_int == 1 and not active_sum.is_monotonic
    _, hist, kind = got["voice.turn.time_to_first_word"]
    (hp,) = hist.data_points
    assert kind == "histogram" and hp.count == 5 and hp.sum == pytest.approx(4.5)
    assert sum(hp.bucket_counts) == 5
    assert hp.exemplars and all(len(e.trace_id) == 16 for e in hp.exemplars), "exemplars keep their trace ids"


def test_only_changed_series_are_sent_again(relay: tuple[MetricsRelay, Collector]) -> None:
    r, collector = relay
    provider, reader = _process(r.endpoint)
    meter = provider.get_meter("voxpulse")
    a, b = meter.create_counter("a"), meter.create_counter("b")
    a.add(1)
    b.add(1)
    reader.force_flush()
    assert r.export()
    collector.requests.clear()
    a.add(1)
    reader.force_flush()
    assert r.export()
    names = {m.name for req in collector.requests for rm in req.resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics}
    assert names == {"a"}
    provider.shutdown()


def test_a_collector_down_keeps_the_series_for_the_next_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # the exporter's own deadline, as configure()'s
    collector = Collector()
    port = collector.server.server_address[1]
    r = MetricsRelay(forward_to=collector.url, interval_s=3600).start()
    provider, reader = _process(r.endpoint)
    provider.get_meter("voxpulse").create_counter("c").add(3)
    reader.force_flush()
    collector.close()
    assert not r.export(timeout_s=1.0)
    assert r.failed == 1
    again = Collector(port)  # the collector is back, on the same address
    try:
        assert r.export()
        assert again.last()["c"][1].data_points[0].as_int == 3
    finally:
        r.stop()
        again.close()
        provider.shutdown()


# -- the relay sends like configure(): one exporter factory, one reader of the settings ----------------


def _one_export(relay: MetricsRelay) -> None:
    provider, reader = _process(relay.endpoint)
    provider.get_meter("voxpulse").create_counter("voice.calls").add(1)
    reader.force_flush()
    provider.shutdown()


def test_the_relay_sends_with_configures_headers_and_signal_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    collector = Collector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # the general one: nothing there
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", collector.url + "/v1/metrics")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-voxpulse-tenant=tyres,authorization=Bearer%20t0k")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-voxpulse-signal=metrics")
    relay = MetricsRelay(interval_s=3600).start()  # settings read by configure()'s reader
    try:
        assert type(relay._exporter) is type(_setup.otlp_exporter(_setup.resolve(), "metrics"))
        _one_export(relay)
        assert relay.export()
    finally:
        relay.stop()
        collector.close()
    (headers,) = [{k.lower(): v for k, v in h.items()} for h in collector.headers[:1]]
    assert headers["x-voxpulse-signal"] == "metrics"  # the per-signal headers win, as in the exporter


def test_the_relay_speaks_grpc_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as svc
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

    got: list[tuple[ExportMetricsServiceRequest, dict[str, str]]] = []

    class Metrics(svc.MetricsServiceServicer):  # type: ignore[misc]
        def Export(self, request: ExportMetricsServiceRequest, context: grpc.ServicerContext) -> object:
            got.append((request, dict(context.invocation_metadata())))
            return ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    svc.add_MetricsServiceServicer_to_server(Metrics(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-voxpulse-tenant=tyres")
    relay = MetricsRelay(interval_s=3600).start()
    try:
        _one_export(relay)
        assert relay.export()
    finally:
        relay.stop()
        server.stop(None)
    request, metadata = got[0]
    assert metadata["x-voxpulse-tenant"] == "tyres"
    names = {m.name for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert names == {"voice.calls"}


@pytest.mark.parametrize(
    ("env", "runs"),
    [
        ({}, True),
        ({"OTEL_SDK_DISABLED": "1"}, False),  # the library's spellings of a flag
        ({"VOXPULSE_EXPORTER": "none"}, False),
        ({"VOXPULSE_METRICS_EXPORTER": "prometheus"}, False),
        ({"VOXPULSE_METRICS_RELAY": "off"}, False),
        ({"VOXPULSE_METRICS_RELAY": "http://127.0.0.1:9"}, False),  # a relay named already
    ],
)
def test_worker_relay_reads_the_settings_like_configure(
    env: dict[str, str], runs: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    before = os.environ.get("VOXPULSE_METRICS_RELAY")
    with worker_relay() as relay:
        if runs:
            assert relay is not None and os.environ["VOXPULSE_METRICS_RELAY"] == relay.endpoint
            assert relay.config.service_name == "voxpulse-agent"  # the library's default, not another
        else:
            assert relay is None and os.environ.get("VOXPULSE_METRICS_RELAY") == before
    assert os.environ.get("VOXPULSE_METRICS_RELAY") == before
