"""PII redaction applied before anything leaves the process.

What is found in text: phone numbers (Ukrainian ``+380XXXXXXXXX`` is masked as ``+380***XXX`` per the
users' logging policy; other numbers of 9-15 digits in any common format as ``+***XXX``), e-mail
addresses, card numbers (13-19 digits passing the Luhn check), and names introduced by a phrase
("мене звати ...", "меня зовут ...", "my name is ..."). Text is also made safe to encode (lone
surrogates replaced) and truncated.

Attribute keys that may hold personal data (``semconv`` marks them ``pii``; any key with a ``pii``
segment, e.g. LiveKit's ``lk.pii.*``; GenAI message content) follow the content mode:
``off`` drops them; ``redacted`` (default) redacts ours (bounded text: transcripts of a turn, tool
arguments) and drops other libraries' (whole chat contexts, prompts: bulky, and already on our
spans in redacted form); ``full`` keeps them all (still encodable and truncated). Every other
string value is redacted too, as defence in depth. Raw values stay available to the call-history
store, which never goes through this module.

Structured values are masked by structure, not as text: a string that is a JSON object or array
(LiveKit's ``lk.llm_metrics``, ``lk.tts_metrics``, ``lk.stt.events``, tool arguments) is parsed and
each value masked by its key (:meth:`Redactor.structured`): strings as text, except ids under id
keys (``request_id``, ``speech_id``, ...) that are not written like a phone number (with a ``+``
or separators, or shaped like a Ukrainian one); JSON numbers are
left alone unless they have 9 or more digits under a key that is neither a measurement
(``timestamp``, ``*_at``, ``duration``, ``ttft``, ``*_tokens``, ...) nor an id -- under a phone key
(``phone``, ``caller``, ...) they are always masked. A log record's extra fields go the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from opentelemetry.util.types import AttributeValue

from telemetry.semconv import ATTRIBUTES, Attr

__all__ = ["ContentMode", "Redactor", "is_pii_key", "redact"]

ContentMode = Literal["off", "redacted", "full"]

_NUMBER = re.compile(r"(?<![\d+])\+?\(?\d(?:[\s.\-()\u2010-\u2015]{0,3}\d)+\)?(?!\d)")
# The domain part is matched by regex; the local part is found by walking left from "@" (at most
# 64 characters), which keeps hostile input ("я" * 10**5 + "@x.ua") linear.
_EMAIL_DOMAIN = re.compile(r"@[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}\.[^\W\d_]{2,24}")
_LOCAL_CHARS = frozenset(".%+-_")
_NAME = re.compile(
    r"(?i:\b(?:мене\s+звати|меня\s+зовут|моє\s+ім'?я|мое\s+имя|на\s+ім'?я|на\s+имя|my\s+name\s+is|"
    r"прізвище|фамилия|this\s+is)\s*[:,-]?\s+)"
    r"([A-ZА-ЯІЇЄҐЁ][\w'’-]+(?:\s+[A-ZА-ЯІЇЄҐЁ][\w'’-]+){0,2})"
)

_OWN_PII_KEYS: Final[frozenset[str]] = frozenset(a.key for a in ATTRIBUTES if a.pii)
_PII_KEYS: Final[frozenset[str]] = _OWN_PII_KEYS | {
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
}
# Join keys: the call-history store and the trace store's search use them verbatim (a random id may hold
# a run of digits that looks like a phone number). Ids must not embed PII: call_id is never the room name.
_VERBATIM_KEYS: Final[frozenset[str]] = frozenset(
    {Attr.CALL_ID, Attr.CONVERSATION_ID, Attr.TOOL_CALL_ID, Attr.SIP_CALL_ID, Attr.ROOM_SID, Attr.JOB_ID,
     "lk.speech_id", "lk.generation_id"}
)


_key_is_pii: dict[str, bool] = {}


def is_pii_key(key: str) -> bool:
    known = _key_is_pii.get(key)
    if known is None:
        known = key in _PII_KEYS or ".pii." in f".{key}." or key.startswith("pii.")
        if len(_key_is_pii) < 10_000:
            _key_is_pii[key] = known
    return known


def _mask_emails(text: str) -> str:
    out: list[str] = []
    last = 0
    for m in _EMAIL_DOMAIN.finditer(text):
        start = m.start()
        floor = max(last, start - 64)
        while start > floor and (text[start - 1].isalnum() or text[start - 1] in _LOCAL_CHARS):
            start -= 1
        if start == m.start():
            continue  # "@domain" with no local part: not an address
        out.append(text[last:start])
        out.append("[email]")
        last = m.end()
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _mask_number(match: re.Match[str]) -> str:
    raw = match.group(0)
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) < 9:
        return raw
    return _mask_number_text(digits)


def _mask_number_text(digits: str) -> str:
    """The mask for a run of 9 or more digits: a card, a long number, or a phone number."""
    n = len(digits)
    if 13 <= n <= 19 and _luhn(digits):
        return "[card]"
    if n > 15:
        return "[number]"
    if digits.startswith("380") and n == 12:
        return f"+380***{digits[-3:]}"
    if n == 10 and digits.startswith("0"):  # Ukrainian national format 0XX XXX XX XX
        return f"+380***{digits[-3:]}"
    return f"+***{digits[-3:]}"


# Keys, in structured values (JSON payloads, log records' extra fields), that say what a value is.
_PHONE_KEY = re.compile(r"phone|msisdn|caller|callee|mobile|contact|(?:^|[._-])tel(?:$|[._-])", re.I)
_ID_KEY = re.compile(r"(?i:(?:^|[._-])(?:id|ids|sid|uuid)$)|[a-z]Id$")
_MEASURE_KEY = re.compile(
    r"(?:^|[._-])(?:time|timestamp|ts|at|duration|latency|delay|ttft|ttfb|ms|s|ns|sec|seconds|tokens|count|"
    r"size|bytes|length|offset|index|seq|rate|version)(?:$|[._-])",
    re.I,
)
_PHONE_SHAPED = re.compile(r"\+?[\d\s().\-\u2010-\u2015]+")
_STRUCTURED_MAX_DEPTH: Final = 32
# JSON writes these control characters as \u00XX, whose digits next to a number's would read as a
# longer number: in a structured value they are replaced
_JSON_CONTROL = re.compile(r"[\x00-\x07\x0b\x0e-\x1f]")


def _is_id(key: str, value: str) -> bool:
    """An id under an id key: kept verbatim (a random id may hold a run of digits), unless it has
    the shape of a phone number, spaces, or an e-mail address."""
    if not _ID_KEY.search(key) or _PHONE_KEY.search(key) or len(value) > 256 or "@" in value:
        return False
    if any(ch.isspace() for ch in value):
        return False
    if not _PHONE_SHAPED.fullmatch(value):
        return True
    # digits only: an id (LiveKit's request ids may be long numbers), unless written like a phone
    # number (a +, separators) or shaped like a Ukrainian one (380XXXXXXXXX, 0XXXXXXXXX)
    return value.isdigit() and not ((value.startswith("380") and len(value) == 12)
                                    or (value.startswith("0") and len(value) == 10))


def _digits(value: float) -> str:
    return "".join(ch for ch in json.dumps(value) if ch.isdigit())


def _number_is_safe(key: str, digits: str) -> bool:
    """A JSON number kept as it is: fewer than 9 digits, or a measurement or an id (not under a
    phone key)."""
    if len(digits) < 9:
        return True
    if _PHONE_KEY.search(key):
        return False
    return bool(_MEASURE_KEY.search(key) or _ID_KEY.search(key))


def _looks_structured(text: str) -> bool:
    t = text.strip()
    return len(t) >= 2 and ((t[0] == "{" and t[-1] == "}") or (t[0] == "[" and t[-1] == "]"))


_HINTS: Final = ("звати", "зовут", "ім'я", "имя", "name", "прізвище", "фамилия", "this is")
_CACHE_MAX: Final = 4096
_CACHEABLE_LEN: Final = 96


class Redactor:
    """Redacts text and attribute maps. Thread-safe: its only state is a cache of short values
    (provider, model and span-level strings repeat), filled and read under the GIL."""

    __slots__ = ("_cache", "content", "max_length")

    def __init__(self, *, content: ContentMode = "redacted", max_length: int = 2048) -> None:
        self.content: ContentMode = content
        self.max_length = max_length
        self._cache: dict[str, str] = {}

    def safe(self, text: str) -> str:
        """Encodable and within the length limit; nothing else changed."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
        if len(text) > self.max_length:
            text = f"{text[: self.max_length]}…[truncated {len(text) - self.max_length} chars]"
        return text

    def text(self, text: str) -> str:
        """Redacts PII patterns, then makes the text safe."""
        short = len(text) <= _CACHEABLE_LEN
        if short:
            hit = self._cache.get(text)
            if hit is not None:
                return hit
        out = self._text(text)
        if short:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[text] = out
        return out

    def _text(self, text: str) -> str:
        if len(text) > self.max_length * 4:  # bound the regex work on hostile input
            text = text[: self.max_length * 4]
        if _looks_structured(text):
            structured = self._json(text)
            if structured is not None:
                return self.safe(structured)
        return self._free_text(text)

    def _free_text(self, text: str) -> str:
        if "@" in text:
            text = _mask_emails(text)
        text = _NUMBER.sub(_mask_number, text)
        lowered = text.lower()
        if any(h in lowered for h in _HINTS):
            text = _NAME.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + "[name]", text)
        return self.safe(text)

    def _json(self, text: str) -> str | None:
        """``text`` as JSON with its values masked by key, or None when it is not JSON."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return None
        return json.dumps(self.structured("", data), ensure_ascii=False, separators=(",", ":"))

    def structured(self, key: str, value: Any, _depth: int = 0) -> Any:
        """``value`` (JSON-like data: dicts, lists, strings, numbers) with its values masked by key,
        keeping its shape: strings redacted as text (ids under id keys kept), numbers kept unless
        they may be a phone number (see the module docstring); anything else as its redacted text."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            value = _JSON_CONTROL.sub("\ufffd", value)
            return self.safe(value) if _is_id(key, value) else self.text(value)
        if isinstance(value, (int, float)):
            digits = _digits(value)
            return value if _number_is_safe(key, digits) else _mask_number_text(digits)
        if _depth >= _STRUCTURED_MAX_DEPTH:
            return "[truncated]"
        if isinstance(value, Mapping):
            return {str(k): self.structured(str(k), v, _depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.structured(key, v, _depth + 1) for v in value]
        return self.text(str(value))

    def value(self, key: str, value: AttributeValue) -> AttributeValue | None:
        """The value to export under ``key``, or None to drop the attribute."""
        pii = is_pii_key(key)
        if pii and (self.content == "off" or (self.content == "redacted" and key not in _OWN_PII_KEYS)):
            return None  # others' content keys (LiveKit's lk.pii.chat_ctx, ...) are bulky: kept only in full
        keep = (pii and self.content == "full") or key in _VERBATIM_KEYS
        if isinstance(value, str):
            return self.safe(value) if keep else self.text(value)
        if isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, Sequence) and value and isinstance(value[0], str):
            fix = self.safe if keep else self.text
            return [fix(v) for v in value if isinstance(v, str)]
        return value

    def attributes(self, attributes: Mapping[str, AttributeValue] | None) -> dict[str, AttributeValue]:
        out: dict[str, AttributeValue] = {}
        if not attributes:
            return out
        for key, value in attributes.items():
            new = self.value(key, value)
            if new is not None:
                out[key] = new
        return out


_default = Redactor()


def redact(text: str) -> str:
    """Redacts phone numbers, e-mails, card numbers and introduced names in ``text``."""
    return _default.text(text)
