"""Data-quality guard: an impossible duration never reaches a histogram or a span attribute.

LiveKit has reported durations no call can have: a ``user_speaking`` of 18446744073500970 µs (an
unsigned wrap of a small negative, livekit/agents#7307) and transcription delays over 200 s
(livekit/agents#6093). A chart that plots those is worse than no chart, so every duration that
enters VoxPulse from outside its own clock goes through :func:`duration` (a reported value) or
:func:`interval` (one computed from two timestamps)::

    delay = _quality.duration("livekit.stt.transcription_delay", m.get("transcription_delay"),
                              within_s=call_so_far, span=turn_span)
    if delay is not None:
        ...  # record it

A value that is not finite, negative, wrapped (over 2**53 µs), or longer than the call so far
(``within_s``, plus :data:`CALL_SLACK_S` for the clocks' disagreement) -- or an interval whose end
lies before its start (a clock that went backwards) -- comes back as ``None``. A timestamp read from
another process's clock goes through :func:`same_clock`, which reports clocks that disagree. It is recorded as a
data error instead: one on ``voxpulse.data.errors{voxpulse.data_error.source, ...reason}`` and a
``data_error`` event, with the raw value, on the span given (else the current span). ``None`` in
means "not reported" and is no error.
"""

from __future__ import annotations

import math
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import Span

from telemetry import metrics as _metrics
from telemetry.semconv import Attr, EventName

__all__ = ["CALL_SLACK_S", "CLOCK_TOLERANCE_S", "DATA_ERROR_EVENT", "WRAPPED_S", "duration", "interval", "same_clock"]

# 2**53 µs (~285 years): above it a duration is an integer that wrapped, not a measurement (and
# beyond a float's exact integers).
WRAPPED_S: Final = 2.0**53 / 1e6
# What a duration may exceed the call's own duration so far by: the call's start and LiveKit's
# timestamps are read from different clocks at different moments.
CALL_SLACK_S: Final = 1.0
# How far a timestamp of another process may lie after the moment the agent learned of it before the
# two clocks are said to disagree (NTP keeps machines within milliseconds; a second is a broken clock).
CLOCK_TOLERANCE_S: Final = 0.5
DATA_ERROR_EVENT: Final = EventName.DATA_ERROR


def duration(
    source: str, seconds: object, *, within_s: float | None = None, span: Span | None = None
) -> float | None:
    """``seconds`` as a float when it is a possible duration, else ``None`` (counted and put on
    ``span`` as a data error, see the module docstring). ``source`` is a fixed code (a metric
    label); ``within_s`` the call's duration so far, when known."""
    if seconds is None:
        return None
    try:
        value = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    return _check(source, value, "negative", within_s, span)


def interval(
    source: str, start: float | None, end: float | None, *, within_s: float | None = None,
    span: Span | None = None,
) -> float | None:
    """``end - start`` in seconds when it is a possible duration, else ``None``; an end before the
    start is a clock that went backwards. ``None`` when either end is unknown."""
    if start is None or end is None:
        return None
    return _check(source, float(end) - float(start), "clock_backwards", within_s, span)


def same_clock(
    source: str, remote_at: float | None, seen_at: float, *, tolerance_s: float = CLOCK_TOLERANCE_S,
    span: Span | None = None,
) -> bool:
    """Whether a timestamp from another process's clock (``remote_at``: LiveKit's, the caller's) can be
    read on the agent's: it may not be later than the moment the agent learned of it (``seen_at``),
    give or take ``tolerance_s``. When it is, the clocks disagree: a data error (reason
    ``clock_disagrees``, the value the seconds it is ahead) and False. None is no error (True)."""
    if remote_at is None:
        return True
    ahead = float(remote_at) - seen_at
    if math.isfinite(ahead) and ahead <= tolerance_s:
        return True
    _reject(source, "clock_disagrees", ahead, span, tolerance_s)
    return False


def _check(source: str, value: float, below_zero: str, within_s: float | None, span: Span | None) -> float | None:
    limit: float | None = None
    if not math.isfinite(value):
        reason = "not_finite"
    elif value > WRAPPED_S:
        reason = "wrapped"
    elif value < 0:
        reason = below_zero
    elif within_s is not None and math.isfinite(within_s) and value > within_s + CALL_SLACK_S:
        reason, limit = "exceeds_call", within_s
    else:
        return value
    _reject(source, reason, value, span, limit)
    return None


def _reject(source: str, reason: str, value: float, span: Span | None, limit: float | None) -> None:
    target = span if span is not None else trace.get_current_span()
    attrs: dict[str, str | float] = {
        Attr.DATA_ERROR_SOURCE: source, Attr.DATA_ERROR_REASON: reason, Attr.DATA_ERROR_VALUE: value,
    }
    if limit is not None:
        attrs[Attr.DATA_ERROR_LIMIT] = round(limit, 3)
    target.add_event(DATA_ERROR_EVENT, attrs)
    with trace.use_span(target, end_on_exit=False):  # an exemplar, when kept, opens this call
        _metrics._data_error(source, reason)
