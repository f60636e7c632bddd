"""Jaeger v2's query API (the HTTP JSON API that Jaeger's UI and Grafana's Jaeger data source use).

* a trace by id: ``GET /api/traces/<id>`` (404 when absent);
* search: ``GET /api/traces?service=..&operation=..&tags={"call_id":".."}&start=..&end=..`` (µs);
  ``service`` is required, so every search runs once per service the store knows
  (``GET /api/services``, cached for ``services_ttl_s`` and refreshed when a search finds nothing,
  so a service that has just appeared is found at once), or over the ``services`` given;
* ``/api/v3/traces`` is not used: in Jaeger 2.13 it ignores attribute filters (jaegertracing/jaeger#7594).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import httpx

from telemetry.semconv import Attr, SpanName

from ._defaults import DEFAULT_URLS
from ._http import HttpTraceStore, trace_id_hex
from ._model import CallTrace, Span, Trace

__all__ = ["JaegerTraceStore", "trace_from_jaeger"]

#: Tags Jaeger adds to every span when it converts OTLP; not attributes of the span.
_INTERNAL_TAGS = frozenset({"internal.span.format"})
_SEARCH_CONCURRENCY = 8
#: a slowest-first search reads pages of this many times the calls asked for (100 to 1000)
_SLOW_PAGE_FACTOR = 5
#: at most this many searches per service for one slowest-first list (a page keeps ~1/5 of the rest)
_SLOW_ROUNDS = 40


class _HasTraceId(Protocol):
    @property
    def trace_id(self) -> str: ...


_Found = TypeVar("_Found", bound=_HasTraceId)


def _duration_us(call: CallTrace) -> int:
    return round(call.duration_ms * 1000)


def _slowest_first(call: CallTrace) -> tuple[int, int]:
    return -_duration_us(call), -call.start_ns


def _jaeger_value(tag: Mapping[str, Any]) -> Any:
    return tag.get("value")


def _is_error(tags: Mapping[str, Any]) -> bool:
    return tags.get("error") in (True, "true") or tags.get("otel.status_code") == "ERROR"


def trace_from_jaeger(doc: Mapping[str, Any]) -> Trace:
    """One element of ``data`` in a Jaeger API answer (spans, processes) as a :class:`Trace`."""
    processes: Mapping[str, Any] = doc.get("processes") or {}
    spans: list[Span] = []
    for s in doc.get("spans") or []:
        tags = {t["key"]: _jaeger_value(t) for t in s.get("tags") or [] if t.get("key") not in _INTERNAL_TAGS}
        parent = next(
            (r.get("spanID") for r in s.get("references") or [] if r.get("refType") == "CHILD_OF"), None
        )
        events = []
        for log in s.get("logs") or []:
            fields = {f["key"]: _jaeger_value(f) for f in log.get("fields") or []}
            name = str(fields.pop("event", ""))
            events.append((int(log.get("timestamp", 0)) * 1000, name, fields))
        start_ns = int(s.get("startTime", 0)) * 1000
        process = processes.get(str(s.get("processID", ""))) or {}
        spans.append(
            Span(
                trace_id=trace_id_hex(str(s.get("traceID") or doc.get("traceID") or "0")),
                span_id=str(s.get("spanID", "")).lower().rjust(16, "0"),
                parent_id=str(parent).lower().rjust(16, "0") if parent else None,
                name=str(s.get("operationName", "?")),
                service=str(process.get("serviceName", "")),
                start_ns=start_ns,
                end_ns=start_ns + int(s.get("duration", 0)) * 1000,
                attributes=tags,
                error=_is_error(tags),
                events=tuple(events),
            )
        )
    spans.sort(key=lambda x: x.start_ns)
    return Trace(trace_id=trace_id_hex(str(doc.get("traceID") or "0")), spans=tuple(spans))


class JaegerTraceStore(HttpTraceStore):
    """:class:`~voxpulse_console.tracestore.TraceStore` over Jaeger's query API (default port 16686).

    ``services``: search only these services instead of the store's own list.
    """

    kind = "jaeger"

    def __init__(
        self,
        url: str = DEFAULT_URLS["jaeger"],
        *,
        timeout_s: float = 10.0,
        services: Iterable[str] | None = None,
        services_ttl_s: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(url, timeout_s=timeout_s, client=client)
        self._fixed_services = tuple(services) if services is not None else None
        self._services_ttl_s = services_ttl_s
        self._services: tuple[str, ...] = ()
        self._services_at = float("-inf")  # time.monotonic() of the last fetch
        self._services_lock = asyncio.Lock()

    # -- services ----------------------------------------------------------------------------------

    async def services(self, *, refresh: bool = False) -> tuple[str, ...]:
        """The service names to search: the given ones, else the store's list (cached briefly)."""
        if self._fixed_services is not None:
            return self._fixed_services
        async with self._services_lock:
            if refresh or time.monotonic() - self._services_at > self._services_ttl_s:
                body = await self._get("/api/services")
                self._services = tuple(sorted(str(s) for s in (body.get("data") or [])))
                self._services_at = time.monotonic()
            return self._services

    async def _over_services(self, search: Callable[[str], Awaitable[list[_Found]]]) -> list[_Found]:
        """``search(service)`` for every service (bounded concurrency); on no result with a list
        older than a second, once more over the services that have appeared since."""
        known = await self.services()
        age_s = time.monotonic() - self._services_at
        found = await self._gather(search, known)
        if found or self._fixed_services is not None or age_s < 1.0:
            return found
        fresh = [s for s in await self.services(refresh=True) if s not in known]
        return await self._gather(search, fresh)

    async def _gather(self, search: Callable[[str], Awaitable[list[_Found]]],
                      services: Sequence[str]) -> list[_Found]:
        limit = asyncio.Semaphore(_SEARCH_CONCURRENCY)

        async def one(service: str) -> list[_Found]:
            async with limit:
                return await search(service)

        results = await asyncio.gather(*(one(s) for s in services))
        by_id: dict[str, _Found] = {}
        for traces in results:
            for t in traces:
                by_id.setdefault(t.trace_id, t)
        return list(by_id.values())

    # -- the interface -----------------------------------------------------------------------------

    async def search(
        self,
        service: str,
        *,
        start_s: float,
        end_s: float,
        operation: str | None = None,
        tags: Mapping[str, str] | None = None,
        min_duration_ms: float | None = None,
        limit: int = 20,
    ) -> list[Trace]:
        """One search of one service, exactly as Grafana's Jaeger data source sends it."""
        params: dict[str, str | int] = {
            "service": service,
            "start": int(start_s * 1_000_000),
            "end": int(end_s * 1_000_000),
            "limit": limit,
            "lookback": "custom",
        }
        if operation:
            params["operation"] = operation
        if tags:
            params["tags"] = json.dumps(dict(tags), separators=(",", ":"), ensure_ascii=False)
        if min_duration_ms is not None:
            params["minDuration"] = f"{max(0, math.ceil(min_duration_ms * 1000))}us"  # Jaeger keeps µs
        body = await self._get("/api/traces", params)
        return [trace_from_jaeger(doc) for doc in body.get("data") or []]

    async def trace(self, trace_id: str) -> Trace | None:
        body = await self._get(f"/api/traces/{trace_id_hex(trace_id)}", allow_404=True)
        if body is None or not body.get("data"):
            return None
        trace = trace_from_jaeger(body["data"][0])
        return trace if trace.spans else None

    async def traces_for_call(self, call_id: str, *, lookback_s: float = 7 * 86400) -> list[str]:
        end = time.time() + 60
        start = end - 60 - lookback_s

        async def search(service: str) -> list[Trace]:
            return await self.search(service, start_s=start, end_s=end, tags={Attr.CALL_ID: call_id}, limit=20)

        traces = await self._over_services(search)
        traces.sort(key=lambda t: min((s.start_ns for s in t.spans), default=0), reverse=True)
        return [t.trace_id for t in traces]

    async def calls(
        self, start_s: float, end_s: float, *, min_duration_ms: float | None = None, limit: int = 20
    ) -> list[CallTrace]:
        if min_duration_ms is None:
            async def newest(service: str) -> list[Trace]:
                return await self.search(service, start_s=start_s, end_s=end_s, operation=SpanName.CALL,
                                         limit=limit)

            found = self._call_roots(await self._over_services(newest), start_s, end_s, 0)
            found.sort(key=lambda c: c.start_ns, reverse=True)
            return found[:limit]
        floor_us = max(0, math.ceil(min_duration_ms * 1000))

        async def slowest(service: str) -> list[CallTrace]:
            return await self._slowest_of(service, start_s, end_s, floor_us, limit)

        found = await self._over_services(slowest)
        found.sort(key=_slowest_first)
        return found[:limit]

    async def _slowest_of(self, service: str, start_s: float, end_s: float, floor_us: int,
                          want: int) -> list[CallTrace]:
        """The ``want`` slowest calls of one service at or over ``floor_us``, at any number of calls.

        Jaeger answers a search with at most ``limit`` traces, newest first, not slowest first. So the
        floor is raised until a search comes back short of its page (then it holds every call at or over
        the floor): to the ``want``-th longest call of a full page, which at least ``want`` calls reach;
        where that is the floor itself (ties), to one microsecond over it, the tied calls kept to fill
        up. Each round keeps about ``want / page`` of the calls over the floor, so a million calls take
        a handful of searches, each one read of Jaeger's duration index."""
        page = min(max(want * _SLOW_PAGE_FACTOR, 100), 1000)
        ties: list[CallTrace] = []
        for _ in range(_SLOW_ROUNDS):
            traces = await self.search(service, start_s=start_s, end_s=end_s, operation=SpanName.CALL,
                                       min_duration_ms=floor_us / 1000, limit=page)
            calls = sorted(self._call_roots(traces, start_s, end_s, floor_us), key=_slowest_first)
            if len(traces) < page:  # every call at or over the floor
                return (calls + ties)[:want]
            if len(calls) < want:  # a full page, fewer than `want` roots in the window: no floor to raise to
                return calls
            nxt = _duration_us(calls[want - 1])
            if nxt > floor_us:
                floor_us, ties = nxt, []
            else:
                ties = [c for c in calls if _duration_us(c) == floor_us]
                floor_us += 1
        return calls[:want]

    @staticmethod
    def _call_roots(traces: Iterable[Trace], start_s: float, end_s: float, floor_us: int) -> list[CallTrace]:
        """The calls (root ``call`` spans) of these traces that started in the window, at or over the floor."""
        found: list[CallTrace] = []
        for trace in traces:
            root = next((s for s in trace.spans if s.name == SpanName.CALL and s.parent_id is None), None)
            root = root or next((s for s in trace.spans if s.name == SpanName.CALL), None)
            if root is None or not start_s * 1e9 <= root.start_ns <= end_s * 1e9:
                continue
            call_id = root.attributes.get(Attr.CALL_ID)
            call = CallTrace(trace.trace_id, str(call_id) if call_id else trace.call_id, root.start_ns,
                             root.duration_ms)
            if _duration_us(call) >= floor_us:
                found.append(call)
        return found

    def trace_link(self, trace_id: str) -> str:
        return f"{self.url}/api/traces/{trace_id_hex(trace_id)}"

    async def ready(self) -> bool:
        return await self._ok("/api/services")

