"""A trace as a terminal waterfall (rich table): the span tree, durations, and bars on the trace's timeline.

    from voxpulse_console import tracestore
    from voxpulse_console.waterfall import render_waterfall

    async with tracestore.from_env() as store:
        trace = await store.trace(trace_id)
    console.print(render_waterfall(trace.spans, title=f"call {trace.call_id}"))

LiveKit's internal per-attempt spans are folded into their parents unless ``full=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from telemetry.semconv import Attr

from .tracestore import Span

__all__ = ["render_waterfall"]

_SHOW = (Attr.STAGE, Attr.TURN_TTFW, Attr.TOOL_NAME, Attr.CALL_OUTCOME, Attr.CALL_TRANSFER_REASON,
         Attr.TOOL_ANOMALY, Attr.ERROR_TYPE)
# LiveKit's own plumbing spans: their children are shown under the nearest shown ancestor
_HIDE = {"tts_request_run", "llm_request_run", "tts_stream_adapter", "setup_toolsets", "on_user_turn_completed",
         "eou_detection", "on_enter", "on_exit", "drain_agent_activity"}
_COLOURS = {"stt": "cyan", "llm": "magenta", "tts": "green", "tool": "yellow", "turn": "blue"}


def render_waterfall(spans: Sequence[Span], *, width: int = 44, full: bool = False, title: str = "") -> Table:
    """A trace as a table: tree of span names, duration, and a bar placed on the trace's timeline."""
    table = Table(title=title or None, show_lines=False, pad_edge=False, expand=False)
    table.add_column("span", no_wrap=True)
    table.add_column("ms", justify="right")
    table.add_column("timeline", no_wrap=True)
    table.add_column("attributes", overflow="fold")
    if not spans:
        return table
    t0 = min(s.start_ns for s in spans)
    t1 = max(s.end_ns for s in spans)
    total = max(1, t1 - t0)
    by_id = {s.span_id: s for s in spans}

    def shown(s: Span) -> bool:
        return full or s.name not in _HIDE

    children: dict[str | None, list[Span]] = {}
    for s in spans:
        if not shown(s):
            continue
        p = s.parent_id
        while p in by_id and not shown(by_id[p]):  # hidden spans hand their children up
            p = by_id[p].parent_id
        children.setdefault(p if p in by_id else None, []).append(s)

    def bar(s: Span) -> str:
        a = int((s.start_ns - t0) / total * width)
        b = max(a + 1, int((s.end_ns - t0) / total * width))
        colour = "red" if s.error else _COLOURS.get(str(s.attributes.get(Attr.STAGE, "")), "white")
        return " " * a + f"[{colour}]" + "█" * (b - a) + f"[/{colour}]" + " " * (width - b)

    def shown_value(v: object) -> object:
        return round(v, 3) if isinstance(v, float) else v

    def walk(s: Span, depth: int) -> None:
        attrs = " ".join(f"{k.rsplit('.', 1)[-1]}={shown_value(s.attributes[k])}" for k in _SHOW if k in s.attributes)
        name = ("  " * depth) + s.name
        table.add_row(f"[red]{name}[/red]" if s.error else name, f"{s.duration_ms:.0f}", bar(s), attrs)
        for kid in sorted(children.get(s.span_id, []), key=lambda k: k.start_ns):
            walk(kid, depth + 1)

    for top in sorted(children.get(None, []), key=lambda k: k.start_ns):
        walk(top, 0)
    return table
