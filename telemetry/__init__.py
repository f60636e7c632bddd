"""VoxPulse: OpenTelemetry tracing and metrics for LiveKit voice agents.

    import telemetry

    telemetry.configure(service_name="tyre-agent")

    @telemetry.trace_tool
    async def find_tyres(size: str) -> list[dict]: ...

    async with telemetry.call(call_id=room.name, caller=phone) as call:
        ...

This module is the whole public surface; see docs/library-api.md.
"""

from telemetry import metrics
from telemetry._setup import Telemetry, TelemetryConfig, configure
from telemetry.calls import CallScope, call, current_call, inject
from telemetry.decorators import trace_llm, trace_stt, trace_tool, trace_tts, traced
from telemetry.exceptions import TelemetryConfigError, TelemetryError
from telemetry.logs import setup_logging
from telemetry.redaction import redact
from telemetry.semconv import Attr, CallOutcome, Stage

__version__ = "0.1.0"

__all__ = [
    "Attr",
    "CallOutcome",
    "CallScope",
    "Stage",
    "Telemetry",
    "TelemetryConfig",
    "TelemetryConfigError",
    "TelemetryError",
    "__version__",
    "call",
    "configure",
    "current_call",
    "inject",
    "metrics",
    "redact",
    "setup_logging",
    "trace_llm",
    "trace_stt",
    "trace_tool",
    "trace_tts",
    "traced",
]
