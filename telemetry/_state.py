"""Process-wide telemetry state: what configure() (or testing.capture_telemetry()) installed."""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider

from telemetry.redaction import Redactor

__all__ = ["STATE", "TRACER_NAME", "State"]

TRACER_NAME = "voxpulse"


@dataclass(slots=True)
class State:
    enabled: bool = False
    tracer: trace.Tracer = field(default_factory=trace.NoOpTracer)
    meter_provider: MeterProvider | None = None
    redactor: Redactor = field(default_factory=Redactor)
    service_version: str | None = None


STATE = State()
