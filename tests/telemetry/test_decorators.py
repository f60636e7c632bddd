"""Decorators on functions, coroutines and streams: timing, errors, cancellation, context hygiene."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry import trace

import telemetry
from telemetry._state import STATE
from telemetry.semconv import Attr
from telemetry.testing import CapturedTelemetry


@telemetry.trace_stt(provider="deepgram", model="nova-3")
def transcribe(audio: bytes) -> str:
    return f"{len(audio)} bytes"


@telemetry.trace_tts
async def synthesize(text: str) -> bytes:
    await asyncio.sleep(0)
    return text.encode()


@telemetry.trace_llm(provider="openai", model="gpt-4o-mini")
async def stream_tokens(delays: list[float]) -> AsyncIterator[str]:
    for i, delay in enumerate(delays):
        await asyncio.sleep(delay)
        yield f"tok{i}"


@telemetry.trace_tts(provider="cartesia", voice="uk")
def sync_chunks(n: int) -> Iterator[bytes]:
    yield from (b"x" for _ in range(n))


async def test_sync_and_async_functions(cap: CapturedTelemetry) -> None:
    async with telemetry.call("c"):
        assert transcribe(b"abc") == "3 bytes"
        assert await synthesize("hi") == b"hi"
        assert list(sync_chunks(3)) == [b"x"] * 3
    stt = cap.spans_named("speech_to_text")[0]
    assert stt.attributes[Attr.STAGE] == "stt"
    assert stt.attributes[Attr.PROVIDER] == "deepgram"
    assert cap.spans_named("text_to_speech")[0].attributes[Attr.STAGE] == "tts"
    chunks = cap.spans_named("text_to_speech")[1]
    assert chunks.attributes[Attr.STREAM_CHUNKS] == 3
    assert chunks.attributes[Attr.TTS_VOICE] == "uk"


async def test_stream_time_to_first_chunk_matches_the_true_delay(cap: CapturedTelemetry) -> None:
    got = []
    async with telemetry.call("c"):
        started = time.perf_counter()
        async for tok in stream_tokens([0.12, 0.01, 0.01]):
            if not got:  # what the consumer saw: the first chunk came this long after it asked
                seen = time.perf_counter() - started
            got.append(tok)
    assert got == ["tok0", "tok1", "tok2"]
    span = cap.spans_named("chat gpt-4o-mini")[0]
    ttfc = float(span.attributes[Attr.STREAM_TTFC])
    # between the generator's own delay and what the consumer measured around it, however loaded
    # the machine is (a sleep never ends early; it may end late, and then both clocks see it)
    assert 0.12 - 1e-6 <= ttfc <= seen
    assert span.attributes[Attr.TIME_TO_FIRST_CHUNK] == ttfc
    assert span.attributes[Attr.STREAM_CHUNKS] == 3
    duration = (span.end_time - span.start_time) / 1e9
    assert duration >= 0.14
    (point,) = cap.metric_points("voice.stage.time_to_first_chunk")
    assert dict(point.attributes) == {Attr.STAGE: "llm", Attr.PROVIDER: "openai", Attr.MODEL: "gpt-4o-mini"}
    assert point.exemplars and point.exemplars[0].span_id == span.context.span_id


async def test_stream_context_is_not_left_attached_across_yield(
    cap: CapturedTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    seen_in_consumer: list[str] = []
    async with telemetry.call("c"):
        async for _ in stream_tokens([0, 0]):
            current = trace.get_current_span()
            seen_in_consumer.append(getattr(current, "name", "?"))
    assert seen_in_consumer == ["call", "call"]
    assert "Failed to detach context" not in caplog.text


async def test_stream_closed_early_ends_the_span(cap: CapturedTelemetry, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    async with telemetry.call("c"):
        stream = stream_tokens([0, 0, 0, 0])
        async for tok in stream:
            if tok == "tok1":
                break
        await stream.aclose()  # type: ignore[attr-defined]
        assert trace.get_current_span().name == "call"  # type: ignore[attr-defined]
    span = cap.spans_named("chat gpt-4o-mini")[0]
    assert span.end_time is not None
    assert span.attributes[Attr.STREAM_CHUNKS] == 2
    assert span.status.status_code is trace.StatusCode.UNSET
    assert "Failed to detach context" not in caplog.text


async def test_cancelled_stream_is_marked_cancelled_not_error(
    cap: CapturedTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in stream_tokens([0, 10]):
            first.set()

    async with telemetry.call("c"):
        task = asyncio.create_task(consume())
        await first.wait()  # the first chunk arrived; the stream now waits for the second
        task.cancel()  # barge-in
        with pytest.raises(asyncio.CancelledError):
            await task
    span = cap.spans_named("chat gpt-4o-mini")[0]
    assert span.attributes[Attr.CANCELLED] is True
    assert span.status.status_code is trace.StatusCode.UNSET
    assert span.attributes[Attr.STREAM_CHUNKS] == 1
    assert "Failed to detach context" not in caplog.text


async def test_a_failing_stream_keeps_what_it_measured(cap: CapturedTelemetry) -> None:
    """The stream's attributes are written once, at its end: a stream that fails after its first chunk
    still carries its time to first chunk, one that fails before has none."""

    @telemetry.trace_llm(provider="openai", model="gpt-4o-mini")
    async def fails_after(n: int) -> AsyncIterator[str]:
        for i in range(n):
            yield f"tok{i}"
        raise ConnectionError("stream reset")

    @telemetry.trace_tts(provider="cartesia")
    def fails_at_once() -> Iterator[bytes]:
        raise ConnectionError("refused")
        yield b""  # a generator

    async with telemetry.call("c"):
        with pytest.raises(ConnectionError):
            async for _ in fails_after(2):
                pass
        with pytest.raises(ConnectionError):
            list(fails_at_once())
    after = cap.spans_named("chat gpt-4o-mini")[0]
    assert after.attributes[Attr.STREAM_CHUNKS] == 2
    assert after.attributes[Attr.STREAM_TTFC] == after.attributes[Attr.TIME_TO_FIRST_CHUNK] >= 0
    assert after.attributes[Attr.ERROR_TYPE] == "ConnectionError"
    at_once = cap.spans_named("text_to_speech")[0]
    assert at_once.attributes[Attr.STREAM_CHUNKS] == 0
    assert Attr.STREAM_TTFC not in at_once.attributes
    assert Attr.TIME_TO_FIRST_CHUNK not in at_once.attributes
    assert at_once.status.status_code is trace.StatusCode.ERROR
    (point,) = cap.metric_points("voice.stage.time_to_first_chunk")  # the stream that had a first chunk
    assert point.attributes[Attr.STAGE] == "llm"


async def test_exceptions_set_error_and_are_reraised(cap: CapturedTelemetry) -> None:
    @telemetry.trace_tool
    async def create_order(size: str, phone: str) -> str:
        raise ValueError(f"no stock for {phone}")

    with pytest.raises(ValueError, match="no stock"):
        async with telemetry.call("c"):
            await create_order("205/55 R16", phone="+380671112233")
    span = cap.spans_named("execute_tool create_order")[0]
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.attributes[Attr.ERROR_TYPE] == "ValueError"
    assert span.attributes[Attr.TOOL_SUCCESS] is False
    assert "+380671112233" not in str(span.attributes)
    assert "+380671112233" not in str([e.attributes for e in span.events])
    assert "+380***233" in str(span.attributes[Attr.TOOL_ARGUMENTS])


async def test_tool_stage_is_counted_once_under_livekits_function_tool_span(cap: CapturedTelemetry) -> None:
    @telemetry.trace_tool
    async def check_order_status(order_id: str) -> str:
        return "shipped"

    async with telemetry.call("c"):
        with STATE.tracer.start_as_current_span("function_tool"):  # what LiveKit opens around a tool
            await check_order_status("A-1")
    lk = cap.spans_named("function_tool")[0]
    ours = cap.spans_named("execute_tool check_order_status")[0]
    assert lk.attributes[Attr.STAGE] == "tool"
    assert Attr.STAGE not in ours.attributes
    assert ours.attributes[Attr.TOOL_NAME] == "check_order_status"
    assert ours.attributes[Attr.TOOL_SUCCESS] is True
    assert ours.attributes[Attr.TOOL_RESULT] == "shipped"


def test_signatures_and_forms_survive() -> None:
    async def f(size: str, season: str = "winter") -> list[str]:
        return [size, season]

    for decorated in (telemetry.trace_tool(f), telemetry.trace_tool(name="x")(f), telemetry.traced(f)):
        assert inspect.signature(decorated) == inspect.signature(f)
        assert decorated.__name__ == "f"
        assert inspect.iscoroutinefunction(decorated)
    assert inspect.isasyncgenfunction(stream_tokens)


async def test_disabled_path_calls_through() -> None:
    assert not STATE.enabled
    assert await synthesize("x") == b"x"
    assert [t async for t in stream_tokens([0])] == ["tok0"]


async def test_the_streams_own_code_runs_inside_its_span_and_its_cleanup_too(cap: CapturedTelemetry) -> None:
    """Before its first chunk, between chunks, after its last one and in its cleanup on an early close,
    the stream's code sees its span as current (a span it opens is a child of it); the consumer never."""

    @telemetry.trace_llm(provider="openai", model="gpt-4o-mini")
    async def nested(n: int) -> AsyncIterator[int]:
        try:
            for i in range(n):
                with STATE.tracer.start_as_current_span(f"step{i}"):
                    await asyncio.sleep(0)
                yield i
            with STATE.tracer.start_as_current_span("after_last"):
                pass
        finally:
            with STATE.tracer.start_as_current_span("cleanup"):
                pass

    async with telemetry.call("c"):
        assert [i async for i in nested(2)] == [0, 1]
        stream = nested(3)
        async for _ in stream:
            assert trace.get_current_span().name == "call"  # type: ignore[attr-defined]
            break
        await stream.aclose()  # type: ignore[attr-defined]
        assert trace.get_current_span().name == "call"  # type: ignore[attr-defined]
    whole, closed = cap.spans_named("chat gpt-4o-mini")
    assert [s.parent.span_id for s in cap.spans_named("step0")] == [whole.context.span_id, closed.context.span_id]
    assert cap.spans_named("step1")[0].parent.span_id == whole.context.span_id
    assert cap.spans_named("after_last")[0].parent.span_id == whole.context.span_id
    assert [s.parent.span_id for s in cap.spans_named("cleanup")] == [whole.context.span_id, closed.context.span_id]
    assert closed.attributes[Attr.STREAM_CHUNKS] == 1


def test_the_context_fast_path_is_the_sdks_own_context_var(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The wrappers set the ContextVar behind opentelemetry.context only where it is the runtime context;
    under another one they use the public API, and a token that cannot be reset is logged, not raised."""
    from opentelemetry import context

    from telemetry import decorators

    assert decorators._CONTEXT_VAR is not None  # the default runtime context: the fast path is on
    monkeypatch.setattr(context, "_RUNTIME_CONTEXT", object())
    assert decorators._context_var() is None
    monkeypatch.undo()
    token = decorators._attach(context.Context({"k": 1}))
    decorators._detach(token)
    assert context.get_current().get("k") is None
    decorators._detach(token)  # used twice: logged as the API's detach logs it, never raised
    assert "Failed to detach context" in caplog.text
