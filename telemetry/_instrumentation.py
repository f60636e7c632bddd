"""Other libraries' instrumentation, pointed at our tracer provider (one place for ``configure()``,
``capture_telemetry()`` and ``telemetry.history.instrument()``): the asyncpg and Redis
instrumentors, and LiveKit Agents' own tracer (``telemetry.livekit``).

Nothing is imported for a process that does not use it: asyncpg and Redis are instrumented at once
where the process has imported them, else by a one-shot import hook the moment it does (an agent
without a call history never loads them: importing the Redis instrumentor, and Redis with it, took
3-4 % of a real-call job process's CPU). LiveKit likewise (``import livekit.agents`` alone takes
over a second): at once where livekit-agents is already imported or in a LiveKit job process, else
when the process imports it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import multiprocessing
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Final, Generic, TypeVar

from opentelemetry.trace import TracerProvider

from telemetry._errors import internal_errors
from telemetry.redaction import ContentMode

__all__ = ["instrument_libraries", "preload_libraries", "route_livekit"]

T = TypeVar("T")

# (the library, its instrumentor's module, the instrumentor's class)
_INSTRUMENTORS: Final = (
    ("asyncpg", "opentelemetry.instrumentation.asyncpg", "AsyncPGInstrumentor"),
    ("redis", "opentelemetry.instrumentation.redis", "RedisInstrumentor"),
)
_LIVEKIT: Final = "livekit.agents"


def instrument_libraries(tracer_provider: TracerProvider | None) -> None:
    """Points the asyncpg and Redis instrumentors (those installed) at ``tracer_provider``, so their
    spans join the current call (and get ``call_id`` from our processor): now for a library the
    process has imported, else the moment it imports it (to the provider given last).

    An instrumentor already instrumented is re-pointed at the given provider (``configure()`` called
    again replaces the pipeline); with ``None`` (the global provider) it is left as it is.
    """
    for library, module, _ in _INSTRUMENTORS:
        if importlib.util.find_spec(module) is not None:
            _LIBRARIES[library].give(tracer_provider)


def preload_libraries() -> None:
    """Imports the instrumentors (those installed) of the libraries the process has imported,
    instrumenting nothing: what :func:`instrument_libraries` would load (``telemetry._setup.preload``)."""
    for library, module, _ in _INSTRUMENTORS:
        if library in sys.modules and importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def _instrument(module: str, cls_name: str, tracer_provider: TracerProvider | None) -> None:
    instrumentor = getattr(importlib.import_module(module), cls_name)()
    if instrumentor.is_instrumented_by_opentelemetry:
        if tracer_provider is None:
            return
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=tracer_provider)


# ------------------------------------------------------------------------------------------------
# LiveKit Agents
# ------------------------------------------------------------------------------------------------


def _in_livekit_job() -> bool:
    """True in a job process of a LiveKit worker (LiveKit names them ``job_proc``; with its thread
    executor every job runs in the worker's own process)."""
    return multiprocessing.current_process().name == "job_proc" and multiprocessing.parent_process() is not None


def route_livekit(tracer_provider: TracerProvider, content: ContentMode) -> None:
    """Routes LiveKit Agents' own spans into ``tracer_provider`` (``content``: whether LiveKit
    records prompts and transcripts, see ``telemetry.livekit._tracing._route_tracer``).

    Where livekit-agents is already imported (a worker, an application that imported it first) or
    in a LiveKit job process, now; else when the process imports it, to the provider given last;
    never where it is not imported (nor installed).
    """
    _LIVEKIT_ROUTE.give((tracer_provider, content), now=_in_livekit_job())


def _route(pending: tuple[TracerProvider, ContentMode]) -> None:
    from telemetry.livekit._tracing import _route_tracer

    _route_tracer(*pending)


# ------------------------------------------------------------------------------------------------
# the one mechanism: a value applied once the process has imported a module
# ------------------------------------------------------------------------------------------------


class _WhenImported(Generic[T]):
    """``apply(value)`` with the value given last: at once where module ``name`` is imported (or the
    caller says ``now``), else right after the process first imports it (a one-shot import hook).
    ``apply`` never raises into the application (contained at ``site``)."""

    def __init__(self, name: str, apply: Callable[[T], None], site: str) -> None:
        self.name = name
        self.apply = apply
        self.site = site
        self._lock = threading.Lock()
        self._pending: tuple[T] | None = None
        self._hook: _AfterImport | None = None

    def give(self, value: T, *, now: bool = False) -> None:
        with self._lock:
            self._pending = (value,)
            if not now and self.name not in sys.modules:
                if self._hook is None:
                    self._hook = _AfterImport(self.name, self._apply_pending)
                    sys.meta_path.insert(0, self._hook)
                return
        self._apply_pending()

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
            if self._hook is not None:
                self._hook.remove()
                self._hook = None
        if pending is None:
            return
        with internal_errors(self.site):  # never into the application's import
            self.apply(pending[0])


class _AfterImport(importlib.abc.MetaPathFinder):
    """A one-shot import hook: ``callback()`` runs right after module ``name`` is first executed.

    It finds the module with the finders after it and wraps that spec's loader's ``exec_module``
    (on that one loader object); every other import passes by untouched."""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name = name
        self.callback = callback

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        self.remove()
        spec: importlib.machinery.ModuleSpec | None = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):  # (a legacy loader: load_module only)
            return spec
        exec_module = loader.exec_module
        callback = self.callback

        def exec_then_call(module: ModuleType) -> None:
            exec_module(module)
            callback()

        loader.exec_module = exec_then_call  # type: ignore[method-assign]  # on this one loader object
        return spec


_LIBRARIES: Final[dict[str, _WhenImported[TracerProvider | None]]] = {
    library: _WhenImported(library, functools.partial(_instrument, module, cls_name), f"{library}.instrument")
    for library, module, cls_name in _INSTRUMENTORS
}
_LIVEKIT_ROUTE: Final[_WhenImported[tuple[TracerProvider, ContentMode]]] = _WhenImported(
    _LIVEKIT, _route, "livekit.route")
