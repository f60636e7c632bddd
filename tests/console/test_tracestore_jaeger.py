"""The Jaeger implementation against the real Jaeger: spans sent over OTLP by the OpenTelemetry SDK
straight to Jaeger's OTLP port, then read back through voxpulse_console.tracestore only."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode, set_span_in_context

from telemetry.semconv import Attr, SpanName
from tests.support import unavailable
from voxpulse_console import stack, tracestore
from voxpulse_console.tracestore import JaegerTraceStore, Trace, TraceStoreError

from .conftest import LiveJaeger

pytestmark = pytest.mark.stack

T = TypeVar("T")
S = 1_000_000_000  # ns per second


async def eventually(fn: Callable[[], Awaitable[T]], what: str, deadline_s: float = 20.0) -> T:
    """``await fn()`` until it returns something truthy; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:.0f}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(0.2)


@dataclass
class Sent:
    service: str
    t0_ns: int
    calls: dict[str, str]  # call_id -> trace id; call i lasts (i + 1) seconds
    other_service: str
    other_call: tuple[str, str]


def _send_calls(jaeger: LiveJaeger) -> Sent:
    """Three calls of one service (1, 2 and 3 s long, 0.5 s apart), each a root `call` span with a
    turn and an LLM span (the third call's LLM span failed), plus one call of a second service."""
    tag = uuid.uuid4().hex[:8]
    service, other = f"vp-ts-{tag}", f"vp-ts-other-{tag}"
    t0 = time.time_ns() - 60 * S
    calls: dict[str, str] = {}
    for svc in (service, other):
        provider = TracerProvider(resource=Resource.create({"service.name": svc}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{jaeger.otlp_http}/v1/traces")))
        tracer = provider.get_tracer("voxpulse.test")
        for i in range(3 if svc == service else 1):
            call_id = f"ts-{tag}-{'mine' if svc == service else 'other'}-{i}"
            start = t0 + i * S // 2
            root = tracer.start_span(SpanName.CALL, start_time=start, attributes={Attr.CALL_ID: call_id})
            ctx = set_span_in_context(root)
            turn = tracer.start_span(SpanName.TURN, context=ctx, start_time=start + S // 10,
                                     attributes={Attr.CALL_ID: call_id, Attr.STAGE: "turn", Attr.TURN_TTFW: 0.64})
            llm = tracer.start_span("chat gpt-4o-mini", context=set_span_in_context(turn), start_time=start + S // 5,
                                    attributes={Attr.CALL_ID: call_id, Attr.STAGE: "llm", Attr.INPUT_TOKENS: 12})
            llm.add_event("first_token", {"i": 1}, timestamp=start + S // 4)
            if i == 2:
                llm.set_status(Status(StatusCode.ERROR, "rate limited"))
            llm.end(end_time=start + S // 2)
            turn.end(end_time=start + S * 6 // 10)
            root.end(end_time=start + (i + 1) * S)
            calls[call_id] = format(root.get_span_context().trace_id, "032x")
        provider.shutdown()
    other_call = next((c, t) for c, t in calls.items() if c.startswith(f"ts-{tag}-other"))
    mine = {c: t for c, t in calls.items() if c != other_call[0]}
    return Sent(service, t0, mine, other, other_call)


@pytest.fixture(scope="module")
def sent(jaeger: LiveJaeger) -> Sent:
    return _send_calls(jaeger)


@pytest.fixture
def store(jaeger: LiveJaeger) -> JaegerTraceStore:
    s = tracestore.create("jaeger", jaeger.url)
    assert isinstance(s, JaegerTraceStore)
    return s


async def test_trace_by_id(store: JaegerTraceStore, sent: Sent) -> None:
    call_id, trace_id = sorted(sent.calls.items())[2]
    async with store:
        trace = await eventually(lambda: store.trace(trace_id), f"trace {trace_id}")
    assert trace.trace_id == trace_id and trace.call_id == call_id
    assert [s.name for s in trace.spans] == [SpanName.CALL, SpanName.TURN, "chat gpt-4o-mini"]
    root, turn, llm = trace.spans
    assert trace.root == root and root.parent_id is None
    assert turn.parent_id == root.span_id and llm.parent_id == turn.span_id
    assert {s.service for s in trace.spans} == {sent.service}
    assert {s.trace_id for s in trace.spans} == {trace_id}
    assert root.duration_ms == pytest.approx(3000) and llm.duration_ms == pytest.approx(300)
    assert root.start_ns == (sent.t0_ns + S) // 1000 * 1000  # Jaeger keeps microseconds
    assert turn.attributes[Attr.STAGE] == "turn" and turn.attributes[Attr.TURN_TTFW] == 0.64
    assert llm.attributes[Attr.INPUT_TOKENS] == 12 and all(s.attributes[Attr.CALL_ID] == call_id for s in trace.spans)
    assert llm.error and not root.error and not turn.error
    assert [(e[1], e[2].get("i")) for e in llm.events] == [("first_token", 1)]
    assert store.trace_link(trace_id) == f"{store.url}/api/traces/{trace_id}"


async def test_unknown_and_malformed_trace_ids(store: JaegerTraceStore, sent: Sent) -> None:
    async with store:
        assert await store.trace(uuid.uuid4().hex) is None
        with pytest.raises(ValueError, match="not a trace id"):
            await store.trace("sim-1-0001")
        # a trace id without its leading zeros (as Jaeger and Tempo print some) is the same trace
        trace_id = next(iter(sent.calls.values()))
        assert await store.trace(trace_id.lstrip("0") or "0") is not None


async def test_search_by_call_id_without_naming_a_service(store: JaegerTraceStore, sent: Sent) -> None:
    async with store:
        for call_id, trace_id in [*sent.calls.items(), sent.other_call]:
            ids = await eventually(lambda c=call_id: store.traces_for_call(c), f"call {call_id}")
            assert ids == [trace_id], call_id
        assert await store.traces_for_call(f"no-such-call-{uuid.uuid4().hex}") == []
        services = await store.services()
    assert {sent.service, sent.other_service} <= set(services)


async def test_a_new_service_is_found_at_once_despite_the_cache(jaeger: LiveJaeger, sent: Sent) -> None:
    async with JaegerTraceStore(jaeger.url, services_ttl_s=3600) as cached:
        first = next(iter(sent.calls))
        assert await eventually(lambda: cached.traces_for_call(first), "a known call")
        await asyncio.sleep(1.1)  # the list is now older than a second: a miss refreshes it once
        late = _send_calls(jaeger)  # two services the cached list does not have
        call_id, trace_id = next(iter(late.calls.items()))
        assert await eventually(lambda: cached.traces_for_call(call_id), "a call of a new service", 5) == [trace_id]


async def test_given_services_are_the_only_ones_searched(jaeger: LiveJaeger, sent: Sent) -> None:
    async with JaegerTraceStore(jaeger.url, services=[sent.other_service]) as only_other:
        assert await only_other.services() == (sent.other_service,)
        assert await eventually(lambda: only_other.traces_for_call(sent.other_call[0]), "other call")
        assert await only_other.traces_for_call(next(iter(sent.calls))) == []


async def test_calls_newest_and_slowest(jaeger: LiveJaeger, sent: Sent) -> None:
    start, end = sent.t0_ns / S - 1, sent.t0_ns / S + 10
    by_start = sorted(sent.calls, key=lambda c: int(c.rsplit("-", 1)[1]))
    async with JaegerTraceStore(jaeger.url, services=[sent.service]) as store:
        newest = await eventually(lambda: store.calls(start, end), "the calls", 20)
        assert [c.call_id for c in newest] == by_start[::-1]
        assert [c.trace_id for c in newest] == [sent.calls[c] for c in by_start[::-1]]
        assert [round(c.duration_ms) for c in newest] == [3000, 2000, 1000]
        slow = await store.calls(start, end, min_duration_ms=1500, limit=5)
        assert [c.call_id for c in slow] == [by_start[2], by_start[1]]
        assert [c.call_id for c in await store.calls(start, end, min_duration_ms=1500, limit=1)] == [by_start[2]]
        assert await store.calls(start + 30, end + 30) == []


def _send_many_calls(jaeger: LiveJaeger, n: int) -> tuple[str, int, dict[str, int]]:
    """``n`` root ``call`` spans of a new service, 10 ms apart: the two oldest are the slowest
    (9.5 and 9 s), three in the middle tie at 8 s, the rest last 0.5-5 s. Returns the service, the
    first start (ns) and each call's duration (ms) by call_id."""
    tag = uuid.uuid4().hex[:8]
    service = f"vp-ts-many-{tag}"
    t0 = time.time_ns() - 120 * S
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{jaeger.otlp_http}/v1/traces"),
                                                   max_export_batch_size=256))
    tracer = provider.get_tracer("voxpulse.test")
    durations: dict[str, int] = {}
    for i in range(n):
        call_id = f"many-{tag}-{i}"
        ms = {0: 9500, 1: 9000, n // 2: 8000, n // 2 + 1: 8000, n // 2 + 2: 8000}.get(i, 500 + (i * 37) % 4500)
        start = t0 + i * S // 100
        tracer.start_span(SpanName.CALL, start_time=start, attributes={Attr.CALL_ID: call_id}).end(
            end_time=start + ms * 1_000_000)
        durations[call_id] = ms
    provider.shutdown()
    return service, t0, durations


async def test_the_slowest_calls_at_any_number_of_calls(jaeger: LiveJaeger) -> None:
    """Jaeger answers a search newest first, a page at a time: the slowest calls here are the oldest
    of 700, far behind the first page of any search, and three more tie."""
    service, t0, durations = _send_many_calls(jaeger, 700)
    start, end = t0 / S - 1, t0 / S + 60
    ties = {c for c, ms in durations.items() if ms == 8000}
    async with _CountingStore(jaeger.url, services=[service]) as store:
        await eventually(lambda: _all_stored(store, service, start, end, len(durations)), "700 calls", 30)
        store.searches.clear()
        two = await store.calls(start, end, min_duration_ms=100, limit=2)
        oldest = list(durations)[:2]
        assert [(c.call_id, c.duration_ms) for c in two] == [(oldest[0], 9500), (oldest[1], 9000)]
        assert 2 <= len(store.searches) <= 6, store.searches  # the floor rises: a handful of index reads, not a scan
        five = await store.calls(start, end, min_duration_ms=100, limit=5)
        assert [c.duration_ms for c in five] == [9500, 9000, 8000, 8000, 8000]
        assert {c.call_id for c in five[2:]} == ties
        four = await store.calls(start, end, min_duration_ms=100, limit=4)  # two of the three tied calls
        assert [c.duration_ms for c in four] == [9500, 9000, 8000, 8000] and {c.call_id for c in four[2:]} < ties
        assert [c.duration_ms for c in await store.calls(start, end, min_duration_ms=9200, limit=5)] == [9500]
        assert await store.calls(start, end, min_duration_ms=9600, limit=5) == []


class _CountingStore(JaegerTraceStore):
    """Records each search's ``min_duration_ms``."""

    def __init__(self, url: str, *, services: list[str]) -> None:
        super().__init__(url, services=services)
        self.searches: list[float | None] = []

    async def search(self, service: str, **kw: Any) -> list[Trace]:
        self.searches.append(kw.get("min_duration_ms"))
        return await super().search(service, **kw)


async def _all_stored(store: JaegerTraceStore, service: str, start: float, end: float, n: int) -> bool:
    return len(await store.search(service, start_s=start, end_s=end, operation=SpanName.CALL, limit=n + 1)) == n


async def test_ready_and_a_store_that_does_not_answer(store: JaegerTraceStore) -> None:
    async with store:
        assert await store.ready()
    async with tracestore.create("jaeger", "http://127.0.0.1:9") as dead:
        assert not await dead.ready()
        with pytest.raises(TraceStoreError, match="did not answer"):
            await dead.trace(uuid.uuid4().hex)
        with pytest.raises(TraceStoreError):
            await dead.traces_for_call("x")


async def test_traces_survive_a_restart(jaeger: LiveJaeger, sent: Sent) -> None:
    if jaeger.state_dir is None:
        unavailable("STACK", "a Jaeger this test did not start answers on 127.0.0.1:16686 and this test kills "
                             "and restarts it: stop that stack (voxpulse stack down) or run the tests in a "
                             "network namespace of their own (scripts/netns.sh), where they start a Jaeger in a "
                             "temporary state dir")
    async with JaegerTraceStore(jaeger.url) as store:
        for call_id in sent.calls:
            assert await eventually(lambda c=call_id: store.traces_for_call(c), call_id)
    old = stack.pid("jaeger", state_dir=jaeger.state_dir)
    assert stack.kill("jaeger", state_dir=jaeger.state_dir)  # SIGKILL: no clean shutdown
    # its keeper starts it again: start() finds it running and waits until it is ready
    assert stack.start("jaeger", state_dir=jaeger.state_dir, wait_s=60) == "running"
    assert stack.pid("jaeger", state_dir=jaeger.state_dir) not in (None, old)
    assert {r.name: r.restarts for r in stack.status(state_dir=jaeger.state_dir)}["jaeger"] == 1
    async with JaegerTraceStore(jaeger.url) as store:
        assert await store.ready()
        for call_id, trace_id in sent.calls.items():
            assert await store.traces_for_call(call_id) == [trace_id]
            trace = await store.trace(trace_id)
            assert trace is not None and len(trace.spans) == 3
