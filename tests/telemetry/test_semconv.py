from __future__ import annotations

from pathlib import Path

import pytest

from telemetry import semconv
from telemetry.semconv import ATTRIBUTES, METRICS, SPANMETRICS_DIMENSIONS, Attr, Metric, TurnSegment

ROOT = Path(__file__).resolve().parents[2]


def test_docs_are_generated_from_the_module() -> None:
    doc = (ROOT / "docs" / "semantic-conventions.md").read_text(encoding="utf-8")
    assert doc == semconv.render_markdown(), "run: python -m telemetry.semconv > docs/semantic-conventions.md"


def test_every_attribute_key_is_classified_once() -> None:
    declared = {v for k, v in vars(Attr).items() if not k.startswith("_") and isinstance(v, str)}
    declared |= {seg.attribute for seg in TurnSegment}  # the turn's parts, one key each
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
    # the names dashboards, alert rules and the CLI use, pinned
    assert {m.name: m.prometheus for m in METRICS if m.name in (Metric.TTFW, Metric.CALLS, Metric.CALL_COST)} == {
        Metric.TTFW: "voice_turn_time_to_first_word_seconds",
        Metric.CALLS: "voice_calls_total",
        Metric.CALL_COST: "voice_call_cost",
    }


def test_every_metric_has_a_symbol_and_the_library_records_none_by_literal() -> None:
    symbols = {v for k, v in vars(Metric).items() if not k.startswith("_") and isinstance(v, str)}
    assert symbols == {m.name for m in METRICS}
    source = (ROOT / "telemetry" / "metrics.py").read_text(encoding="utf-8")
    for name in symbols:
        assert f'"{name}"' not in source, name


def test_error_type_is_the_module_qualified_class() -> None:
    class LocalError(Exception):
        pass

    assert semconv.error_type(ValueError("x")) == "ValueError"
    assert semconv.error_type(TimeoutError) == "TimeoutError"
    qualified = f"{__name__}.test_error_type_is_the_module_qualified_class.<locals>.LocalError"
    assert semconv.error_type(LocalError()) == qualified
    import json

    assert semconv.error_type(json.JSONDecodeError("x", "", 0)) == "json.decoder.JSONDecodeError"


def test_read_metric_specs_reads_an_applications_declarations() -> None:
    """agent/metrics.toml through read_metric_specs: the specs the agent records with (the dashboards
    read the same file without importing the agent)."""
    from agent.metrics import AGENT_METRICS, STORE_API_ERRORS
    from tests.support import ROOT

    specs = semconv.read_metric_specs((ROOT / "agent" / "metrics.toml").read_text(encoding="utf-8"))
    assert specs == AGENT_METRICS
    assert STORE_API_ERRORS.spec.prometheus == "voice_store_api_errors_total"
    assert STORE_API_ERRORS.spec.attributes == (semconv.Attr.HTTP_STATUS,)
    with pytest.raises(ValueError, match="buckets"):
        semconv.read_metric_specs('[[metric]]\nname = "a.b"\nkind = "histogram"\nunit = "s"\ndescription = "x"\n')
