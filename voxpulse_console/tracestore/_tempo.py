"""Grafana Tempo's HTTP API (docker compose runs Tempo; natively it cannot run: its Go module is AGPL).

* a trace by id: ``GET /api/traces/<id>`` (OTLP JSON; 404 when absent);
* search: TraceQL on ``GET /api/search?q=..&start=..&end=..&limit=..`` (seconds).

The TraceQL this module sends is built by :func:`call_traceql` and :func:`calls_traceql`; every
name in it comes from :mod:`telemetry.semconv` (tests check the queries, since Tempo cannot run here).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any

import httpx

from telemetry.semconv import Attr, SpanName

from ._defaults import DEFAULT_URLS
from ._http import HttpTraceStore, trace_id_hex
from ._model import CallTrace, Span, Trace

__all__ = ["TempoTraceStore", "call_traceql", "calls_traceql", "trace_from_otlp_json", "traceql_string"]


def traceql_string(value: str) -> str:
    """A TraceQL string literal (double quotes, backslash escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def call_traceql(call_id: str) -> str:
    """TraceQL that finds every span of one call."""
    return f"{{ span.{Attr.CALL_ID} = {traceql_string(call_id)} }}"


def calls_traceql(min_duration_ms: float | None = None) -> str:
    """TraceQL for the calls' root spans (slower than ``min_duration_ms``), with their call_id."""
    cond = f"name = {traceql_string(SpanName.CALL)}"
    if min_duration_ms is not None:
        cond += f" && duration > {min_duration_ms:g}ms"
    return f"{{ {cond} }} | select(span.{Attr.CALL_ID})"


def _value(v: Mapping[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in v:
            return v[key]
    if "intValue" in v:
        return int(v["intValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    return None


def _attrs(items: Any) -> dict[str, Any]:
    return {a["key"]: _value(a.get("value") or {}) for a in items or [] if "key" in a}


def _hex(value: str | None, width: int) -> str | None:
    """OTLP JSON ids: hex (Tempo) or base64 (the protobuf JSON mapping)."""
    if not value:
        return None
    if len(value) in (16, 32) and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    try:
        return base64.b64decode(value, validate=True).hex().rjust(width, "0")
    except ValueError:
        return value.lower()


def trace_from_otlp_json(trace_id: str, doc: Mapping[str, Any]) -> Trace:
    """Tempo's ``/api/traces/<id>`` JSON (``batches``, ``resourceSpans`` or v2's ``trace``) as a :class:`Trace`."""
    tid = trace_id_hex(trace_id)
    batches = doc.get("batches") or doc.get("resourceSpans") or (doc.get("trace") or {}).get("resourceSpans") or []
    spans: list[Span] = []
    for batch in batches:
        resource = _attrs((batch.get("resource") or {}).get("attributes"))
        service = str(resource.get("service.name", ""))
        for scope in batch.get("scopeSpans") or batch.get("instrumentationLibrarySpans") or []:
            for s in scope.get("spans") or []:
                status = s.get("status") or {}
                events = tuple(
                    (int(e.get("timeUnixNano", 0)), str(e.get("name", "")), _attrs(e.get("attributes")))
                    for e in s.get("events") or []
                )
                spans.append(
                    Span(
                        trace_id=_hex(s.get("traceId"), 32) or tid,
                        span_id=_hex(s.get("spanId"), 16) or "",
                        parent_id=_hex(s.get("parentSpanId"), 16),
                        name=str(s.get("name", "?")),
                        service=service,
                        start_ns=int(s.get("startTimeUnixNano", 0)),
                        end_ns=int(s.get("endTimeUnixNano", 0)),
                        attributes=_attrs(s.get("attributes")),
                        error=status.get("code") in (2, "STATUS_CODE_ERROR"),
                        events=events,
                    )
                )
    spans.sort(key=lambda x: x.start_ns)
    return Trace(trace_id=tid, spans=tuple(spans))


class TempoTraceStore(HttpTraceStore):
    """:class:`~voxpulse_console.tracestore.TraceStore` over Tempo's HTTP API (default port 3200)."""

    kind = "tempo"

    def __init__(
        self, url: str = DEFAULT_URLS["tempo"], *, timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(url, timeout_s=timeout_s, client=client)

    async def search(self, traceql: str, *, start_s: float, end_s: float, limit: int = 20) -> list[dict[str, Any]]:
        """One TraceQL search; Tempo's ``traces`` list (traceID, startTimeUnixNano, durationMs, spanSets)."""
        body = await self._get(
            "/api/search", {"q": traceql, "start": int(start_s), "end": int(end_s) + 1, "limit": limit}
        )
        return list(body.get("traces") or [])

    async def trace(self, trace_id: str) -> Trace | None:
        tid = trace_id_hex(trace_id)
        body = await self._get(f"/api/traces/{tid}", allow_404=True)
        if body is None:
            return None
        trace = trace_from_otlp_json(tid, body)
        return trace if trace.spans else None

    async def traces_for_call(self, call_id: str, *, lookback_s: float = 7 * 86400) -> list[str]:
        end = time.time() + 60
        found = await self.search(call_traceql(call_id), start_s=end - 60 - lookback_s, end_s=end, limit=20)
        found.sort(key=lambda t: int(t.get("startTimeUnixNano") or 0), reverse=True)
        return list(dict.fromkeys(trace_id_hex(str(t["traceID"])) for t in found))

    async def calls(
        self, start_s: float, end_s: float, *, min_duration_ms: float | None = None, limit: int = 20
    ) -> list[CallTrace]:
        per_query = limit if min_duration_ms is None else min(max(limit * 5, 100), 1000)
        found: list[CallTrace] = []
        for t in await self.search(calls_traceql(min_duration_ms), start_s=start_s, end_s=end_s, limit=per_query):
            spans = [s for ss in t.get("spanSets") or [t.get("spanSet") or {}] for s in ss.get("spans") or []]
            call_id = next((_attrs(s.get("attributes")).get(Attr.CALL_ID) for s in spans
                            if Attr.CALL_ID in _attrs(s.get("attributes"))), None)
            root = spans[0] if spans else {}
            start_ns = int(root.get("startTimeUnixNano") or t.get("startTimeUnixNano") or 0)
            duration_ms = (int(root["durationNanos"]) / 1e6 if root.get("durationNanos")
                           else float(t.get("durationMs") or 0))
            found.append(CallTrace(trace_id_hex(str(t["traceID"])), str(call_id) if call_id else None,
                                   start_ns, duration_ms))
        if min_duration_ms is not None:
            found.sort(key=lambda c: c.duration_ms, reverse=True)
        else:
            found.sort(key=lambda c: c.start_ns, reverse=True)
        return found[:limit]

    def trace_link(self, trace_id: str) -> str:
        return f"{self.url}/api/traces/{trace_id_hex(trace_id)}"

    async def ready(self) -> bool:
        return await self._ok("/ready")
