"""The VoxPulse web console (``voxpulse ui``): every call as one timeline, live, behind a login.

An aiohttp application (:mod:`voxpulse_console.ui.app`) serving a JSON API and the frontend built
from ``web/`` (TypeScript, Vite, Preact, uPlot) as static files. Data: the call history and
alerts from PostgreSQL (:mod:`~voxpulse_console.ui.database`), latency from Prometheus
(:mod:`~voxpulse_console.ui.prom`), traces through :mod:`voxpulse_console.tracestore`; live updates
by PostgreSQL LISTEN/NOTIFY pushed as Server-Sent Events (:mod:`~voxpulse_console.ui.live`).
Security in :mod:`~voxpulse_console.ui.auth`. See docs/console.md.
"""

from voxpulse_console.ui.commands import register_cli

__all__ = ["register_cli"]
