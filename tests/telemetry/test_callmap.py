"""Spans of a call's trace that start outside the call scope (a LiveKit job's) still carry its
call_id when they are exported, and are held back until the call's id is known."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import telemetry
from telemetry._callmap import CALLS
from telemetry._processors import QueueingSpanProcessor, SafeExporter
from telemetry._setup import install
from telemetry.redaction import Redactor
from telemetry.semconv import LIVEKIT_JOB_ROOT, Attr
from telemetry.testing import capture_telemetry


class Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


@pytest.fixture
def pipeline() -> Iterator[tuple[TracerProvider, Collect, QueueingSpanProcessor]]:
    """The production span pipeline (QueueingSpanProcessor -> SafeExporter) into a list."""
    CALLS.clear()
    out = Collect()
    processor = QueueingSpanProcessor(SafeExporter(out, Redactor()), schedule_delay_ms=10_000)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    install(provider, None, redactor=Redactor(), service_version=None, livekit=False, libraries=False)
    try:
        yield provider, out, processor
    finally:
        provider.shutdown()
        CALLS.clear()


def test_job_spans_wait_for_the_call_and_get_its_id(
    pipeline: tuple[TracerProvider, Collect, QueueingSpanProcessor],
) -> None:
    provider, out, processor = pipeline
    tracer = provider.get_tracer("livekit-agents")
    root = tracer.start_span(LIVEKIT_JOB_ROOT)
    CALLS.expect(root.get_span_context().trace_id, time.time())
    with tracer.start_as_current_span("room_connect", context=_ctx(root),
                                      attributes={"lk.pii.room_name": "call-_+380501234567_AbCd"}):
        pass
    processor.force_flush()  # releases what was held: not yet known, so ...
    held_then = [s.name for s in out.spans]
    assert held_then == ["room_connect"]  # ... a flush never waits (exported without the id)
    assert Attr.CALL_ID not in (out.spans[0].attributes or {})
    out.spans.clear()

    root2 = tracer.start_span(LIVEKIT_JOB_ROOT)
    CALLS.expect(root2.get_span_context().trace_id, time.time())
    with tracer.start_as_current_span("wait_for_participant", context=_ctx(root2),
                                      attributes={Attr.CONVERSATION_ID: "RM_room"}):
        pass
    assert processor._held  # held: the trace's call is not known yet
    with telemetry.call("SCL_abc", parent=_ctx(root2)):
        pass
    root2.end()
    processor.force_flush()
    by_name = {s.name: s for s in out.spans}
    assert set(by_name) == {"wait_for_participant", "call", LIVEKIT_JOB_ROOT}
    for span in out.spans:
        assert span.attributes[Attr.CALL_ID] == "SCL_abc", span.name
    # one conversation id per trace: LiveKit's room id becomes the call's id
    assert by_name["wait_for_participant"].attributes[Attr.CONVERSATION_ID] == "SCL_abc"
    assert by_name["call"].attributes[Attr.CONVERSATION_ID] == "SCL_abc"
    root.end()


def test_redaction_survives_a_dropped_key_and_an_added_one(
    pipeline: tuple[TracerProvider, Collect, QueueingSpanProcessor],
) -> None:
    """A LiveKit PII key dropped and call_id added leave the attribute count unchanged: the span
    must still be rebuilt (this once raised KeyError and lost the whole batch)."""
    provider, out, processor = pipeline
    tracer = provider.get_tracer("livekit-agents")
    root = tracer.start_span(LIVEKIT_JOB_ROOT, attributes={"lk.pii.participant_identity": "caller-1"})
    CALLS.register(root.get_span_context().trace_id, "RM_x")
    root.end()
    processor.force_flush()
    (span,) = out.spans
    assert dict(span.attributes) == {Attr.CALL_ID: "RM_x"}


def test_a_capture_holds_job_spans_as_production_does() -> None:
    """telemetry.testing goes through configure(): a capture's spans pass the production queue,
    which holds a job's spans until the call's id is known, and releases the ones whose call never
    came when the pipeline shuts down (exported at once, they would lack call_id)."""
    with capture_telemetry(livekit=False, libraries=False) as cap:
        tracer = cap.tracer_provider.get_tracer("livekit-agents")
        root = tracer.start_span(LIVEKIT_JOB_ROOT)
        CALLS.expect(root.get_span_context().trace_id, time.time())
        with tracer.start_as_current_span("wait_for_participant", context=_ctx(root)):
            pass
        lonely = tracer.start_span(LIVEKIT_JOB_ROOT)  # a job whose caller never joins
        CALLS.expect(lonely.get_span_context().trace_id, time.time())
        with tracer.start_as_current_span("room_connect", context=_ctx(lonely)):
            pass
        assert cap.spans() == []  # held: neither trace's call is known yet
        with telemetry.call("SCL_cap", parent=_ctx(root)):
            pass
        root.end()
        spans = {s.name: s for s in cap.spans()}
        assert set(spans) == {"wait_for_participant", "call", LIVEKIT_JOB_ROOT}
        for span in spans.values():
            assert span.attributes[Attr.CALL_ID] == "SCL_cap", span.name
    # the block's end shuts the pipeline down: what still waited is exported (without a call_id)
    (late,) = [s for s in cap.spans() if s.name == "room_connect"]
    assert Attr.CALL_ID not in (late.attributes or {})
    lonely.end()


def _ctx(span: object) -> object:
    from opentelemetry import trace

    return trace.set_span_in_context(span)  # type: ignore[arg-type]
