"""The ``console`` exporter: prints each call's spans as a tree with durations, for local work."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TextIO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from telemetry.semconv import Attr

__all__ = ["ConsoleTreeExporter", "render_tree"]

_SHOWN = (Attr.CALL_ID, Attr.STAGE, Attr.CALL_OUTCOME, Attr.CALL_TRANSFER_REASON, Attr.TURN_TTFW,
          Attr.STREAM_TTFC, Attr.TOOL_NAME, Attr.CANCELLED, Attr.ERROR_TYPE)


def _ms(span: ReadableSpan) -> float:
    if span.start_time is None or span.end_time is None:
        return 0.0
    return (span.end_time - span.start_time) / 1e6


def render_tree(spans: Sequence[ReadableSpan]) -> str:
    """One trace's spans as an indented tree, children in start order."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in spans:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in by_id else None
        children.setdefault(parent, []).append(s)
    lines: list[str] = []

    def walk(span: ReadableSpan, prefix: str, last: bool, root: bool) -> None:
        attrs = span.attributes or {}
        shown = " ".join(
            f"{k.rsplit('.', 1)[-1]}={attrs[k]!s}" for k in _SHOWN
            if k in attrs and (root or k != Attr.CALL_ID)
        )
        err = " ERROR" if span.status.status_code is StatusCode.ERROR else ""
        branch = "" if root else ("└─ " if last else "├─ ")
        lines.append(f"{prefix}{branch}{span.name}  {_ms(span):.1f} ms{err}  {shown}".rstrip())
        kids = sorted(children.get(span.context.span_id if span.context else None, []),
                      key=lambda s: s.start_time or 0)
        for i, kid in enumerate(kids):
            walk(kid, prefix + ("" if root else ("   " if last else "│  ")), i == len(kids) - 1, False)

    for top in sorted(children.get(None, []), key=lambda s: s.start_time or 0):
        walk(top, "", True, True)
    return "\n".join(lines)


class ConsoleTreeExporter(SpanExporter):
    """Buffers spans per trace and prints the trace when its root span arrives."""

    def __init__(self, out: TextIO | None = None, max_pending_traces: int = 1000) -> None:
        self._out = out
        self._pending: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._max = max_pending_traces
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ready: list[list[ReadableSpan]] = []
        with self._lock:
            for span in spans:
                if span.context is None:
                    continue
                bucket = self._pending.setdefault(span.context.trace_id, [])
                bucket.append(span)
                if span.parent is None or span.parent.is_remote:
                    ready.append(self._pending.pop(span.context.trace_id))
            while len(self._pending) > self._max:
                self._pending.popitem(last=False)
        out = self._out or sys.stderr
        for trace_spans in ready:
            out.write(render_tree(trace_spans) + "\n\n")
        out.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._pending.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
