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
