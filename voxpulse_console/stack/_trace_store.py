"""Where the stack keeps Jaeger's spans (``voxpulse stack up --trace-store``): Badger on the local disk,
or a Cassandra node of the stack's own (:func:`voxpulse_console.stack._catalogue.on_cassandra`). The
choice lives in the state folder (``trace-store``) until ``stack down`` forgets it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from voxpulse_console.stack._catalogue import TRACE_STORES, StackError
from voxpulse_console.stack._layout import state_path, trace_store_file

__all__ = ["choose_trace_store", "read_trace_store", "trace_store"]


def trace_store(*, state_dir: Path | str | None = None) -> str:
    """Where the stack in ``state_dir`` keeps Jaeger's spans: one of :data:`TRACE_STORES` (``up(trace_store=...)``)."""
    return read_trace_store(state_path(state_dir))


def read_trace_store(state: Path) -> str:
    """The trace store chosen for the stack in ``state`` (:data:`TRACE_STORES`; default Badger)."""
    path = trace_store_file(state)
    chosen = path.read_text(encoding="utf-8").strip() if path.is_file() else TRACE_STORES[0]
    return chosen if chosen in TRACE_STORES else TRACE_STORES[0]


def choose_trace_store(state: Path, wanted: str | None, running: Callable[[], Sequence[str]]) -> None:
    """Records ``wanted`` (None: keep the current choice); refused while ``running()`` names any of the
    stack's components (a running stack keeps its store until ``stack down``)."""
    current = read_trace_store(state)
    wanted = current if wanted is None else wanted
    if wanted not in TRACE_STORES:
        raise StackError(f"--trace-store {wanted!r}: one of {', '.join(TRACE_STORES)}")
    if wanted == current:
        return
    if busy := running():
        raise StackError(f"the stack in {state} keeps its traces in {current}: `voxpulse stack down` first "
                         f"({', '.join(busy)})")
    if wanted == TRACE_STORES[0]:
        trace_store_file(state).unlink(missing_ok=True)
    else:
        trace_store_file(state).write_text(wanted + "\n", encoding="utf-8")
