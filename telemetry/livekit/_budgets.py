"""Latency budgets acted on during the call (livekit/agents#6982: budgets, a fallback when a turn
runs over).

A budget is a limit on the caller's time to first word (``turn_s``; by default the slow-turn
objective, ``VOXPULSE_TTFW_OBJECTIVE_S``, 3 s: the seed's objective) and, optionally, on parts of the turn
(``segments``, e.g. ``{TurnSegment.LLM_TTFT: 1.0}``). The turn's budget is watched *live*: a timer
armed when the caller stops speaking fires the moment the turn runs over while the caller is still
waiting for the first word; the agent can then act (say a filler phrase, switch to a faster
model). A part's budget is checked when the turn's parts are known (after the answer started).

Each breach is a ``budget_exceeded`` event on the turn span, a point of
``voice.budget.breaches{voice.budget}`` with an exemplar to the turn, and a call of every hook
registered (``instrument_session(..., on_budget_exceeded=hook)`` or
``SessionInstrumentation.on_budget_exceeded(hook)``) with a :class:`BudgetBreach`. A hook runs on
the session's event loop; it may be a coroutine function (run as a task). Its errors are contained
(``voxpulse.internal_errors``), never raised into the call.

Configuration: ``VOXPULSE_TURN_BUDGET`` (seconds, ``0`` turns the live budget off; unset: the
objective) and
``VOXPULSE_SEGMENT_BUDGETS`` (``part=seconds,...``), or ``Budgets(...)`` given to
``instrument_session``. A malformed value is an internal error of the session (counted, logged),
which then runs with the defaults: configuration never breaks a call.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import Span

from telemetry import _env
from telemetry import metrics as _metrics
from telemetry._errors import internal_error, internal_errors
from telemetry.exceptions import TelemetryConfigError
from telemetry.semconv import TTFW_OBJECTIVE_S, Attr, EventName, TurnSegment

__all__ = ["BUDGET_EVENT", "TURN_BUDGET", "BudgetBreach", "BudgetHook", "BudgetWatch", "Budgets"]

_logger = logging.getLogger("voxpulse.livekit")

BUDGET_EVENT: Final = EventName.BUDGET_EXCEEDED
TURN_BUDGET: Final = "time_to_first_word"  # the voice.budget value of the whole turn's budget


@dataclass(frozen=True, slots=True)
class Budgets:
    """Latency budgets of a call, seconds: the caller's time to first word (``None``: no live
    budget) and parts of the turn (:class:`telemetry.semconv.TurnSegment` -> seconds)."""

    turn_s: float | None = TTFW_OBJECTIVE_S
    segments: Mapping[TurnSegment, float] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Budgets:
        """``VOXPULSE_TURN_BUDGET`` and ``VOXPULSE_SEGMENT_BUDGETS`` (see the module docstring)."""
        own = _env.VOXPULSE_TURN_BUDGET.raw() is not None
        turn = _env.number(_env.VOXPULSE_TURN_BUDGET if own else _env.VOXPULSE_TTFW_OBJECTIVE_S)
        segments: dict[TurnSegment, float] = {}
        raw = _env.text(_env.VOXPULSE_SEGMENT_BUDGETS) or ""
        for item in filter(None, (p.strip() for p in raw.split(","))):
            name, _, seconds = item.partition("=")
            try:
                segments[TurnSegment(name.strip())] = float(seconds)
            except ValueError:
                parts = ", ".join(s.value for s in TurnSegment)
                raise TelemetryConfigError(
                    f"VOXPULSE_SEGMENT_BUDGETS has {item!r}; expected part=seconds with a part among {parts}"
                ) from None
        return cls(turn_s=turn or None, segments=segments)

    @classmethod
    def from_env_contained(cls) -> Budgets:
        """:meth:`from_env`, with a malformed value contained (the defaults then): it must not break a call."""
        try:
            return cls.from_env()
        except Exception as exc:  # TelemetryConfigError, or a reader's own
            internal_error("livekit.budgets", exc)
            return cls()


@dataclass(frozen=True, slots=True)
class BudgetBreach:
    """One budget exceeded. ``live``: the caller is still waiting for the first word (act now);
    otherwise found when the turn's parts were known."""

    call_id: str
    turn_index: int
    budget: str  # "time_to_first_word" or a TurnSegment value
    budget_s: float
    elapsed_s: float
    live: bool


BudgetHook = Callable[[BudgetBreach], Awaitable[None] | None]


class BudgetWatch:
    """The budgets of one session: the live timer of the turn waiting now, and the hooks."""

    def __init__(self, budgets: Budgets, call_id: str) -> None:
        self.budgets = budgets
        self.call_id = call_id
        self.hooks: list[BudgetHook] = []
        self.breaches: list[BudgetBreach] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def arm(self, span: Span, turn_index: int, started_at: float, clock: Callable[[], float],
            network_s: float) -> None:
        """The caller stopped speaking at ``started_at`` (agent clock): fire when the caller's time
        to first word would pass the budget, unless :meth:`disarm` comes first."""
        self.disarm()
        budget = self.budgets.turn_s
        if budget is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a test driving handlers directly): checked when the turn completes
        due_in = started_at + budget - network_s - clock()
        self._timer = loop.call_later(max(due_in, 0.0), self._due, span, turn_index, started_at, clock, network_s)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self, span: Span, turn_index: int, started_at: float, clock: Callable[[], float],
             network_s: float) -> None:
        self._timer = None
        with internal_errors("livekit.budget"):
            budget = self.budgets.turn_s
            if budget is not None:
                self.breach(span, turn_index, TURN_BUDGET, budget, clock() - started_at + network_s, live=True)

    def check_turn(self, span: Span, turn_index: int, ttfw_s: float) -> None:
        """The turn's first word came: a breach the live timer could not see (no loop) is found here."""
        self.disarm()
        budget = self.budgets.turn_s
        seen = any(b.turn_index == turn_index and b.budget == TURN_BUDGET for b in self.breaches)
        if budget is not None and ttfw_s > budget and not seen:
            self.breach(span, turn_index, TURN_BUDGET, budget, ttfw_s, live=False)

    def check_segments(self, span: Span, turn_index: int, parts: Mapping[TurnSegment, float]) -> None:
        for segment, limit in self.budgets.segments.items():
            took = parts.get(segment)
            if took is not None and took > limit:
                self.breach(span, turn_index, segment.value, limit, took, live=False)

    def breach(self, span: Span, turn_index: int, budget: str, limit: float, elapsed: float, *, live: bool) -> None:
        b = BudgetBreach(self.call_id, turn_index, budget, limit, round(elapsed, 4), live)
        self.breaches.append(b)
        span.add_event(BUDGET_EVENT, {
            Attr.BUDGET: budget, Attr.BUDGET_LIMIT: limit, Attr.BUDGET_ELAPSED: b.elapsed_s, Attr.BUDGET_LIVE: live,
        })
        with trace.use_span(span, end_on_exit=False):  # the exemplar opens this turn
            _metrics._budget_breach(budget)
        for hook in list(self.hooks):
            with internal_errors("livekit.budget_hook"):
                result = hook(b)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            with internal_errors("livekit.budget_hook"):
                raise task.exception()  # type: ignore[misc]

    def close(self) -> None:
        self.disarm()
