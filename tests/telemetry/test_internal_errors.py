"""An internal telemetry failure is contained, counted and logged (rate-limited) and the call goes
on; re-raised while a test runs unless VOXPULSE_RAISE_INTERNAL_ERRORS=false."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import telemetry
from telemetry import _errors
from telemetry.semconv import Attr
from telemetry.testing import CapturedTelemetry


@pytest.fixture
def contained(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Containment as in production: the explicit flag wins over the test detection."""
    monkeypatch.setenv("VOXPULSE_RAISE_INTERNAL_ERRORS", "false")
    _errors._reset()
    yield
    _errors._reset()


async def test_failing_on_end_callback_is_contained_counted_and_logged_once(
    cap: CapturedTelemetry, contained: None, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: telemetry.CallScope) -> None:
        raise RuntimeError("history store exploded")

    for call_id in ("e1", "e2"):
        async with telemetry.call(call_id) as call:
            call.on_end(broken)
    errors = [r for r in caplog.records if r.name == "voxpulse.internal"]
    assert len(errors) == 1
    assert "the call continues" in errors[0].getMessage()
    assert len(cap.spans_named("call")) == 2
    # both are counted, by site, next to voxpulse.export.dropped
    (point,) = cap.metric_points("voxpulse.internal_errors")
    assert (dict(point.attributes), point.value) == ({Attr.INTERNAL_ERROR_SITE: "call.on_end"}, 2)
    assert _errors.counts() == {"call.on_end": 2}


def test_logs_are_rate_limited_per_site_with_the_number_suppressed(
    contained: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    monkeypatch.setattr(_errors.time, "monotonic", lambda: now[0])

    @_errors.internal_errors("test.decorated")
    def failing() -> None:
        raise KeyError("x")

    for _ in range(5):
        failing()
    with _errors.internal_errors("test.other"):
        raise ValueError("y")
    now[0] += _errors.LOG_INTERVAL_S
    failing()
    lines = [r.getMessage() for r in caplog.records if r.name == "voxpulse.internal"]
    assert lines == [
        "telemetry error in test.decorated; the call continues",
        "telemetry error in test.other; the call continues",
        "telemetry error in test.decorated (4 more since the last report); the call continues",
    ]
    assert _errors.counts() == {"test.decorated": 6, "test.other": 1}


async def test_the_decorator_contains_async_functions_too(contained: None) -> None:
    @_errors.internal_errors("test.async")
    async def failing() -> None:
        raise RuntimeError("async boom")

    assert await failing() is None
    assert _errors.counts() == {"test.async": 1}


def test_tests_are_detected_by_pytest_current_test_or_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOXPULSE_RAISE_INTERNAL_ERRORS", raising=False)
    assert _errors.raise_internal_errors()  # PYTEST_CURRENT_TEST is set while this test runs
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    assert not _errors.raise_internal_errors()  # merely importing pytest is not "a test runs"
    monkeypatch.setenv("VOXPULSE_RAISE_INTERNAL_ERRORS", "true")
    assert _errors.raise_internal_errors()


async def test_under_pytest_internal_errors_are_raised(cap: CapturedTelemetry) -> None:
    def broken(_: telemetry.CallScope) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        async with telemetry.call("e3") as call:
            call.on_end(broken)
    logging.getLogger("voxpulse.internal").handlers.clear()


async def test_a_metric_helper_given_bad_input_never_raises_into_the_call(
    cap: CapturedTelemetry, contained: None, caplog: pytest.LogCaptureFixture
) -> None:
    from typing import Any

    from telemetry import metrics
    from telemetry.semconv import MetricKind, MetricSpec

    errors = metrics.Counter(MetricSpec(
        "shop.api.errors", MetricKind.COUNTER, "{error}", "Shop API errors.", (Attr.HTTP_STATUS,)))
    bad: Any = "not-a-status"
    async with telemetry.call("bad-metric"):
        errors.add(bad, {Attr.HTTP_STATUS: 500})
        metrics.set_operator_queue(bad)
        metrics.tool_anomaly(None, None)  # type: ignore[arg-type]
    sites = sorted(r.args[0] for r in caplog.records if r.name == "voxpulse.internal" and r.args)
    assert sites == ["metrics.shop.api.errors", "metrics.voice.operator.queue_length"]
    assert cap.metric_points("voice.tool.anomalies")[0].attributes[Attr.TOOL_NAME] == "None"
