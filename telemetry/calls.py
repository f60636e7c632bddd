"""The call scope: one phone call, one trace, ``call_id`` on every span inside it.

``async with telemetry.call(...)`` (or ``with``) opens the ``call`` root span, makes it current and
remembers the call in a context variable, so every span started inside -- ours, LiveKit's,
asyncpg's, Redis's, and spans in tasks spawned during the call (tasks copy the context) -- is
stamped with ``call_id`` by the span processor ``configure()`` installs.

Outcome, transfer reason, scenario, cost and turn count are set on the root before it ends, and
the call's business metrics (calls by outcome, transfers, duration, cost, active calls) are
recorded while the root is still current so their exemplars point at this trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from opentelemetry import baggage, context, trace
from opentelemetry.propagate import extract as _extract
from opentelemetry.propagate import inject as _inject
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from telemetry import metrics as _metrics
from telemetry import sampling as _sampling
from telemetry._callmap import CALLS
from telemetry._errors import internal_errors
from telemetry._state import STATE
from telemetry.semconv import Attr, CallOutcome, SpanName, Stage, error_type

__all__ = ["CallScope", "call", "current_call", "inject"]

P = ParamSpec("P")
R = TypeVar("R")

_current: ContextVar[CallScope | None] = ContextVar("voxpulse_call", default=None)
_BAGGAGE_KEY = "call_id"


def current_call() -> CallScope | None:
    """The call whose scope the caller runs in (also in tasks spawned inside it), or None."""
    return _current.get()


def _current_call_id() -> str | None:
    scope = _current.get()
    return scope.call_id if scope is not None else None


def _record_error(span: trace.Span, exc: BaseException) -> None:
    """How a span ends on an exception: cancellation (barge-in, hang-up) is ``voice.cancelled``, not
    an error; anything else is recorded, sets ERROR status and ``error.type``."""
    if isinstance(exc, asyncio.CancelledError):
        span.set_attribute(Attr.CANCELLED, True)
        return
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.set_attribute(Attr.ERROR_TYPE, error_type(exc))


def inject(carrier: dict[str, str]) -> dict[str, str]:
    """Writes W3C ``traceparent`` and ``baggage`` (with call_id) for the current call into ``carrier``."""
    ctx = context.get_current()
    call_id = _current_call_id()
    if call_id is not None:
        ctx = baggage.set_baggage(_BAGGAGE_KEY, call_id, ctx)
    _inject(carrier, context=ctx)
    return carrier


class CallScope:
    """One phone call: ``async with telemetry.call(call_id=...) as call:`` (``call`` is this class).

    ``call_id`` defaults to the one carried in ``parent`` (a carrier filled by :func:`inject` in
    another process), else a new id. ``caller`` is the caller's phone number (a PII attribute).
    Single use. Also a decorator of coroutine functions, one call per invocation:
    ``@telemetry.call(direction="inbound")``.

    ``app`` holds the application's own per-call data (JSON values, e.g. ``{"orders_created": 1}``):
    never put on spans or metrics; the call history stores it with the call (``calls.app``).
    """

    __slots__ = (
        "_attributes", "_callbacks", "_ctx_token", "_direction", "_outcome", "_parent", "_scenario",
        "_span", "_t0", "_token", "_transfer_reason", "_turns", "app", "call_id", "caller", "cost_usd",
        "ended", "room", "started_at",
    )

    def __init__(
        self,
        call_id: str | None = None,
        *,
        direction: str = "inbound",
        caller: str | None = None,
        room: str | None = None,
        scenario: str | None = None,
        parent: Mapping[str, str] | context.Context | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        self._parent = parent
        if call_id is None and parent is not None:
            ctx = parent if isinstance(parent, context.Context) else _extract(parent)
            carried = baggage.get_baggage(_BAGGAGE_KEY, ctx)
            call_id = carried if isinstance(carried, str) else None
        self.call_id: str = str(call_id) if call_id else f"call-{uuid.uuid4().hex[:16]}"
        self._direction = direction
        self.caller = caller
        self.room = room
        self._scenario = scenario
        self._attributes = dict(attributes or {})
        self._outcome: CallOutcome | None = None
        self._transfer_reason: str | None = None
        self._turns = 0
        self.cost_usd = 0.0
        self.app: dict[str, Any] = {}
        self._callbacks: list[Callable[[CallScope], None]] = []
        self._span: trace.Span = trace.INVALID_SPAN
        self._token: Token[CallScope | None] | None = None
        self._ctx_token: object | None = None
        self._t0 = 0.0
        self.started_at = 0.0
        self.ended = False

    # -- state set during the call -------------------------------------------------------------

    @property
    def span(self) -> trace.Span:
        return self._span

    @property
    def trace_id(self) -> str:
        """The call's trace id as 32 hex characters ("" when tracing is off)."""
        ctx = self._span.get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else ""

    @property
    def direction(self) -> str:
        return self._direction

    @property
    def outcome(self) -> CallOutcome | None:
        return self._outcome

    @property
    def transfer_reason(self) -> str | None:
        return self._transfer_reason

    @property
    def scenario(self) -> str | None:
        return self._scenario

    @property
    def room_sid(self) -> str | None:
        """The LiveKit room's id (``lk.room_sid``, ``RM_...``) when the call's attributes carry it: the
        key of LiveKit's own observability upload (the insights receiver's), never the room's name."""
        value = self._attributes.get(Attr.ROOM_SID)
        return value if isinstance(value, str) and value else None

    @property
    def turns(self) -> int:
        return self._turns

    def set_outcome(self, outcome: CallOutcome | str, *, reason: str | None = None) -> None:
        """Sets the outcome; a transfer set earlier wins over a later non-transfer outcome."""
        value = CallOutcome(outcome)
        if self._outcome is CallOutcome.TRANSFERRED and value is not CallOutcome.TRANSFERRED:
            return
        self._outcome = value
        if reason is not None:
            self._transfer_reason = reason

    def set_scenario(self, scenario: str) -> None:
        self._scenario = scenario

    def add_cost(
        self, usd: float, *, stage: Stage | str | None = None, provider: str | None = None,
        model: str | None = None,
    ) -> None:
        """Adds to the call's cost and to the API spend counter."""
        self.cost_usd += usd
        if usd and STATE.meter_provider is not None:
            attrs: dict[str, AttributeValue] = {}
            if stage is not None:
                attrs[Attr.STAGE] = Stage(stage).value
            if provider:
                attrs[Attr.PROVIDER] = provider
            if model:
                attrs[Attr.MODEL] = model
            _metrics._API_SPEND.add(usd, attrs)

    def next_turn(self) -> int:
        """Counts a new turn and returns its 0-based index."""
        self._turns += 1
        return self._turns - 1

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def on_end(self, callback: Callable[[CallScope], None]) -> None:
        """Runs ``callback(scope)`` after the root span ended (errors in it are contained)."""
        self._callbacks.append(callback)

    # -- enter / exit ----------------------------------------------------------------------------

    def _parent_context(self) -> context.Context | None:
        if self._parent is None or isinstance(self._parent, context.Context):
            return self._parent
        return _extract(self._parent)

    def __enter__(self) -> CallScope:
        if self._token is not None or self.ended:
            raise RuntimeError("a CallScope is single use; open a new telemetry.call()")
        self._t0 = time.perf_counter()
        self.started_at = time.time()
        self._token = _current.set(self)
        attrs: dict[str, AttributeValue] = {
            Attr.CALL_ID: self.call_id,
            Attr.CONVERSATION_ID: self.call_id,
            Attr.CALL_DIRECTION: self._direction,
        }
        if self.caller:
            attrs[Attr.CALL_CALLER] = self.caller
        if self.room:
            attrs[Attr.CALL_ROOM] = self.room
        if STATE.service_version:
            attrs[Attr.AGENT_VERSION] = STATE.service_version
        attrs.update(self._attributes)
        parent = self._parent_context()
        self._span = STATE.tracer.start_span(
            SpanName.CALL, context=parent, kind=SpanKind.SERVER, attributes=attrs,
            record_exception=False, set_status_on_exception=False,
        )
        # spans of this trace that started outside the scope (a LiveKit job's) get the call's id too
        CALLS.register(self._span.get_span_context().trace_id, self.call_id)
        _sampling._call_started(self._span)  # exemplars into this trace mark the root while it is open
        ctx = trace.set_span_in_context(self._span, parent)
        ctx = baggage.set_baggage(_BAGGAGE_KEY, self.call_id, ctx)
        self._ctx_token = context.attach(ctx)
        _metrics._CALLS_ACTIVE.add(1, {Attr.CALL_DIRECTION: self._direction})
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    async def __aenter__(self) -> CallScope:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        if self.ended:
            return
        self.ended = True
        span = self._span
        with internal_errors("call.finish"):
            if self._outcome is None:
                if exc is None:
                    self._outcome = CallOutcome.RESOLVED_BY_BOT
                elif isinstance(exc, asyncio.CancelledError):
                    self._outcome = CallOutcome.ABANDONED
                else:
                    self._outcome = CallOutcome.FAILED
            if exc is not None:
                _record_error(span, exc)
            outcome = self._outcome.value
            span.set_attributes({
                Attr.CALL_OUTCOME: outcome,
                Attr.CALL_TURNS: self._turns,
                Attr.CALL_COST_USD: round(self.cost_usd, 6),
            })
            if self._scenario:
                span.set_attribute(Attr.CALL_SCENARIO, self._scenario)
            if self._transfer_reason:
                span.set_attribute(Attr.CALL_TRANSFER_REASON, self._transfer_reason)
            if STATE.meter_provider is not None:
                # recorded while the root span is current: exemplars point at this call's trace
                _metrics._CALLS.add(1, {
                    Attr.CALL_OUTCOME: outcome,
                    Attr.CALL_SCENARIO: self._scenario or "unknown",
                    Attr.CALL_DIRECTION: self._direction,
                })
                if self._outcome is CallOutcome.TRANSFERRED:
                    _metrics._TRANSFERS.add(1, {Attr.CALL_TRANSFER_REASON: self._transfer_reason or "unspecified"})
                _metrics._CALL_DURATION.record(
                    time.perf_counter() - self._t0,
                    {Attr.CALL_OUTCOME: outcome, Attr.CALL_DIRECTION: self._direction},
                )
                _metrics._CALL_COST.record(self.cost_usd, {Attr.CALL_OUTCOME: outcome})
                _metrics._CALLS_ACTIVE.add(-1, {Attr.CALL_DIRECTION: self._direction})
        span.end()
        _sampling._call_ended(span)
        if self._ctx_token is not None:
            # exited in another context than entered: nothing to restore there
            with contextlib.suppress(ValueError):
                context.detach(self._ctx_token)  # type: ignore[arg-type]
        if self._token is not None:
            try:
                _current.reset(self._token)
            except ValueError:
                _current.set(None)
        for callback in self._callbacks:
            with internal_errors("call.on_end"):
                callback(self)

    # -- decorator form ----------------------------------------------------------------------------

    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """``@telemetry.call(direction="inbound")`` on a coroutine function: one call per invocation.

        A ``call_id`` keyword argument of the decorated function, when given, becomes the call's id.
        """
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("@telemetry.call() decorates coroutine functions")
        template = self

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            call_id = kwargs.get("call_id")
            scope = CallScope(
                str(call_id) if call_id is not None else None,
                direction=template._direction, caller=template.caller, room=template.room,
                scenario=template._scenario, attributes=template._attributes,
            )
            async with scope:
                return await fn(*args, **kwargs)

        return wrapper


call = CallScope
"""``telemetry.call(...)``: the call scope (see :class:`CallScope`); an alias, not a wrapper."""
