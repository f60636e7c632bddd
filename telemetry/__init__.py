"""VoxPulse: OpenTelemetry tracing and metrics for LiveKit voice agents.

    import telemetry

    telemetry.configure(service_name="tyre-agent")

    @telemetry.trace_tool
    async def find_tyres(size: str) -> list[dict]: ...

    async with telemetry.call(call_id=sip_call_id, caller=phone) as call:  # never the room name
        ...

The names below are the core API. Public submodules, each with its own ``__all__``:
``telemetry.semconv`` (every name VoxPulse emits), ``telemetry.metrics`` (instruments, also the
application's own), ``telemetry.pricing``, ``telemetry.exceptions``, ``telemetry.testing``,
``telemetry.sampling`` (the exemplar filter of tail sampling), ``telemetry.relay`` (a LiveKit
worker's metrics relay), and the
optional integrations ``telemetry.livekit`` (extra ``livekit``) and ``telemetry.history`` (extra
``history``). Everything else is internal. See docs/library-api.md (a test keeps it complete).
"""

from importlib import metadata as _metadata

from telemetry import metrics
from telemetry._setup import Telemetry, TelemetryConfig, configure
from telemetry.calls import CallScope, call, current_call, inject
from telemetry.decorators import trace_llm, trace_stt, trace_tool, trace_tts, traced
from telemetry.exceptions import TelemetryConfigError, TelemetryError
from telemetry.logs import mask_logs, setup_logging
from telemetry.redaction import redact
from telemetry.semconv import Attr, CallOutcome, Stage

try:
    __version__: str = _metadata.version("voxpulse-otel")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

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
    "mask_logs",
    "metrics",
    "redact",
    "setup_logging",
    "trace_llm",
    "trace_stt",
    "trace_tool",
    "trace_tts",
    "traced",
]
