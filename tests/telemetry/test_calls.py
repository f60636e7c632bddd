"""The call scope: one trace per call, call_id on every span, outcome on the root."""

from __future__ import annotations

import asyncio
import threading

import pytest
from opentelemetry import trace

import telemetry
from telemetry._state import STATE
from telemetry.semconv import Attr, CallOutcome
from telemetry.testing import CapturedTelemetry


async def test_one_trace_with_call_id_on_every_span_including_tasks_and_threads(cap: CapturedTelemetry) -> None:
    @telemetry.traced(name="child")
    async def child() -> None:
        await asyncio.sleep(0)

    def in_thread() -> None:
        with STATE.tracer.start_as_current_span("thread-span"):
            pass

    async with telemetry.call("call-7", caller="+380501234567") as call:
        await asyncio.gather(child(), asyncio.create_task(child()))
        await asyncio.to_thread(in_thread)
        with STATE.tracer.start_as_current_span("plain-otel-span"):
            pass
        assert telemetry.current_call() is call
    assert telemetry.current_call() is None

    spans = cap.spans()
    assert {s.name for s in spans} == {"call", "child", "thread-span", "plain-otel-span"}
    assert len({s.context.trace_id for s in spans}) == 1
    assert all(s.attributes[Attr.CALL_ID] == "call-7" for s in spans)
    root = cap.spans_named("call")[0]
    assert root.parent is None
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in spans if s is not root)
    assert call.trace_id == format(root.context.trace_id, "032x")


async def test_two_concurrent_calls_never_share_spans(cap: CapturedTelemetry) -> None:
    @telemetry.trace_llm(model="m")
    async def llm(delay: float) -> str:
        await asyncio.sleep(delay)
        return "ok"

    async def one(call_id: str, delay: float) -> None:
        async with telemetry.call(call_id):
            for _ in range(3):
                await llm(delay)

    await asyncio.gather(one("a", 0.003), one("b", 0.002))
    by_trace: dict[int, set[str]] = {}
    for span in cap.spans():
        by_trace.setdefault(span.context.trace_id, set()).add(str(span.attributes[Attr.CALL_ID]))
    assert sorted(by_trace.values(), key=sorted) == [{"a"}, {"b"}]


async def test_outcome_reason_scenario_cost_and_turns_are_set_on_the_root(cap: CapturedTelemetry) -> None:
    async with telemetry.call("c1") as call:
        call.set_scenario("order")
        assert call.next_turn() == 0
        assert call.next_turn() == 1
        call.add_cost(0.25)
        call.add_cost(0.5)
        call.set_outcome(CallOutcome.TRANSFERRED, reason="customer_request")
        call.set_outcome(CallOutcome.RESOLVED_BY_BOT)  # a transfer wins
    attrs = cap.spans_named("call")[0].attributes
    assert attrs[Attr.CALL_OUTCOME] == "transferred"
    assert attrs[Attr.CALL_TRANSFER_REASON] == "customer_request"
    assert attrs[Attr.CALL_SCENARIO] == "order"
    assert attrs[Attr.CALL_TURNS] == 2
    assert attrs[Attr.CALL_COST_USD] == pytest.approx(0.75)
    transfers = cap.metric_points("voice.transfers")
    assert [(dict(p.attributes), p.value) for p in transfers] == [
        ({Attr.CALL_TRANSFER_REASON: "customer_request"}, 1)
    ]


async def test_exception_marks_failed_and_cancellation_marks_abandoned(cap: CapturedTelemetry) -> None:
    with pytest.raises(RuntimeError):
        async with telemetry.call("boom"):
            raise RuntimeError("store down for +380501234567")

    in_call = asyncio.Event()

    async def hang_up() -> None:
        async with telemetry.call("gone"):
            in_call.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(hang_up())
    await in_call.wait()  # the call is open: cancelling now is a hang-up mid-call
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    failed = next(s for s in cap.spans() if s.attributes[Attr.CALL_ID] == "boom")
    assert failed.attributes[Attr.CALL_OUTCOME] == "failed"
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert "+380501234567" not in (failed.status.description or "")
    assert "+380501234567" not in str(failed.events[0].attributes)
    gone = next(s for s in cap.spans() if s.attributes[Attr.CALL_ID] == "gone")
    assert gone.attributes[Attr.CALL_OUTCOME] == "abandoned"
    assert gone.attributes[Attr.CANCELLED] is True
    assert gone.status.status_code is trace.StatusCode.UNSET


async def test_call_continues_across_a_process_boundary(cap: CapturedTelemetry) -> None:
    carrier: dict[str, str] = {}
    async with telemetry.call("xproc") as call:
        telemetry.inject(carrier)
    assert "traceparent" in carrier and "call_id=xproc" in carrier["baggage"]

    async with telemetry.call(parent=carrier) as remote:  # e.g. in the process that handles the transfer
        pass
    assert remote.call_id == "xproc"
    assert remote.trace_id == call.trace_id
    assert len({s.context.trace_id for s in cap.spans()}) == 1


async def test_decorator_form_opens_one_call_per_invocation(cap: CapturedTelemetry) -> None:
    @telemetry.call(direction="outbound")
    async def handle(*, call_id: str) -> str | None:
        current = telemetry.current_call()
        return current.call_id if current else None

    assert await handle(call_id="d1") == "d1"
    assert await handle(call_id="d2") == "d2"
    roots = cap.spans_named("call")
    assert [r.attributes[Attr.CALL_ID] for r in roots] == ["d1", "d2"]
    assert all(r.attributes[Attr.CALL_DIRECTION] == "outbound" for r in roots)


def test_sync_form_and_single_use(cap: CapturedTelemetry) -> None:
    scope = telemetry.call("sync")
    with scope:
        pass
    with pytest.raises(RuntimeError), scope:
        pass
    assert len(cap.spans_named("call")) == 1


async def test_on_end_callback_runs_after_the_root_ended(cap: CapturedTelemetry) -> None:
    seen: list[tuple[str, bool, str]] = []
    async with telemetry.call("cb") as call:
        call.on_end(lambda c: seen.append((c.call_id, c.ended, c.outcome.value if c.outcome else "")))
    assert seen == [("cb", True, "resolved_by_bot")]
    assert threading.active_count() >= 1
