from __future__ import annotations

from pathlib import Path

import telemetry
from telemetry import semconv
from telemetry.semconv import ATTRIBUTES, METRICS, SPANMETRICS_DIMENSIONS, Attr

ROOT = Path(__file__).resolve().parents[2]


def test_docs_are_generated_from_the_module() -> None:
    doc = (ROOT / "docs" / "semantic-conventions.md").read_text(encoding="utf-8")
    assert doc == semconv.render_markdown(), "run: python -m telemetry.semconv > docs/semantic-conventions.md"


def test_every_attribute_key_is_classified_once() -> None:
    declared = {v for k, v in vars(Attr).items() if not k.startswith("_") and isinstance(v, str)}
    classified = [a.key for a in ATTRIBUTES]
    assert len(classified) == len(set(classified))
    assert declared == set(classified)


def test_pii_keys_we_own_carry_a_pii_segment() -> None:
    for spec in ATTRIBUTES:
        if spec.pii and not spec.key.startswith("gen_ai."):
            assert ".pii." in spec.key, spec.key
        if ".pii." in spec.key:
            assert spec.pii, spec.key


def test_metric_attributes_and_dimensions_are_low_cardinality() -> None:
    labels = {a.key for a in ATTRIBUTES if a.metric_label}
    for metric in METRICS:
        assert set(metric.attributes) <= labels, metric.name
    assert set(SPANMETRICS_DIMENSIONS) <= labels
    for never in (Attr.CALL_ID, Attr.CONVERSATION_ID, Attr.CALL_CALLER, Attr.CALL_ROOM, Attr.TURN_USER_TEXT):
        assert never not in labels


def test_prometheus_names_follow_the_otel_translation() -> None:
    for metric in METRICS:
        base = metric.name.replace(".", "_")
        if metric.kind is semconv.MetricKind.COUNTER:
            assert metric.prometheus == f"{base}_total", metric.name
        elif metric.unit == "s":
            assert metric.prometheus == f"{base}_seconds", metric.name
        else:
            assert metric.prometheus == base, metric.name


def test_public_api_is_curated() -> None:
    assert sorted(telemetry.__all__) == telemetry.__all__
    assert set(telemetry.__all__) == {
        "Attr", "CallOutcome", "CallScope", "Stage", "Telemetry", "TelemetryConfig", "TelemetryConfigError",
        "TelemetryError", "__version__", "call", "configure", "current_call", "inject", "metrics", "redact",
        "setup_logging", "trace_llm", "trace_stt", "trace_tool", "trace_tts", "traced",
    }
