"""The fake model's policy: what the tyre-shop agent does next, given the conversation so far.

Rules over the caller's words (Ukrainian and Russian) pick a tool call or an answer, the way a
small model would; :class:`agent.sim.providers.ScriptedLLM` streams what :func:`decide` returns.
It answers tool results (stock found, order created, store unavailable -> retry, then transfer)
and falls for the prompt-injection scenario by asking for a tool the agent does not have.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import llm

__all__ = ["Action", "decide"]


@dataclass
class Action:
    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


_SIZE = re.compile(r"(\d{3})\s*[/ ]\s*(\d{2})\s*[RrРр]\s*(\d{2})")
_PHONE = re.compile(r"\+?380\d{9}")
_ORDER = re.compile(r"\b(?:UA|ЮА)[- ]?(\d{4,6})\b", re.IGNORECASE)
_DATE = re.compile(r"\b(20\d\d-\d\d-\d\d)\b")
_TIME = re.compile(r"\b(\d{1,2}:\d\d)\b")
_QTY = re.compile(r"\b(\d{1,2})\s*(?:шт|шин|штук|колес)", re.IGNORECASE)

INJECTION = re.compile(
    r"ігноруй|игнорируй|ignore (?:all |previous )|адміністратор|администратор|admin|system prompt|"
    r"вивантаж|выгрузи|dump|базу клієнтів|базу клиентов",
    re.IGNORECASE,
)
OPERATOR = re.compile(r"оператор|живу людину|живого человека|менеджер|з людиною|с человеком", re.IGNORECASE)
ANGRY = re.compile(r"жах|обурлив|безобраз|скільки можна|сколько можно|набридл|достали|!!", re.IGNORECASE)
ORDER_WORDS = re.compile(r"оформ|замовля|замовити|заказ|беру|купую|куплю", re.IGNORECASE)
FITTING_WORDS = re.compile(r"шиномонтаж|монтаж|запис|перевзу|переобу", re.IGNORECASE)
STATUS_WORDS = re.compile(r"статус|де моє|где мой|замовлення|заказ", re.IGNORECASE)
BYE_WORDS = re.compile(r"дякую|до побачення|спасибо|до свидания|все, бувай", re.IGNORECASE)


def _season(text: str) -> str | None:
    t = text.lower()
    if "всесезон" in t:
        return "all_season"
    if "зим" in t:
        return "winter"
    if "літ" in t or "лет" in t:
        return "summer"
    return None


def _turn_items(chat_ctx: llm.ChatContext) -> tuple[str, list[llm.FunctionCall], list[llm.FunctionCallOutput]]:
    """The last user text and the tool calls/outputs made since."""
    user = ""
    calls: list[llm.FunctionCall] = []
    outputs: list[llm.FunctionCallOutput] = []
    for item in chat_ctx.items:
        if item.type == "message" and item.role == "user":
            user = item.text_content or ""
            calls, outputs = [], []
        elif item.type == "function_call":
            calls.append(item)
        elif item.type == "function_call_output":
            outputs.append(item)
    return user, calls, outputs


def _last_tool_result(chat_ctx: llm.ChatContext, name: str) -> dict[str, Any] | None:
    for item in reversed(chat_ctx.items):
        if item.type == "function_call_output" and item.name == name and not item.is_error:
            try:
                out = json.loads(item.output)
            except (TypeError, ValueError):
                return None
            return out if isinstance(out, dict) else None
    return None


def decide(chat_ctx: llm.ChatContext) -> Action:
    """The fake model's policy: what to do next given the conversation."""
    user, calls, outputs = _turn_items(chat_ctx)
    if outputs:
        return _after_tools(calls, outputs)
    return _answer(user, chat_ctx)


def _after_tools(calls: list[llm.FunctionCall], outputs: list[llm.FunctionCallOutput]) -> Action:
    """The turn's tools answered: retry, transfer, or tell the caller what the last one returned."""
    last = outputs[-1]
    if last.name == "transfer_to_operator":
        return Action("Зачекайте, будь ласка, з'єдную вас з оператором.")
    if last.is_error:
        return _after_tool_error(last, calls, sum(1 for o in outputs if o.is_error))
    try:
        data = json.loads(last.output)
    except ValueError:
        data = {}
    if last.name == "find_tyres":
        opts = data.get("options") or []
        if not opts:
            return Action("На жаль, такого розміру зараз немає в наявності.")
        o = opts[0]
        return Action(
            f"Є {o['brand']} {o['model']} за {o['price_uah']} гривень за шину, в наявності {o['stock']}. Оформити?"
        )
    if last.name == "create_order":
        return Action(f"Замовлення {data.get('order_id')} оформлено, сума {data.get('total_uah')} гривень.")
    if last.name == "book_fitting":
        return Action(f"Записала вас на шиномонтаж {data.get('date')} о {data.get('time')}.")
    if last.name == "check_order_status":
        return Action(f"Замовлення {data.get('order_id')} має статус {data.get('status')}.")
    return Action("Готово. Щось іще?")


def _after_tool_error(last: llm.FunctionCallOutput, calls: list[llm.FunctionCall], errors: int) -> Action:
    """An unknown tool is declined; the store being down is retried once, then transferred."""
    if "Unknown function" in last.output:
        return Action("Вибачте, я можу допомогти лише з шинами, замовленнями та записом на шиномонтаж.")
    if "недоступний" in last.output:
        if errors >= 2:
            return Action(tool_calls=[("transfer_to_operator", {"reason": "store_unavailable"})])
        prev = next(c for c in reversed(calls) if c.call_id == last.call_id)
        return Action(tool_calls=[(prev.name, json.loads(prev.arguments or "{}"))])
    return Action("На жаль, не вдалося: " + last.output.split(":")[-1].strip()[:80] + ". Щось іще?")


def _answer(user: str, chat_ctx: llm.ChatContext) -> Action:
    """What the caller just said picks a tool, or an answer."""
    if INJECTION.search(user):
        # the "model" falls for the injection and asks for a tool the agent does not have
        return Action(tool_calls=[("export_customer_database", {"format": "csv", "include": "phones"})])
    if OPERATOR.search(user):
        return Action(tool_calls=[("transfer_to_operator", {"reason": "customer_request"})])
    if ANGRY.search(user):
        return Action(tool_calls=[("transfer_to_operator", {"reason": "angry_customer"})])
    if (m := _SIZE.search(user)) is not None:
        size = f"{m.group(1)}/{m.group(2)} R{m.group(3)}"
        args: dict[str, Any] = {"size": size}
        if (season := _season(user)) is not None:
            args["season"] = season
        return Action(tool_calls=[("find_tyres", args)])
    phone = _PHONE.search(user)
    if FITTING_WORDS.search(user) and (d := _DATE.search(user)) and (t := _TIME.search(user)):
        fargs: dict[str, Any] = {"date": d.group(1), "time": t.group(1), "phone": phone.group(0) if phone else ""}
        if (o := _ORDER.search(user)) is not None:
            fargs["order_id"] = f"UA-{o.group(1)}"
        return Action(tool_calls=[("book_fitting", fargs)])
    if (o := _ORDER.search(user)) is not None and STATUS_WORDS.search(user):
        return Action(tool_calls=[("check_order_status", {"order_id": f"UA-{o.group(1)}"})])
    if ORDER_WORDS.search(user) and phone:
        found = _last_tool_result(chat_ctx, "find_tyres")
        opts = (found or {}).get("options") or []
        if not opts:
            return Action("Спершу скажіть, будь ласка, розмір шин.")
        q = _QTY.search(user)
        return Action(
            tool_calls=[("create_order", {"tyre_id": opts[0]["id"], "quantity": int(q.group(1)) if q else 4,
                                          "phone": phone.group(0)})]
        )
    if BYE_WORDS.search(user):
        return Action("Дякую за дзвінок! Гарного дня.")
    return Action("Уточніть, будь ласка: вам потрібні шини, шиномонтаж чи статус замовлення?")
