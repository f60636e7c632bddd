"""The scale-out trace store option: `voxpulse stack up --trace-store cassandra` starts a REAL Apache
Cassandra node (Maven Central's jars, scripts/build-backends.sh --only=cassandra) and Jaeger on it
(jaeger/jaeger.yaml + jaeger/jaeger-cassandra.yaml), and the console's trace store reads calls back
from it exactly as from Badger."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import set_span_in_context

from telemetry.semconv import Attr, SpanName
from tests.support import unavailable
from voxpulse_console import stack
from voxpulse_console.stack import StackError
from voxpulse_console.tracestore import JaegerTraceStore

pytestmark = pytest.mark.stack

S = 1_000_000_000
OTLP = "http://127.0.0.1:4418/v1/traces"


@pytest.fixture(scope="module")
def on_cassandra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    missing = [t for t in ("jaeger", "cassandra") if stack.binaries().get(t) is None]
    if missing:
        unavailable("STACK", f"missing {missing}: run scripts/build-backends.sh --only=jaeger --only=cassandra")
    ports = (*stack.COMPONENTS["jaeger"].ports, stack.CASSANDRA.ports[0])
    if any(stack.port_busy(p) for p in ports):
        unavailable("STACK", f"ports {ports} are taken (a stack of yours?): stop it (voxpulse stack down) or run "
                             "the tests in a network namespace of their own (scripts/netns.sh)")
    state = tmp_path_factory.mktemp("on-cassandra")
    try:
        started = stack.up(["cassandra", "jaeger"], state_dir=state, trace_store="cassandra", wait_s=180)
        assert started == {"cassandra": "started", "jaeger": "started"}
        yield state
    finally:
        stack.down(state_dir=state)


def _send_calls(n: int) -> tuple[str, dict[str, tuple[str, int]]]:
    """``n`` calls of a new service over OTLP: a root ``call`` span (call i lasts i + 1 s) with a turn
    under it. Returns the service and {call_id: (trace id, duration ms)}."""
    tag = uuid.uuid4().hex[:8]
    service = f"vp-cass-{tag}"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=OTLP)))
    tracer = provider.get_tracer("voxpulse.test")
    t0 = time.time_ns() - 60 * S
    calls: dict[str, tuple[str, int]] = {}
    for i in range(n):
        call_id = f"cass-{tag}-{i}"
        start = t0 + i * S
        root = tracer.start_span(SpanName.CALL, start_time=start, attributes={Attr.CALL_ID: call_id})
        tracer.start_span(SpanName.TURN, context=set_span_in_context(root), start_time=start + S // 10,
                          attributes={Attr.CALL_ID: call_id, Attr.TURN_TTFW: 0.64}).end(end_time=start + S // 2)
        root.end(end_time=start + (i + 1) * S)
        calls[call_id] = (format(root.get_span_context().trace_id, "032x"), (i + 1) * 1000)
    provider.shutdown()
    return service, calls


async def _found(store: JaegerTraceStore, call_id: str, deadline_s: float = 30.0) -> list[str]:
    end = time.monotonic() + deadline_s
    while True:
        ids = await store.traces_for_call(call_id)
        if ids or time.monotonic() > end:
            return ids
        await asyncio.sleep(0.2)  # the exporter's queue writes to Cassandra a moment after the acknowledgement


async def test_calls_stored_in_cassandra_read_back_by_call_id_and_duration(on_cassandra: Path) -> None:
    assert stack.trace_store(state_dir=on_cassandra) == "cassandra"
    assert [r.name for r in stack.status(state_dir=on_cassandra) if r.ready] == ["cassandra", "jaeger"]
    service, calls = _send_calls(4)
    async with JaegerTraceStore(services=[service]) as store:
        for call_id, (trace_id, _ms) in calls.items():
            assert await _found(store, call_id) == [trace_id], call_id
        trace_id = calls[next(iter(calls))][0]
        trace = await store.trace(trace_id)
        assert trace is not None and [s.name for s in trace.spans] == [SpanName.CALL, SpanName.TURN]
        assert trace.spans[1].attributes[Attr.TURN_TTFW] == 0.64
        start = (time.time_ns() - 70 * S) / S
        slow = await store.calls(start, start + 30, min_duration_ms=2500, limit=5)
        assert [c.duration_ms for c in slow] == [4000, 3000]
        assert {c.call_id for c in slow} == {c for c, (_t, ms) in calls.items() if ms >= 2500}


async def test_the_spans_live_in_cassandra_not_on_jaegers_disk(on_cassandra: Path) -> None:
    """Jaeger restarted without its own folder (Badger's, which the layered config still opens) finds
    every call again: they are in Cassandra."""
    service, calls = _send_calls(2)
    async with JaegerTraceStore(services=[service]) as store:
        for call_id in calls:
            assert await _found(store, call_id), call_id
    stack.stop("jaeger", state_dir=on_cassandra)
    shutil.rmtree(on_cassandra / "jaeger", ignore_errors=True)
    assert stack.up(["jaeger"], state_dir=on_cassandra, wait_s=60) == {"jaeger": "started"}
    async with JaegerTraceStore(services=[service]) as store:
        for call_id, (trace_id, _ms) in calls.items():
            assert await _found(store, call_id) == [trace_id], call_id


def test_the_trace_store_changes_only_when_the_stack_is_down(on_cassandra: Path, tmp_path: Path) -> None:
    with pytest.raises(StackError, match="keeps its traces in cassandra"):
        stack.up(["jaeger"], state_dir=on_cassandra, trace_store="badger")
    with pytest.raises(StackError, match="one of badger, cassandra"):
        stack.up([], state_dir=tmp_path, trace_store="elasticsearch")
    stack.up([], state_dir=tmp_path, trace_store="cassandra")  # chosen, nothing started
    assert stack.trace_store(state_dir=tmp_path) == "cassandra"
    assert list(stack.components(state_dir=tmp_path))[:2] == ["cassandra", "jaeger"]
    stack.down(state_dir=tmp_path)  # the whole stack down forgets it: Badger again
    assert stack.trace_store(state_dir=tmp_path) == "badger" and "cassandra" not in stack.components(state_dir=tmp_path)
