"""``python -m agent dev|start|console``: LiveKit's CLI around :data:`agent.server.server`.

The worker's main process runs the metrics relay (``telemetry.relay``): each call's job process
exports its metrics to it as deltas, and it exports the worker's series to the collector as their
one writer, so the series do not multiply with the calls (each job process would otherwise be an
``instance`` of its own). Set before the job processes start, ``VOXPULSE_METRICS_RELAY`` tells
them where it is.
"""

from __future__ import annotations

import os

from livekit.agents import cli

from telemetry.relay import MetricsRelay

from .server import server


def _relay() -> MetricsRelay | None:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    if os.environ.get("VOXPULSE_EXPORTER", "otlp") != "otlp":
        return None
    if os.environ.get("VOXPULSE_METRICS_EXPORTER", "otlp") not in ("otlp", "both"):
        return None
    interval_s = float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "20000")) / 1000
    resource = {"service.name": os.environ.get("OTEL_SERVICE_NAME", "tyre-agent")}
    collector = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://127.0.0.1:4318"
    relay = MetricsRelay(forward_to=collector, resource=resource, interval_s=interval_s).start()
    os.environ["VOXPULSE_METRICS_RELAY"] = relay.endpoint
    return relay


if __name__ == "__main__":
    relay = _relay()
    try:
        cli.run_app(server)
    finally:
        if relay is not None:
            relay.stop()
