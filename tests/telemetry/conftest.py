from __future__ import annotations

from collections.abc import Iterator

import pytest

from telemetry.testing import CapturedTelemetry, capture_telemetry


@pytest.fixture
def cap() -> Iterator[CapturedTelemetry]:
    with capture_telemetry(livekit=False, libraries=False) as captured:
        yield captured
