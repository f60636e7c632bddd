"""Validation of what a browser sends: every bad value becomes :class:`BadRequest` (a 400 with a
message), never an exception that reaches the user as a 500."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Final

from voxpulse_console.ui.database import ANY_JUDGE, CallFilter

__all__ = ["WINDOWS", "BadRequest", "decode_cursor", "encode_cursor", "parse_call_filter", "parse_window"]

MAX_QUERY_CHARS: Final = 2048
MAX_FIELD_CHARS: Final = 200
_OUTCOMES: Final = frozenset({"resolved_by_bot", "transferred", "abandoned", "failed", "active", "completed"})
_STATUSES: Final = frozenset({"active", "completed", "failed", "transferred"})
_SCENARIO_RE: Final = re.compile(r"^[\w.\-]{1,128}$")
#: LiveKit's outcome of a call (``ctx.tagger``: success or fail)
_INSIGHT_OUTCOMES: Final = frozenset({"success", "fail"})
_JUDGE_RE: Final = re.compile(r"^[\w.\- ]{1,128}$")
_CALL_ID_RE: Final = re.compile(r"^[\w.:@\-]{1,256}$")
_TRACE_ID_RE: Final = re.compile(r"^[0-9a-f]{32}$")
#: latency windows the console offers (label -> seconds)
WINDOWS: Final[dict[str, int]] = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}


class BadRequest(ValueError):
    """A request parameter is malformed; the message says which and why."""


def _one(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_FIELD_CHARS:
        raise BadRequest(f"{name}: at most {MAX_FIELD_CHARS} characters")
    return value


def parse_time(value: str, name: str) -> dt.datetime:
    """ISO 8601 (a zone offset or Z; naive means UTC) or epoch seconds."""
    try:
        if re.fullmatch(r"\d{9,11}(\.\d+)?", value):
            return dt.datetime.fromtimestamp(float(value), dt.UTC)
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as exc:
        raise BadRequest(f"{name}: not a time (ISO 8601 or epoch seconds)") from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    if not 2000 <= t.year <= 2200:
        raise BadRequest(f"{name}: year out of range")
    return t


def check_call_id(value: str) -> str:
    if not _CALL_ID_RE.match(value):
        raise BadRequest("call id: 1-256 characters of letters, digits and _.:@-")
    return value


def check_trace_id(value: str) -> str:
    v = value.lower()
    if not _TRACE_ID_RE.match(v):
        raise BadRequest("trace id: 32 hexadecimal characters")
    return v


def encode_cursor(cursor: tuple[dt.datetime, str]) -> str:
    raw = json.dumps([cursor[0].isoformat(), cursor[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(value: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        ts, cid = json.loads(raw)
        t = dt.datetime.fromisoformat(ts)
        if not isinstance(cid, str) or t.tzinfo is None:
            raise ValueError("bad cursor")
    except (ValueError, TypeError) as exc:
        raise BadRequest("cursor: not a cursor this console handed out") from exc
    return t, check_call_id(cid)


def phone_forms(text: str) -> tuple[str, ...]:
    """The raw forms a caller's number may be stored in (E.164 with and without '+', national)."""
    digits = re.sub(r"\D", "", text)
    if not 9 <= len(digits) <= 15:
        return ()
    forms = {digits, "+" + digits}
    if len(digits) == 10 and digits.startswith("0"):  # Ukrainian national 0XX XXX XX XX
        forms |= {"380" + digits[1:], "+380" + digits[1:]}
    if len(digits) == 12 and digits.startswith("380"):
        forms.add("0" + digits[3:])
    return tuple(sorted(forms))


def parse_call_filter(params: Mapping[str, str]) -> CallFilter:
    """Query parameters of GET /api/calls -> a :class:`CallFilter`."""
    unknown = set(params) - {"from", "to", "outcome", "scenario", "min_ttfw_ms", "errors", "q", "status",
                             "insight_outcome", "failed_judge", "cursor", "limit"}
    if unknown:
        raise BadRequest(f"unknown parameter(s): {', '.join(sorted(unknown)[:5])}")
    start = end = None
    if (v := _one(params, "from")) is not None:
        start = parse_time(v, "from")
    if (v := _one(params, "to")) is not None:
        end = parse_time(v, "to")
    if start and end and start >= end:
        raise BadRequest("from must be before to")
    outcomes: tuple[str, ...] = ()
    if (v := _one(params, "outcome")) is not None:
        outcomes = tuple(sorted({o.strip() for o in v.split(",") if o.strip()}))
        bad = [o for o in outcomes if o not in _OUTCOMES]
        if bad:
            raise BadRequest(f"outcome: unknown value(s) {', '.join(bad[:3])}; known: {', '.join(sorted(_OUTCOMES))}")
    scenario = _one(params, "scenario")
    if scenario is not None and not _SCENARIO_RE.match(scenario):
        raise BadRequest("scenario: letters, digits and _.- only")
    status = _one(params, "status")
    if status is not None and status not in _STATUSES:
        raise BadRequest(f"status: one of {', '.join(sorted(_STATUSES))}")
    min_ttfw = None
    if (v := _one(params, "min_ttfw_ms")) is not None:
        try:
            min_ttfw = float(v)
        except ValueError as exc:
            raise BadRequest("min_ttfw_ms: a number of milliseconds") from exc
        if not 0 <= min_ttfw <= 3_600_000:
            raise BadRequest("min_ttfw_ms: between 0 and 3600000")
    errors = False
    if (v := _one(params, "errors")) is not None:
        if v not in ("0", "1", "true", "false"):
            raise BadRequest("errors: 1 or 0")
        errors = v in ("1", "true")
    call_prefix: str | None = None
    phones: tuple[str, ...] = ()
    if (q := _one(params, "q")) is not None:
        q = q.strip()
        phones = phone_forms(q) if re.fullmatch(r"[\d\s+()\-.]+", q) else ()
        if not phones:
            if not _CALL_ID_RE.match(q):
                raise BadRequest("q: a call id (or its beginning) or a caller's full phone number")
            call_prefix = q
    insight_outcome = _one(params, "insight_outcome")
    if insight_outcome is not None and insight_outcome not in _INSIGHT_OUTCOMES:
        raise BadRequest(f"insight_outcome: one of {', '.join(sorted(_INSIGHT_OUTCOMES))}")
    failed_judge = _one(params, "failed_judge")
    if failed_judge is not None and failed_judge != ANY_JUDGE and not _JUDGE_RE.match(failed_judge):
        raise BadRequest(f"failed_judge: a judge's name (letters, digits, spaces and _.-) or {ANY_JUDGE} for any")
    cursor = None
    if (v := _one(params, "cursor")) is not None:
        cursor = decode_cursor(v)
    limit = 50
    if (v := _one(params, "limit")) is not None:
        if not v.isdigit() or not 1 <= int(v) <= 200:
            raise BadRequest("limit: 1 to 200")
        limit = int(v)
    return CallFilter(start=start, end=end, outcomes=outcomes, scenario=scenario, min_ttfw_ms=min_ttfw,
                      errors_only=errors, call_id_prefix=call_prefix, phones=phones, status=status,
                      insight_outcome=insight_outcome, failed_judge=failed_judge, cursor=cursor, limit=limit)


def parse_window(value: str | None) -> tuple[str, int]:
    w = value or "1h"
    if w not in WINDOWS:
        raise BadRequest(f"window: one of {', '.join(WINDOWS)}")
    return w, WINDOWS[w]
