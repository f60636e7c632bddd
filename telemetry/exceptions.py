"""Exceptions raised by VoxPulse.

    TelemetryError
    └── TelemetryConfigError (also a ValueError): a bad argument or environment variable.

Telemetry never raises into a call: internal failures are logged once (see ``_errors``).
"""

from __future__ import annotations

__all__ = ["TelemetryConfigError", "TelemetryError"]


class TelemetryError(Exception):
    """Base class of VoxPulse's exceptions."""


class TelemetryConfigError(TelemetryError, ValueError):
    """A configuration value (argument or environment variable) is invalid."""
