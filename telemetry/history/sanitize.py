"""Make any input storable: PostgreSQL ``text`` rejects NUL bytes and invalid UTF-8, ``jsonb``
rejects NaN and ``\\u0000``; agents hand us whatever the LLM or the STT produced.

Everything here is pure and never raises on odd input; :class:`RejectedRecord` is raised only for
records that cannot be stored at all (no call id, no valid timestamp, ...).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "MAX_JSON_CHARS",
    "MAX_SHORT_CHARS",
    "MAX_TEXT_CHARS",
    "RejectedRecord",
    "check_id",
    "check_int",
    "check_number",
    "check_ts",
    "clean_optional",
    "clean_text",
    "to_json",
    "to_jsonable",
]

MAX_TEXT_CHARS: Final = 65_536  # transcripts, tool errors
MAX_SHORT_CHARS: Final = 512  # ids, names, labels
MAX_JSON_CHARS: Final = 262_144  # one tool call's args or result, serialised
_MAX_DEPTH: Final = 32
_MAX_ITEMS: Final = 10_000
_REPLACEMENT: Final = "\ufffd"


class RejectedRecord(ValueError):
    """A record that cannot be stored; the message is the reason (logged, counted ``rejected``)."""


def clean_text(value: object, limit: int = MAX_TEXT_CHARS) -> str:
    """A str PostgreSQL accepts: lone surrogates and NUL become U+FFFD, bytes are decoded as UTF-8
    with replacement, and text longer than ``limit`` is cut with a visible marker."""
    if isinstance(value, str):
        s = value
    elif isinstance(value, bytes | bytearray | memoryview):
        s = bytes(value).decode("utf-8", "replace")
    else:
        s = _safe_str(value)
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            # pairs written as two surrogates become the real character; lone ones U+FFFD
            s = s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if "\x00" in s:
        s = s.replace("\x00", _REPLACEMENT)
    if len(s) > limit:
        cut = len(s) - limit
        s = f"{s[:limit]}…[truncated {cut} chars]"
    return s


def clean_optional(value: object, limit: int = MAX_SHORT_CHARS) -> str | None:
    return None if value is None else clean_text(value, limit)


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception as exc:  # a broken __str__ must not break the writer
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"


def to_jsonable(value: object, _depth: int = 0) -> Any:
    """A JSON-serialisable copy of ``value`` that ``jsonb`` accepts.

    Non-finite floats become strings, non-string keys are stringified, bytes are decoded, tuples
    and sets become lists, dataclasses and pydantic-like objects become dicts, and anything else
    becomes ``{"__type__": ..., "repr": ...}``. Depth and size are bounded (cycles included).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str | bytes | bytearray):
        return clean_text(value)
    if _depth >= _MAX_DEPTH:
        return "<max depth>"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= _MAX_ITEMS:
                out["__truncated_items__"] = len(value) - _MAX_ITEMS
                break
            key = clean_text(k, MAX_SHORT_CHARS) if isinstance(k, str) else clean_text(_safe_str(k))
            out[key] = to_jsonable(v, _depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        res = [to_jsonable(v, _depth + 1) for v in items[:_MAX_ITEMS]]
        if len(items) > _MAX_ITEMS:
            res.append(f"<{len(items) - _MAX_ITEMS} more items>")
        return res
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name, None), _depth + 1) for f in dataclasses.fields(value)
        }
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return to_jsonable(dump(), _depth + 1)
        except Exception:
            pass
    return {"__type__": type(value).__name__, "repr": clean_text(_safe_repr(value), 1000)}


def to_json(value: object) -> str | None:
    """Serialised ``jsonb`` text for ``value`` (``None`` stays SQL NULL), bounded in size."""
    if value is None:
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        # json.dumps passes NUL / lone surrogates through as escapes that jsonb rejects
        if "\\u0000" in text or not _utf8_ok(text):
            raise ValueError("needs cleaning")
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(to_jsonable(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if len(text) > MAX_JSON_CHARS:
        text = json.dumps(
            {"__truncated__": True, "chars": len(text), "preview": clean_text(text[:4096], 4096)},
            ensure_ascii=False,
        )
    return text


def _utf8_ok(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_ts(value: object, what: str) -> float:
    """An epoch-seconds timestamp between 2000 and 2200, or :class:`RejectedRecord`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RejectedRecord(f"{what} is not a number: {type(value).__name__}")
    f = float(value)
    if not math.isfinite(f) or not 946_684_800.0 <= f < 7_258_118_400.0:
        raise RejectedRecord(f"{what} out of range: {f!r}")
    return f


def check_number(value: object) -> float | None:
    """A finite float or None (non-numbers and NaN/inf become None)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def check_int(value: object, default: int | None = None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return value if -(2**31) <= value < 2**31 else default


def check_id(value: object, what: str = "call_id") -> str:
    if value is None:
        raise RejectedRecord(f"{what} is missing")
    s = clean_text(value, MAX_SHORT_CHARS)
    if not s.strip():
        raise RejectedRecord(f"{what} is empty")
    return s
