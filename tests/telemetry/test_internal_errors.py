"""An internal telemetry failure is logged once and the call goes on (re-raised under pytest)."""

from __future__ import annotations

import logging

import pytest

import telemetry
from telemetry import _errors
from telemetry.testing import CapturedTelemetry


async def test_failing_on_end_callback_is_contained_and_logged_once(
    cap: CapturedTelemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_errors, "_raise_internal", lambda: False)
    monkeypatch.setattr(_errors, "_seen", set())

    def broken(_: telemetry.CallScope) -> None:
        raise RuntimeError("history store exploded")

    for call_id in ("e1", "e2"):
        async with telemetry.call(call_id) as call:
            call.on_end(broken)
    errors = [r for r in caplog.records if r.name == "voxpulse.internal"]
    assert len(errors) == 1
    assert "the call continues" in errors[0].getMessage()
    assert len(cap.spans_named("call")) == 2


async def test_under_pytest_internal_errors_are_raised(cap: CapturedTelemetry) -> None:
    def broken(_: telemetry.CallScope) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        async with telemetry.call("e3") as call:
            call.on_end(broken)
    logging.getLogger("voxpulse.internal").handlers.clear()


async def test_a_metric_helper_given_bad_input_never_raises_into_the_call(
    cap: CapturedTelemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from typing import Any

    from telemetry import metrics
    from telemetry.semconv import Attr

    monkeypatch.setattr(_errors, "_raise_internal", lambda: False)
    monkeypatch.setattr(_errors, "_seen", set())
    bad: Any = "not-a-status"
    async with telemetry.call("bad-metric"):
        metrics.store_api_error(bad)
        metrics.set_operator_queue(bad)
        metrics.tool_anomaly(None, None)  # type: ignore[arg-type]
    sites = sorted(r.args[0] for r in caplog.records if r.name == "voxpulse.internal" and r.args)
    assert sites == ["metrics.operator_queue", "metrics.store_api_error"]
    assert cap.metric_points("voice.tool.anomalies")[0].attributes[Attr.TOOL_NAME] == "None"
