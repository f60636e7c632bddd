"""The trace store, behind one small interface: Jaeger natively, Tempo in docker compose.

    store = tracestore.from_env()                 # VOXPULSE_TRACE_STORE (jaeger|tempo), VOXPULSE_TRACE_STORE_URL
    async with store:
        trace = await store.trace("4bf92f3577b34da6a3ce929d0e0e4736")
        for t in await store.traces_for_call("sim-7-ab12-0003"):
            ...
        slow = await store.calls(start, end, min_duration_ms=3000, limit=20)

Every caller (``voxpulse trace``, ``voxpulse demo``, the web console, the benchmarks and the tests)
goes through :class:`TraceStore`; nothing else speaks a trace store's HTTP API.

Configuration (environment, or the arguments of :func:`create`):

* ``VOXPULSE_TRACE_STORE``: ``jaeger`` (default; the native stack) or ``tempo`` (docker compose's default);
* ``VOXPULSE_TRACE_STORE_URL``: the store's query API; default ``http://127.0.0.1:16686`` (Jaeger)
  or ``http://127.0.0.1:3200`` (Tempo).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telemetry._env import EnvVar, text

from ._defaults import DEFAULT_KIND, DEFAULT_URLS
from ._jaeger import JaegerTraceStore
from ._model import CallTrace, Span, Trace, TraceStore, TraceStoreError
from ._tempo import TempoTraceStore

__all__ = [
    "DEFAULT_KIND",
    "DEFAULT_URLS",
    "KINDS",
    "TRACE_STORE",
    "TRACE_STORE_URL",
    "CallTrace",
    "JaegerTraceStore",
    "Span",
    "TempoTraceStore",
    "Trace",
    "TraceStore",
    "TraceStoreError",
    "create",
    "from_env",
]

KINDS: dict[str, type[JaegerTraceStore] | type[TempoTraceStore]] = {
    "jaeger": JaegerTraceStore,
    "tempo": TempoTraceStore,
}
# the console's table (voxpulse_console.settings) lists these two
TRACE_STORE = EnvVar(
    ("VOXPULSE_TRACE_STORE",), DEFAULT_KIND,
    "The trace store the console and `voxpulse trace` read: Jaeger (the native stack) or Tempo (docker compose).",
    tuple(DEFAULT_URLS),
)
TRACE_STORE_URL = EnvVar(
    ("VOXPULSE_TRACE_STORE_URL",), None,
    "The trace store's query API; default " + ", ".join(f"{u} ({k})" for k, u in DEFAULT_URLS.items()) + ".",
)


def create(kind: str = DEFAULT_KIND, url: str | None = None, **options: Any) -> TraceStore:
    """A store of ``kind`` at ``url`` (default: the kind's local address). ``options`` go to its
    constructor (``timeout_s``, ``client``; Jaeger also ``services``, ``services_ttl_s``)."""
    name = kind.strip().lower()
    if name not in KINDS:
        raise ValueError(f"unknown trace store {kind!r}; known: {', '.join(KINDS)}")
    store: TraceStore = KINDS[name](url or DEFAULT_URLS[name], **options)
    return store


def from_env(env: Mapping[str, str] | None = None, **options: Any) -> TraceStore:
    """The store that ``VOXPULSE_TRACE_STORE`` and ``VOXPULSE_TRACE_STORE_URL`` name (see the module docstring)."""
    return create(str(text(TRACE_STORE, env=env)), text(TRACE_STORE_URL, env=env), **options)
