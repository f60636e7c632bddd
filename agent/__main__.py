"""``python -m agent dev|start|console``: LiveKit's CLI around :func:`agent.server.build_server`.

The worker's main process runs the metrics relay (``telemetry.relay.worker_relay``): each call's job
process exports its metrics to it as deltas, and it exports the worker's series to the collector as
their one writer, so the series do not multiply with the calls (each job process would otherwise be
an ``instance`` of its own). It reads its settings like ``telemetry.configure()`` (``OTEL_*``,
``VOXPULSE_*``: endpoint, protocol, headers, TLS; nothing when ``OTEL_SDK_DISABLED`` or no OTLP
metrics) and sends with the same exporter. Set before the job processes start,
``VOXPULSE_METRICS_RELAY`` tells them where it is. (Without this, ``configure()`` in the first job
process would start the worker's relay as a process of its own: the same series, one process more.)
"""

from __future__ import annotations

from livekit.agents import cli

from telemetry.relay import worker_relay

from .server import build_server

if __name__ == "__main__":
    with worker_relay():
        cli.run_app(build_server())
