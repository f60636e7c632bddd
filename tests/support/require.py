"""``VOXPULSE_REQUIRE_<WHAT>``: whether this run must have a real component, and what to do without it.

``STACK`` (collector, trace store, Prometheus, Alertmanager, promtool, the dashboard linter, docker
compose) and ``DB`` (PostgreSQL, Redis) are set by scripts/test.sh in CI; any other name works the
same way (``LIVEKIT``, ``BROWSER``)::

    if shutil.which("chromium") is None:
        unavailable("BROWSER", "chromium not installed (scripts/build-backends.sh --only=debian)")
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["required", "unavailable"]

#: Values that leave a requirement off (case-insensitive); anything else turns it on.
OFF = frozenset({"", "0", "false", "no", "off"})


def variable(what: str) -> str:
    """``STACK`` -> ``VOXPULSE_REQUIRE_STACK``."""
    return f"VOXPULSE_REQUIRE_{what.upper()}"


def required(what: str) -> bool:
    """True when ``VOXPULSE_REQUIRE_<WHAT>`` is set to anything but ``""``, ``0``, ``false``, ``no``, ``off``."""
    return os.environ.get(variable(what), "").strip().lower() not in OFF


def unavailable(what: str, reason: str) -> NoReturn:
    """Skip the test with ``reason``, or fail it when the run requires ``what``."""
    if required(what):
        pytest.fail(f"{reason} ({variable(what)} is set)", pytrace=False)
    pytest.skip(reason)
