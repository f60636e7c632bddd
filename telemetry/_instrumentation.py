"""The asyncpg and Redis instrumentors, pointed at our tracer provider (one function for
``configure()``, ``capture_telemetry()`` and ``telemetry.history.instrument()``)."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Final

from opentelemetry.trace import TracerProvider

__all__ = ["instrument_libraries"]

_INSTRUMENTORS: Final = (
    ("opentelemetry.instrumentation.asyncpg", "AsyncPGInstrumentor"),
    ("opentelemetry.instrumentation.redis", "RedisInstrumentor"),
)


def instrument_libraries(tracer_provider: TracerProvider | None) -> None:
    """Points the asyncpg and Redis instrumentors (those installed) at ``tracer_provider``, so their
    spans join the current call (and get ``call_id`` from our processor).

    An instrumentor already instrumented is re-pointed at the given provider (``configure()`` called
    again replaces the pipeline); with ``None`` (the global provider) it is left as it is.
    """
    for module, cls_name in _INSTRUMENTORS:
        if importlib.util.find_spec(module) is None:
            continue
        instrumentor = getattr(importlib.import_module(module), cls_name)()
        if instrumentor.is_instrumented_by_opentelemetry:
            if tracer_provider is None:
                continue
            instrumentor.uninstrument()
        instrumentor.instrument(tracer_provider=tracer_provider)
