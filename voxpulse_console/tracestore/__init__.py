"""The trace store, behind one small interface: Jaeger natively, Tempo in docker compose.

    store = tracestore.from_env()                 # VOXPULSE_TRACE_STORE (jaeger|tempo), VOXPULSE_TRACE_STORE_URL
    async with store:
        trace = await store.trace("4bf92f3577b34da6a3ce929d0e0e4736")
        for t in await store.traces_for_call("sim-7-ab12-0003"):
            ...
        slow = await store.calls(start, end, min_duration_ms=3000, limit=20)

Every caller (``voxpulse trace``, ``voxpulse demo``, the web console, the benchmarks and the tests)
goes through :class:`TraceStore`; nothing else speaks a trace store's HTTP API.
"""

from __future__ import annotations

from ._model import CallTrace, Span, Trace, TraceStore, TraceStoreError

__all__ = ["CallTrace", "Span", "Trace", "TraceStore", "TraceStoreError"]
