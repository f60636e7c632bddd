"""The tyre-shop voice assistant: a LiveKit ``Agent`` with function tools for the store API.

Decorator order matters: ``@function_tool`` must be the OUTERMOST decorator and the telemetry
decorator goes on the plain function below it (LiveKit reads the signature, type hints and
docstring through ``functools.wraps``; a tool wrapped *after* ``function_tool`` is only accepted
with a warning).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from livekit.agents import Agent, FlushSentinel, ModelSettings, RunContext, ToolError, function_tool, llm

import telemetry
from telemetry import metrics
from telemetry.livekit import BudgetBreach
from telemetry.semconv import CallOutcome

from .metrics import FITTINGS_BOOKED, ORDERS_CREATED
from .prompts import GREETING, INSTRUCTIONS
from .shop_api import StoreClient, StoreError

__all__ = ["TOOL_NAMES", "TyreAssistant"]

log = logging.getLogger("agent.assistant")

TOOL_NAMES: frozenset[str] = frozenset(
    {"find_tyres", "create_order", "book_fitting", "check_order_status", "transfer_to_operator"}
)
SEASONS = {"summer", "winter", "all_season"}
TRANSFER_REASONS = {"customer_request", "angry_customer", "out_of_scope", "store_unavailable", "repeated_failure"}


def _count(counter: metrics.Counter, key: str) -> None:
    """One more on ``counter`` and of ``key`` in the call's application data (stored with the call in
    the history)."""
    counter.add(1)
    call = telemetry.current_call()
    if call is not None:
        call.app[key] = int(call.app.get(key, 0)) + 1


def _scenario(name: str, *, override: bool = False) -> None:
    call = telemetry.current_call()
    if call is None:
        return
    if override or getattr(call, "scenario", None) in (None, ""):
        call.set_scenario(name)


@contextmanager
def _store_errors() -> Iterator[None]:
    """A failed store API request becomes the ToolError the model reads: "unavailable, apologise and
    transfer if it repeats" for a retryable failure, the store's refusal otherwise."""
    try:
        yield
    except StoreError as e:
        if e.retryable:
            raise ToolError(
                "Сервіс магазину тимчасово недоступний. Вибачтеся; якщо це повторюється — переведіть на оператора."
            ) from e
        raise ToolError(f"Магазин відхилив запит: {e.message}") from e


class TyreAssistant(Agent):
    """Answers calls for the tyre shop. ``on_transfer`` is called with the reason (SIP transfer hook)."""

    def __init__(
        self,
        store: StoreClient,
        *,
        greet: bool = True,
        on_transfer: Callable[[str], Any] | None = None,
        instructions: str = INSTRUCTIONS,
        fallback_llm: llm.LLM[Any] | None = None,
    ) -> None:
        super().__init__(instructions=instructions)
        self.store = store
        self.greet = greet
        self.on_transfer = on_transfer
        self.fallback_llm = fallback_llm  # a faster model for the rest of a call that ran over budget
        self.on_fallback = False

    def over_budget(self, breach: BudgetBreach) -> None:
        """The session's budget hook (``instrument_session(on_budget_exceeded=...)``): a turn ran over
        its latency budget while the caller waits, so the rest of the call answers with the faster
        fallback model (the answer already being generated finishes on the model it started with)."""
        if breach.live and self.fallback_llm is not None and not self.on_fallback:
            self.on_fallback = True
            log.warning("turn over its latency budget: answering with the fallback model from now on",
                        extra={"turn": breach.turn_index, "budget_s": breach.budget_s,
                               "fallback_model": self.fallback_llm.model})

    async def llm_node(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], model_settings: ModelSettings,
    ) -> AsyncIterable[llm.ChatChunk | str | FlushSentinel]:
        if not (self.on_fallback and self.fallback_llm is not None):
            async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
                yield chunk
            return
        async with self.fallback_llm.chat(chat_ctx=chat_ctx, tools=tools,
                                          tool_choice=model_settings.tool_choice) as stream:
            async for chunk in stream:
                yield chunk

    async def on_enter(self) -> None:
        if self.greet:
            self.session.say(GREETING, allow_interruptions=True)

    @function_tool
    @telemetry.trace_tool
    async def find_tyres(self, ctx: RunContext[None], size: str, season: str | None = None) -> str:
        """Find tyres in stock by size and season, with prices.

        Args:
            size: Tyre size as on the sidewall, e.g. "205/55 R16".
            season: One of "summer", "winter", "all_season"; omit when the caller did not say.
        """
        _scenario("order")
        if season is not None and season not in SEASONS:
            raise ToolError(f"Невідомий сезон {season!r}: summer, winter або all_season")
        with _store_errors():
            items = await self.store.find_tyres(size, season)
        if not items:
            return "Нічого не знайдено для цього розміру й сезону."
        top = [
            {k: i[k] for k in ("id", "brand", "model", "season", "price_uah", "stock")}
            for i in items
            if i["stock"] > 0
        ][:3]
        return json.dumps({"size": size, "options": top}, ensure_ascii=False)

    @function_tool
    @telemetry.trace_tool
    async def create_order(
        self, ctx: RunContext[None], tyre_id: str, quantity: int, phone: str, name: str | None = None
    ) -> str:
        """Create an order after the caller confirmed the model, quantity and phone number.

        Args:
            tyre_id: The id returned by find_tyres, e.g. "T0010".
            quantity: Number of tyres (usually 4).
            phone: Caller's phone number in international format, e.g. "+380501234567".
            name: Caller's name, if given.
        """
        _scenario("order")
        with _store_errors():
            order = await self.store.create_order(tyre_id, quantity, phone, name)
        _count(ORDERS_CREATED, "orders_created")
        return json.dumps(order, ensure_ascii=False)

    @function_tool
    @telemetry.trace_tool
    async def book_fitting(
        self, ctx: RunContext[None], date: str, time: str, phone: str, order_id: str | None = None
    ) -> str:
        """Book a tyre-fitting appointment.

        Args:
            date: Date as YYYY-MM-DD.
            time: Time as HH:MM.
            phone: Caller's phone number, e.g. "+380501234567".
            order_id: The caller's order number, if any.
        """
        _scenario("fitting", override=True)
        with _store_errors():
            booking = await self.store.book_fitting(date, time, phone, order_id)
        _count(FITTINGS_BOOKED, "fittings_booked")
        return json.dumps(booking, ensure_ascii=False)

    @function_tool
    @telemetry.trace_tool
    async def check_order_status(self, ctx: RunContext[None], order_id: str) -> str:
        """Check the status of an order.

        Args:
            order_id: Order number, e.g. "UA-10234".
        """
        _scenario("order_status")
        with _store_errors():
            status = await self.store.order_status(order_id)
        return json.dumps(status, ensure_ascii=False)

    @function_tool
    @telemetry.trace_tool
    async def transfer_to_operator(self, ctx: RunContext[None], reason: str) -> str:
        """Transfer the caller to a human operator.

        Args:
            reason: Short code: customer_request, angry_customer, out_of_scope, store_unavailable
                or repeated_failure.
        """
        code = reason if reason in TRANSFER_REASONS else "other"
        call = telemetry.current_call()
        if call is not None:
            call.set_outcome(CallOutcome.TRANSFERRED, reason=code)
            _scenario("operator")
        if self.on_transfer is not None:
            res = self.on_transfer(code)
            if hasattr(res, "__await__"):
                await res
        return "Переведення на оператора розпочато. Скажіть клієнту, що з'єднуєте з оператором."
