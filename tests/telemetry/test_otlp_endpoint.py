"""The OTLP endpoint is decided once, per signal, by ``resolve()``; ``otlp_exporter`` builds every
OTLP exporter (spans, metrics, the relay) from that decision."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

from telemetry import _env
from telemetry._setup import _grpc_insecure, otlp_exporter, resolve

_OTLP = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
         "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _OTLP:
        monkeypatch.delenv(name, raising=False)


def test_defaults_per_protocol() -> None:
    http = resolve()
    assert http.endpoint == _env.OTLP_HTTP_ENDPOINT == "http://127.0.0.1:4318"
    assert (http.traces_endpoint, http.metrics_endpoint) == (
        "http://127.0.0.1:4318/v1/traces", "http://127.0.0.1:4318/v1/metrics")
    grpc = resolve(protocol="grpc")
    assert grpc.endpoint == grpc.traces_endpoint == grpc.metrics_endpoint == _env.OTLP_GRPC_ENDPOINT


def test_the_endpoint_from_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read once and used: not merged and then dropped for the exporters to read again."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    config = resolve()
    assert config.endpoint == "http://collector:4318/"
    assert config.traces_endpoint == "http://collector:4318/v1/traces"
    assert config.metrics_endpoint == "http://collector:4318/v1/metrics"


def test_a_signals_own_variable_wins_over_the_base_and_loses_to_an_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://spans:9999/custom/path")
    config = resolve()
    assert config.traces_endpoint == "http://spans:9999/custom/path"  # as it is, no /v1/traces added
    assert config.metrics_endpoint == "http://general:4318/v1/metrics"
    explicit = resolve(endpoint="http://arg:4318")
    assert (explicit.traces_endpoint, explicit.metrics_endpoint) == (
        "http://arg:4318/v1/traces", "http://arg:4318/v1/metrics")


def test_grpc_takes_the_base_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "GRPC")  # case-insensitive, as every choice
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    config = resolve()
    assert config.protocol == "grpc"
    assert config.traces_endpoint == config.metrics_endpoint == "http://collector:4317"


def test_the_exporters_send_where_resolve_decided(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:4318/m")
    config = resolve()
    spans, metrics = otlp_exporter(config, "traces"), otlp_exporter(config, "metrics")
    assert isinstance(spans, HttpSpans) and isinstance(metrics, HttpMetrics)
    assert spans._endpoint == "http://collector:4318/v1/traces"
    assert metrics._endpoint == "http://metrics:4318/m"
    leg = otlp_exporter(config, "metrics", relay="http://127.0.0.1:5555/")
    assert isinstance(leg, HttpMetrics) and leg._endpoint == "http://127.0.0.1:5555/v1/metrics"
    for exporter in (spans, metrics, leg):
        exporter.shutdown()


def test_grpc_exporters_and_their_plaintext_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    config = resolve(protocol="grpc", endpoint="collector:4317")
    spans, metrics = otlp_exporter(config, "traces"), otlp_exporter(config, "metrics")
    assert isinstance(spans, GrpcSpans) and isinstance(metrics, GrpcMetrics)
    assert spans._insecure and metrics._insecure  # no scheme, no OTEL_EXPORTER_OTLP_INSECURE: plaintext
    for exporter in (spans, metrics):
        exporter.shutdown()
    assert _grpc_insecure("http://c:4317") and not _grpc_insecure("https://c:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "false")
    assert not _grpc_insecure("c:4317")
    assert _grpc_insecure("http://c:4317")  # the scheme says it
