"""Span decorators for agent developers: ``trace_stt``, ``trace_llm``, ``trace_tts``, ``trace_tool``, ``traced``.

Each works on plain functions, coroutine functions, and (async) generator functions (streams), and
in both forms, ``@trace_llm`` and ``@trace_llm(model=..., provider=...)``; signatures are kept
(``functools.wraps`` + ``ParamSpec``), so LiveKit's ``@function_tool`` introspection and type
checkers see the original function.

* Exceptions set ERROR status and ``error.type``, and are re-raised.
* ``asyncio.CancelledError`` (barge-in, hang-up) marks the span ``voice.cancelled=true``, not an error.
* Streams: the span covers the whole stream and ends when it is exhausted, closed early or
  cancelled. Time to first chunk goes on the span and into the ``voice.stage.time_to_first_chunk``
  histogram. The span is current only while the generator's own code runs, never across a
  ``yield`` -- the consumer's code never runs inside the producer's span.
* Where LiveKit already opened the span for this stage request (``function_tool`` around a tool,
  ``llm_request`` around a custom LLM), our span is a plain child without ``voice.stage``, so each
  stage request is counted once.
* When telemetry is not configured (or ``OTEL_SDK_DISABLED``), the wrapped function is called with
  a single flag check of overhead.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from contextvars import ContextVar, Token
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import Span
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.util.types import AttributeValue

from telemetry import metrics as _metrics
from telemetry._processors import _attribute_dict
from telemetry._state import STATE
from telemetry.calls import _current_call_id, _record_error
from telemetry.semconv import Attr, GenAIOperation, SpanName, Stage

__all__ = ["trace_llm", "trace_stt", "trace_tool", "trace_tts", "traced"]

P = ParamSpec("P")
R = TypeVar("R")

_MAX_JSON = 1024
_SKIP_ARGS = frozenset({"self", "cls", "ctx", "context"})
# Framework arguments a tool receives besides the model's (LiveKit's RunContext): never recorded.
# Integrations add theirs (telemetry.livekit does at import).
_framework_argument: list[Callable[[str, object], bool]] = []


def _skip_framework_argument(predicate: Callable[[str, object], bool]) -> None:
    """Registers ``predicate(name, value)``: True for a tool argument that is the framework's, not
    the model's (it is left out of ``gen_ai.tool.call.arguments``)."""
    if predicate not in _framework_argument:
        _framework_argument.append(predicate)


def _context_var() -> ContextVar[Context] | None:
    """The ContextVar that holds OpenTelemetry's current context, or None where another runtime
    context is configured (``OTEL_PYTHON_CONTEXT``).

    ``context.attach``, ``detach`` and ``get_current`` each reach it through two Python calls; a
    stream's span is attached and detached around every step, which made those calls a visible
    part of a stream span's cost (issue 23). With the SDK's default runtime context the wrappers
    use the ContextVar's own ``set``/``reset``/``get`` (the same operations those calls end in);
    with any other they use the public API."""
    runtime = getattr(context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    return var if type(runtime) is ContextVarsRuntimeContext and isinstance(var, ContextVar) else None


_CONTEXT_VAR = _context_var()
_attach: Callable[[Context], Token[Context]] = _CONTEXT_VAR.set if _CONTEXT_VAR is not None else context.attach
_current: Callable[[], Context] = _CONTEXT_VAR.get if _CONTEXT_VAR is not None else context.get_current


def _with_span(span: Span) -> Context:
    """``trace.set_span_in_context(span)``: the current context with ``span`` as its span."""
    values = _current().copy()
    values[_SPAN_KEY] = span
    return Context(values)


def _detach(token: Token[Context]) -> None:
    """``context.detach``: a token that cannot be reset is logged, never raised."""
    if _CONTEXT_VAR is not None:
        try:
            _CONTEXT_VAR.reset(token)
            return
        except (ValueError, RuntimeError):  # another Context's token, or used twice
            pass
    context.detach(token)  # logs "Failed to detach context", as the API always did


def _to_json(value: object) -> str:
    if isinstance(value, str):  # already text (tools often return a sentence): not re-encoded
        return value if len(value) <= _MAX_JSON else value[:_MAX_JSON] + "…"
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except Exception:  # a hostile __repr__ or __iter__ must not break the tool call
        try:
            text = repr(value)
        except Exception:
            text = f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= _MAX_JSON else text[:_MAX_JSON] + "…"


class _Spec:
    """What one decorated function records; built once at decoration time."""

    __slots__ = ("attributes", "capture_io", "model", "name", "provider", "sig", "stage", "stage_value")

    def __init__(
        self, fn: Callable[..., Any], *, stage: Stage | None, name: str,
        attributes: Mapping[str, AttributeValue], capture_io: bool,
    ) -> None:
        self.stage = stage
        self.stage_value = stage.value if stage is not None else None  # read per span: no enum lookup
        self.name = name
        self.attributes: dict[str, AttributeValue] = dict(attributes)
        if stage is not None:
            self.attributes[Attr.STAGE] = stage.value
        provider = self.attributes.get(Attr.PROVIDER)
        model = self.attributes.get(Attr.MODEL)
        self.provider = provider if isinstance(provider, str) else None
        self.model = model if isinstance(model, str) else None
        self.capture_io = capture_io
        self.sig = inspect.signature(fn) if capture_io else None

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span:
        attributes = self.attributes
        call_id = _current_call_id()
        if call_id is not None:
            attributes = {**attributes, Attr.CALL_ID: call_id}
        if self.stage_value is not None and (
            _attribute_dict(_current().get(_SPAN_KEY)).get(Attr.STAGE) == self.stage_value
        ):
            attributes = {k: v for k, v in attributes.items() if k != Attr.STAGE}
        if self.capture_io and self.sig is not None:
            attributes = dict(attributes)
            attributes[Attr.TOOL_ARGUMENTS] = _to_json(self._arguments(args, kwargs))
        return STATE.tracer.start_span(
            self.name, attributes=attributes, record_exception=False, set_status_on_exception=False
        )

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        assert self.sig is not None
        try:
            bound = self.sig.bind_partial(*args, **kwargs)
        except TypeError:
            return {"args": list(args), **kwargs}
        return {
            k: v for k, v in bound.arguments.items()
            if k not in _SKIP_ARGS and not any(skip(k, v) for skip in _framework_argument)
        }

    def succeeded(self, span: Span, result: object) -> None:
        """A tool's result (only with ``capture_io``; the wrappers check it first)."""
        span.set_attributes({Attr.TOOL_SUCCESS: True, Attr.TOOL_RESULT: _to_json(result)})

    def failed(self, span: Span, exc: BaseException) -> None:
        _record_error(span, exc)
        if self.capture_io:
            span.set_attribute(Attr.TOOL_SUCCESS, False)

    def first_chunk(self, seconds: float) -> None:
        """The time-to-first-chunk histogram, at once (this span, current now, is its exemplar); the
        span's attributes come with the stream's end (:meth:`stream_end`), in one write."""
        if self.stage is not None and STATE.meter_provider is not None:  # metrics off: not even the call
            _metrics.record_time_to_first_chunk(self.stage, seconds, provider=self.provider, model=self.model)

    def stream_end(self, span: Span, chunks: int, ttfc: float | None) -> None:
        if ttfc is None:
            span.set_attribute(Attr.STREAM_CHUNKS, chunks)
        elif self.stage is Stage.LLM:
            span.set_attributes({Attr.STREAM_TTFC: ttfc, Attr.TIME_TO_FIRST_CHUNK: ttfc, Attr.STREAM_CHUNKS: chunks})
        else:
            span.set_attributes({Attr.STREAM_TTFC: ttfc, Attr.STREAM_CHUNKS: chunks})


def _wrap(fn: Callable[..., Any], spec_factory: Callable[[Callable[..., Any]], _Spec]) -> Callable[..., Any]:
    spec = spec_factory(fn)

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
            if not STATE.enabled:
                async for item in fn(*args, **kwargs):
                    yield item
                return
            span = spec.start(args, kwargs)
            ctx = _with_span(span)
            agen = fn(*args, **kwargs)
            t0 = time.perf_counter()
            ttfc: float | None = None
            chunks = 0
            # The span is current while the stream's own code runs, each step of this `async for`,
            # and never across our yield: attached before a step, detached when it gives an item.
            # Both happen within one step of this generator, so in one Context.
            token: Token[Context] | None = _attach(ctx)
            try:
                async for item in agen:
                    if not chunks:
                        ttfc = time.perf_counter() - t0
                        spec.first_chunk(ttfc)
                    if token is not None:
                        _detach(token)
                        token = None
                    chunks += 1
                    yield item
                    token = _attach(ctx)
            except GeneratorExit:  # the consumer closed the stream early (at our yield: detached)
                if token is None:
                    token = _attach(ctx)
                await agen.aclose()
                raise
            except BaseException as exc:
                if token is not None:
                    _detach(token)
                    token = None
                spec.failed(span, exc)
                if isinstance(exc, asyncio.CancelledError):
                    await agen.aclose()
                raise
            finally:
                if token is not None:
                    _detach(token)
                spec.stream_end(span, chunks, ttfc)
                span.end()

        return agen_wrapper

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, None, None]:
            if not STATE.enabled:
                yield from fn(*args, **kwargs)
                return
            span = spec.start(args, kwargs)
            ctx = trace.set_span_in_context(span)
            gen = fn(*args, **kwargs)
            t0 = time.perf_counter()
            ttfc: float | None = None
            chunks = 0
            try:
                while True:
                    token = context.attach(ctx)
                    try:
                        item = next(gen)
                        if chunks == 0:
                            ttfc = time.perf_counter() - t0
                            spec.first_chunk(ttfc)
                    except StopIteration:
                        break
                    finally:
                        context.detach(token)
                    chunks += 1
                    yield item
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as exc:
                spec.failed(span, exc)
                raise
            finally:
                spec.stream_end(span, chunks, ttfc)
                span.end()

        return gen_wrapper

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if not STATE.enabled:
                return await fn(*args, **kwargs)
            span = spec.start(args, kwargs)
            token = context.attach(trace.set_span_in_context(span))
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                spec.failed(span, exc)
                raise
            else:
                if spec.capture_io:
                    spec.succeeded(span, result)
                return result
            finally:
                context.detach(token)
                span.end()

        return async_wrapper

    @functools.wraps(fn)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        if not STATE.enabled:
            return fn(*args, **kwargs)
        span = spec.start(args, kwargs)
        token = context.attach(trace.set_span_in_context(span))
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            spec.failed(span, exc)
            raise
        else:
            if spec.capture_io:
                spec.succeeded(span, result)
            return result
        finally:
            context.detach(token)
            span.end()

    return sync_wrapper


def _provider_attrs(provider: str | None, model: str | None, **extra: AttributeValue | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if provider:
        attrs[Attr.PROVIDER] = provider
    if model:
        attrs[Attr.MODEL] = model
    attrs.update({k: v for k, v in extra.items() if v is not None})
    return attrs


# -- public decorators ------------------------------------------------------------------------------
# Each has two forms; the overloads keep the wrapped signature for type checkers.


@overload
def trace_stt(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def trace_stt(
    *, provider: str | None = None, model: str | None = None, name: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def trace_stt(
    fn: Callable[..., Any] | None = None, /, *, provider: str | None = None, model: str | None = None,
    name: str | None = None,
) -> Any:
    """Traces a speech-to-text request (span ``speech_to_text``, ``voice.stage=stt``)."""
    attrs = _provider_attrs(provider, model)

    def factory(f: Callable[..., Any]) -> _Spec:
        return _Spec(f, stage=Stage.STT, name=name or SpanName.STT, attributes=attrs, capture_io=False)

    return _decorate(fn, factory)


@overload
def trace_llm(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def trace_llm(
    *, provider: str | None = None, model: str | None = None, name: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def trace_llm(
    fn: Callable[..., Any] | None = None, /, *, provider: str | None = None, model: str | None = None,
    name: str | None = None,
) -> Any:
    """Traces an LLM request (span ``chat {model}``, ``voice.stage=llm``, GenAI attributes)."""
    attrs = _provider_attrs(provider, model)
    attrs[Attr.OPERATION] = GenAIOperation.CHAT.value

    def factory(f: Callable[..., Any]) -> _Spec:
        return _Spec(f, stage=Stage.LLM, name=name or SpanName.llm(model), attributes=attrs, capture_io=False)

    return _decorate(fn, factory)


@overload
def trace_tts(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def trace_tts(
    *, provider: str | None = None, model: str | None = None, voice: str | None = None,
    name: str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def trace_tts(
    fn: Callable[..., Any] | None = None, /, *, provider: str | None = None, model: str | None = None,
    voice: str | None = None, name: str | None = None,
) -> Any:
    """Traces a text-to-speech request (span ``text_to_speech``, ``voice.stage=tts``)."""
    attrs = _provider_attrs(provider, model, **{Attr.TTS_VOICE: voice})

    def factory(f: Callable[..., Any]) -> _Spec:
        return _Spec(f, stage=Stage.TTS, name=name or SpanName.TTS, attributes=attrs, capture_io=False)

    return _decorate(fn, factory)


@overload
def trace_tool(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def trace_tool(*, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def trace_tool(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Traces a tool call (span ``execute_tool {name}``, ``voice.stage=tool``).

    Arguments (without ``self``/``ctx``) and the result are recorded as JSON, truncated, under
    the GenAI content keys, which the exporter redacts or drops per the content mode.
    """

    def factory(f: Callable[..., Any]) -> _Spec:
        tool = name or f.__name__
        attrs: dict[str, AttributeValue] = {Attr.OPERATION: GenAIOperation.EXECUTE_TOOL.value, Attr.TOOL_NAME: tool}
        return _Spec(f, stage=Stage.TOOL, name=SpanName.tool(tool), attributes=attrs, capture_io=True)

    return _decorate(fn, factory)


@overload
def traced(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def traced(
    *, name: str | None = None, stage: Stage | str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def traced(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None, stage: Stage | str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Any:
    """Traces any function (span named ``name`` or the function's qualified name)."""
    stage_value = Stage(stage) if stage is not None else None

    def factory(f: Callable[..., Any]) -> _Spec:
        return _Spec(
            f, stage=stage_value, name=name or f.__qualname__, attributes=attributes or {}, capture_io=False
        )

    return _decorate(fn, factory)


def _decorate(fn: Callable[..., Any] | None, factory: Callable[[Callable[..., Any]], _Spec]) -> Any:
    if fn is not None:
        return _wrap(fn, factory)
    return lambda f: _wrap(f, factory)
