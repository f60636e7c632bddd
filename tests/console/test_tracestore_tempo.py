"""The Tempo implementation without Tempo: its Go module is AGPL, so no Tempo runs here (docker
compose runs the official image). What can be checked here is checked: the HTTP requests it builds
(TraceQL, time range, limits), that every name in its TraceQL comes from telemetry.semconv, and that
it reads Tempo's answers (recorded shapes of Tempo 2.8's /api/search and /api/traces JSON)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from telemetry.semconv import Attr, SpanName
from voxpulse_console import tracestore
from voxpulse_console.tracestore import TempoTraceStore, TraceStoreError
from voxpulse_console.tracestore._tempo import call_traceql, calls_traceql, trace_from_otlp_json, traceql_string

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _span(span_id: str, parent: str | None, name: str, start_ms: int, end_ms: int, **attrs: object) -> dict[str, Any]:
    def value(v: object) -> dict[str, Any]:
        if isinstance(v, float):
            return {"doubleValue": v}
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": str(v)}

    out: dict[str, Any] = {
        "traceId": _b64(TRACE_ID),
        "spanId": _b64(span_id),
        "name": name,
        "startTimeUnixNano": str(1_700_000_000_000_000_000 + start_ms * 1_000_000),
        "endTimeUnixNano": str(1_700_000_000_000_000_000 + end_ms * 1_000_000),
        "attributes": [{"key": k.replace("__", "."), "value": value(v)} for k, v in attrs.items()],
    }
    if parent:
        out["parentSpanId"] = _b64(parent)
    return out


TRACE_DOC = {"batches": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "tyre-agent"}}]},
    "scopeSpans": [{"scope": {"name": "voxpulse"}, "spans": [
        _span("01" * 8, None, "call", 0, 5000, call_id="c-1", voice__call__outcome="transferred"),
        _span("07" * 8, "01" * 8, "turn", 1000, 3200, call_id="c-1", voice__stage="turn",
              voice__turn__time_to_first_word=1.234),
        {**_span("08" * 8, "07" * 8, "chat gpt-4o-mini", 1100, 1900, call_id="c-1", voice__stage="llm"),
         "status": {"code": 2, "message": "rate limited"},
         "events": [{"timeUnixNano": str(1_700_000_001_200_000_000), "name": "exception",
                     "attributes": [{"key": "exception.type", "value": {"stringValue": "RateLimitError"}}]}]},
    ]}],
}]}

SEARCH_DOC = {"traces": [
    {"traceID": "af7651916cd43dd8448eb211c80319c", "rootServiceName": "tyre-agent", "rootTraceName": "call",
     "startTimeUnixNano": "1700000000000000000", "durationMs": 5000,
     "spanSets": [{"matched": 1, "spans": [{"spanID": "0101010101010101", "startTimeUnixNano": "1700000000000000000",
                                            "durationNanos": "5000000000",
                                            "attributes": [{"key": "call_id", "value": {"stringValue": "c-1"}}]}]}]},
    {"traceID": "1" * 32, "rootServiceName": "tyre-agent", "rootTraceName": "call",
     "startTimeUnixNano": "1700000100000000000", "durationMs": 9000,
     "spanSets": [{"matched": 1, "spans": [{"spanID": "0202020202020202", "startTimeUnixNano": "1700000100000000000",
                                            "durationNanos": "9000000000",
                                            "attributes": [{"key": "call_id", "value": {"stringValue": "c-2"}}]}]}]},
]}


class Recorder:
    """An httpx transport standing in for Tempo's HTTP API: records requests, answers recorded JSON."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._answer(request)


def _store(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[TempoTraceStore, Recorder]:
    rec = Recorder(answer)
    client = httpx.AsyncClient(transport=httpx.MockTransport(rec))
    return TempoTraceStore("http://tempo.test:3200/", client=client), rec


# --- TraceQL ----------------------------------------------------------------------------------------


def test_traceql_names_come_from_semconv() -> None:
    assert call_traceql("sim-7-ab-0001") == f'{{ span.{Attr.CALL_ID} = "sim-7-ab-0001" }}'
    assert calls_traceql() == f'{{ name = "{SpanName.CALL}" }} | select(span.{Attr.CALL_ID})'
    assert calls_traceql(3000) == f'{{ name = "{SpanName.CALL}" && duration > 3000ms }} | select(span.{Attr.CALL_ID})'
    assert calls_traceql(1500.5) == '{ name = "call" && duration > 1500.5ms } | select(span.call_id)'


def test_traceql_strings_are_escaped() -> None:
    assert traceql_string('a"b\\c') == '"a\\"b\\\\c"'
    assert call_traceql('x" } || { true') == '{ span.call_id = "x\\" } || { true" }'


# --- requests and answers ---------------------------------------------------------------------------


async def test_traces_for_call_sends_traceql_over_the_lookback() -> None:
    store, rec = _store(lambda r: httpx.Response(200, json=SEARCH_DOC))
    async with store:
        before = time.time()
        ids = await store.traces_for_call("c-1", lookback_s=3600)
    (req,) = rec.requests
    assert req.url.path == "/api/search"
    assert req.url.params["q"] == '{ span.call_id = "c-1" }'
    assert req.url.params["limit"] == "20"
    start, end = int(req.url.params["start"]), int(req.url.params["end"])
    assert before - 3600 - 2 <= start <= before - 3600 + 2
    assert before + 59 <= end <= time.time() + 62
    # newest first; a trace id with its leading zero dropped by Tempo comes back as 32 hex
    assert ids == ["1" * 32, TRACE_ID]


async def test_calls_slowest_first_with_call_ids() -> None:
    store, rec = _store(lambda r: httpx.Response(200, json=SEARCH_DOC))
    async with store:
        calls = await store.calls(1_700_000_000, 1_700_000_200, min_duration_ms=3000, limit=1)
        newest = await store.calls(1_700_000_000, 1_700_000_200)
    slow, recent = rec.requests
    assert slow.url.params["q"] == '{ name = "call" && duration > 3000ms } | select(span.call_id)'
    assert (slow.url.params["start"], slow.url.params["end"]) == ("1700000000", "1700000201")
    assert int(slow.url.params["limit"]) >= 100  # more than asked: Tempo does not sort by duration
    assert recent.url.params["q"] == '{ name = "call" } | select(span.call_id)'
    assert recent.url.params["limit"] == "20"
    assert [(c.trace_id, c.call_id, c.duration_ms) for c in calls] == [("1" * 32, "c-2", 9000.0)]
    assert [c.call_id for c in newest] == ["c-2", "c-1"]
    assert newest[1].start_ns == 1_700_000_000_000_000_000


async def test_trace_by_id() -> None:
    store, rec = _store(lambda r: httpx.Response(200, json=TRACE_DOC))
    async with store:
        trace = await store.trace(TRACE_ID.upper())
    assert rec.requests[0].url.path == f"/api/traces/{TRACE_ID}"
    assert trace is not None and trace.trace_id == TRACE_ID
    assert [s.name for s in trace.spans] == ["call", "turn", "chat gpt-4o-mini"]
    root, turn, llm = trace.spans
    assert trace.root == root and trace.call_id == "c-1"
    assert root.parent_id is None and turn.parent_id == "01" * 8 and llm.parent_id == "07" * 8
    assert root.service == "tyre-agent" and root.duration_ms == 5000
    assert turn.attributes[Attr.TURN_TTFW] == 1.234 and turn.attributes[Attr.STAGE] == "turn"
    assert llm.error and not root.error
    assert llm.events == ((1_700_000_001_200_000_000, "exception", {"exception.type": "RateLimitError"}),)
    assert store.trace_link(TRACE_ID) == f"http://tempo.test:3200/api/traces/{TRACE_ID}"


async def test_missing_trace_is_none_and_errors_are_trace_store_errors() -> None:
    store, _ = _store(lambda r: httpx.Response(404, text="trace not found"))
    async with store:
        assert await store.trace(TRACE_ID) is None
        with pytest.raises(ValueError, match="not a trace id"):
            await store.trace("not-hex")
    store, _ = _store(lambda r: httpx.Response(500, text="boom"))
    async with store:
        with pytest.raises(TraceStoreError, match="500"):
            await store.traces_for_call("c-1")
        assert not await store.ready()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    store, _ = _store(refuse)
    async with store:
        with pytest.raises(TraceStoreError, match="did not answer"):
            await store.trace(TRACE_ID)
        assert not await store.ready()


async def test_ready_asks_tempo_ready() -> None:
    store, rec = _store(lambda r: httpx.Response(200 if r.url.path == "/ready" else 404, text="ready"))
    async with store:
        assert await store.ready()
    assert rec.requests[0].url.path == "/ready"


def test_v2_and_protobuf_json_shapes() -> None:
    v2 = {"trace": {"resourceSpans": TRACE_DOC["batches"]}}
    assert [s.name for s in trace_from_otlp_json(TRACE_ID, v2).spans] == ["call", "turn", "chat gpt-4o-mini"]
    hexed = json.loads(json.dumps(TRACE_DOC).replace(_b64("01" * 8), "01" * 8))
    assert trace_from_otlp_json(TRACE_ID, hexed).spans[0].span_id == "01" * 8


def test_factory_picks_the_kind_and_url() -> None:
    store = tracestore.from_env({"VOXPULSE_TRACE_STORE": "tempo"})
    assert isinstance(store, TempoTraceStore) and store.url == "http://127.0.0.1:3200"
    store = tracestore.from_env({"VOXPULSE_TRACE_STORE": "Tempo", "VOXPULSE_TRACE_STORE_URL": "http://t:3200/"})
    assert store.kind == "tempo" and store.url == "http://t:3200"
    default = tracestore.from_env({})
    assert default.kind == "jaeger" and default.url == "http://127.0.0.1:16686"
    with pytest.raises(ValueError, match="unknown trace store"):
        tracestore.create("zipkin")
