"""The span pipeline's fast reads: spans the redactor already knows to leave alone skip it, and
nothing else changes -- every value that needs redacting, dropping or completing still gets it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from telemetry._callmap import CALLS
from telemetry._processors import SafeExporter, _attribute_dict
from telemetry.redaction import Redactor
from telemetry.semconv import Attr

PHONE = "+380501234567"
MASKED = "+380***567"


class Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


@pytest.fixture
def ended() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    """Real SDK spans (their attributes in the SDK's own container), ended and not yet exported."""
    CALLS.clear()
    raw = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(raw))
    try:
        yield provider.get_tracer("t"), raw
    finally:
        provider.shutdown()
        CALLS.clear()


@pytest.fixture
def redactor_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the redactor's walks over span attributes."""
    calls: list[int] = []
    walk = Redactor.attributes

    def counting(self: Redactor, attributes: Mapping[str, AttributeValue] | None) -> dict[str, AttributeValue]:
        calls.append(1)
        return walk(self, attributes)

    monkeypatch.setattr(Redactor, "attributes", counting)
    return calls


def _span(tracer: trace.Tracer, raw: InMemorySpanExporter, attributes: dict[str, AttributeValue],
          *, event: dict[str, AttributeValue] | None = None, status: str | None = None) -> ReadableSpan:
    with tracer.start_as_current_span("s", attributes=attributes) as span:
        if event is not None:
            span.add_event("e", event)
        if status is not None:
            span.set_status(Status(StatusCode.ERROR, status))
    return raw.get_finished_spans()[-1]


LLM = {Attr.PROVIDER: "openai", Attr.MODEL: "gpt-4o-mini", Attr.CALL_ID: "call-1", Attr.STREAM_CHUNKS: 3}


def test_a_known_clean_span_skips_the_redactor_and_leaves_as_it_is(
    ended: tuple[trace.Tracer, InMemorySpanExporter], redactor_calls: list[int],
) -> None:
    tracer, raw = ended
    out = Collect()
    safe = SafeExporter(out, Redactor())
    first, second = _span(tracer, raw, LLM), _span(tracer, raw, {**LLM, Attr.STREAM_CHUNKS: 7})
    safe.export([first])
    safe.export([second])  # the same strings, another number under a known key
    assert out.spans[0] is first and out.spans[1] is second
    assert len(redactor_calls) == 1  # only the first span was walked


def test_a_new_value_under_a_known_key_is_still_redacted(
    ended: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, raw = ended
    out = Collect()
    safe = SafeExporter(out, Redactor())
    safe.export([_span(tracer, raw, LLM)])
    safe.export([_span(tracer, raw, {**LLM, Attr.PROVIDER: f"call {PHONE}"})])
    assert out.spans[1].attributes[Attr.PROVIDER] == f"call {MASKED}"
    safe.export([_span(tracer, raw, {**LLM, "lk.pii.participant_identity": 5})])  # others' PII key: dropped
    assert "lk.pii.participant_identity" not in out.spans[2].attributes
    safe.export([_span(tracer, raw, {**LLM, Attr.STREAM_CHUNKS: (1, 2)})])  # a sequence: always walked
    assert out.spans[3].attributes[Attr.STREAM_CHUNKS] == (1, 2)


def test_events_and_status_of_a_known_span_are_still_redacted(
    ended: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, raw = ended
    out = Collect()
    safe = SafeExporter(out, Redactor())
    safe.export([_span(tracer, raw, LLM)])
    safe.export([_span(tracer, raw, LLM, event={"text": PHONE}), _span(tracer, raw, LLM, status=PHONE)])
    event_span, status_span = out.spans[1:]
    assert event_span.events[0].attributes == {"text": MASKED}
    assert status_span.status.description == MASKED


def test_a_known_span_is_still_completed_from_the_call_map(
    ended: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, raw = ended
    out = Collect()
    safe = SafeExporter(out, Redactor())
    no_call = {Attr.PROVIDER: "openai"}
    safe.export([_span(tracer, raw, no_call)])  # learnt: nothing to change
    late = _span(tracer, raw, no_call)
    CALLS.register(late.context.trace_id, "SCL_late")  # the trace's call became known meanwhile
    safe.export([late])
    assert out.spans[1].attributes[Attr.CALL_ID] == "SCL_late"
    room = {Attr.CALL_ID: "SCL_x", Attr.CONVERSATION_ID: "RM_room"}
    safe.export([_span(tracer, raw, room), _span(tracer, raw, room)])
    assert [s.attributes[Attr.CONVERSATION_ID] for s in out.spans[2:]] == ["SCL_x", "SCL_x"]


def test_what_was_learnt_is_forgotten_when_the_content_mode_changes(
    ended: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, raw = ended
    out = Collect()
    redactor = Redactor(content="full")
    safe = SafeExporter(out, redactor)
    transcript = {Attr.STT_TRANSCRIPT: "hello there"}
    safe.export([_span(tracer, raw, transcript), _span(tracer, raw, transcript)])
    assert [s.attributes.get(Attr.STT_TRANSCRIPT) for s in out.spans] == ["hello there"] * 2
    redactor.content = "off"
    safe.export([_span(tracer, raw, transcript)])
    assert Attr.STT_TRANSCRIPT not in out.spans[2].attributes


def test_attribute_reads_of_every_kind_of_span(ended: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    tracer, raw = ended
    sdk = _span(tracer, raw, LLM)
    assert dict(_attribute_dict(sdk)) == dict(sdk.attributes or {})
    assert dict(_attribute_dict(ReadableSpan("r", attributes={"a": 1}))) == {"a": 1}
    assert dict(_attribute_dict(ReadableSpan("r"))) == {}
    assert dict(_attribute_dict(trace.INVALID_SPAN)) == {}  # no attributes at all
    with tracer.start_as_current_span("live") as live:
        live.set_attribute("later", "x")
        assert _attribute_dict(live)["later"] == "x"
