"""The agent's half of tail sampling: exemplars only where the collectors keep the trace.

The processing collectors (otel-collector/processing.yaml) keep a call's trace when it has an
error, a turn slower than the time-to-first-word objective, a transfer, a tool anomaly, the
exemplar mark :data:`~telemetry.semconv.Attr.TRACE_KEEP`, or when its trace id falls in the
configured share (``VOXPULSE_TRACE_SAMPLING_PERCENT``). An SDK histogram's exemplar (time to first
word, time to first chunk, call duration and cost; counters too) names the trace of the span that
was current when the value was recorded. :class:`KeptTraceExemplarFilter` lets a measurement become
an exemplar only when

* the trace's id is in the share, computed exactly as the collectors' ``probabilistic`` policy
  does (:func:`in_share`: FNV-1a over the salt and the 16 id bytes, against the same threshold), or
* the current span already shows a rule that keeps the trace (error status, a slow turn, a
  transfer, a tool anomaly),

and then marks the call's root span (still open: the call is in progress) with
``voxpulse.trace.keep = true``, which the collectors' ``exemplar`` policy keeps. The mark is what
makes the guarantee hold whatever the configuration: if the agent's share and the collectors'
disagree, or a rule differs, the marked trace is still kept (the cost is a few more traces, never a
dead exemplar link). A measurement with no open call and no recording span to mark is not an
exemplar. Since the chosen traces are ones the rules keep anyway, the mark costs nothing when the
agent and the collectors are configured alike.

    from telemetry.sampling import in_share
    in_share(0x4bf92f3577b34da6a3ce929d0e0e4736, 10.0)   # the collectors' decision for the share
"""

from __future__ import annotations

import functools
import threading
from fractions import Fraction
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics._internal.exemplar import ExemplarFilter
from opentelemetry.trace import Span, StatusCode
from opentelemetry.util.types import Attributes

from telemetry.semconv import TTFW_OBJECTIVE_S, Attr, CallOutcome

__all__ = [
    "HASH_SALT",
    "KeptTraceExemplarFilter",
    "in_share",
    "keeps_span",
    "share_threshold",
]

HASH_SALT: Final = "voxpulse"
"""hash_salt of the collectors' probabilistic policy (processing.yaml; a test keeps them equal)."""

_FNV_OFFSET: Final = 0xCBF29CE484222325
_FNV_PRIME: Final = 0x100000001B3
_MASK64: Final = (1 << 64) - 1
_MAX_UINT64: Final = (1 << 64) - 1


@functools.lru_cache(maxsize=16)
def share_threshold(percent: float) -> int:
    """The collectors' threshold for ``sampling_percentage`` = ``percent``.

    Go computes ``uint64(big.Float(MaxUint64, 64 bits) * big.NewFloat(percent / 100))``: the
    product rounded to a 64-bit mantissa (nearest even), then truncated. Reproduced exactly.
    """
    ratio = float(percent) / 100.0  # the same float64 division as the processor
    if ratio <= 0:
        return 0
    if ratio >= 1:
        return _MAX_UINT64
    exact = Fraction(_MAX_UINT64) * Fraction(ratio)
    exponent = exact.numerator.bit_length() - exact.denominator.bit_length()
    if Fraction(2) ** exponent > exact:
        exponent -= 1  # now 2**exponent <= exact < 2**(exponent + 1)
    unit = Fraction(2) ** (exponent - 63)  # the value of the 64th significant bit
    rounded = round(exact / unit) * unit  # Fraction.__round__: half to even, as big.ToNearestEven
    return min(int(rounded), _MAX_UINT64)  # int() truncates toward zero, as big.Float.Uint64


def _fnv1a(data: bytes, h: int = _FNV_OFFSET) -> int:
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h


_SALTED: Final = _fnv1a(HASH_SALT.encode())


def in_share(trace_id: int, percent: float) -> bool:
    """True when the collectors' ``probabilistic`` policy samples this trace id."""
    if percent >= 100:
        return True
    return _fnv1a(trace_id.to_bytes(16, "big"), _SALTED) <= share_threshold(percent)


def keeps_span(span: object, *, ttfw_objective_s: float = TTFW_OBJECTIVE_S) -> bool:
    """True when this span alone makes the collectors keep its trace (the rules other than the share)."""
    status = getattr(span, "status", None)
    if status is not None and status.status_code is StatusCode.ERROR:
        return True
    attrs = getattr(span, "attributes", None) or {}
    if attrs.get(Attr.TURN_SLOW) is True:  # marked by the configured threshold (VOXPULSE_TTFW_OBJECTIVE_S)
        return True
    ttfw = attrs.get(Attr.TURN_TTFW)
    if isinstance(ttfw, int | float) and ttfw >= ttfw_objective_s:
        return True
    return attrs.get(Attr.CALL_OUTCOME) == CallOutcome.TRANSFERRED.value or Attr.TOOL_ANOMALY in attrs


class _OpenCall:
    __slots__ = ("marked", "root")

    def __init__(self, root: Span) -> None:
        self.root = root
        self.marked = False


# Calls in progress in this process, by trace id: the root span that an exemplar marks.
_open: dict[int, _OpenCall] = {}
_lock = threading.Lock()


def _call_started(root: Span) -> None:
    """A call's root span started (telemetry.calls); its trace can now take exemplars."""
    ctx = root.get_span_context()
    if ctx.is_valid and root.is_recording():
        with _lock:
            _open[ctx.trace_id] = _OpenCall(root)


def _call_ended(root: Span) -> None:
    """The call's root span ended: no more marks, so no more exemplars into this trace."""
    with _lock:
        _open.pop(root.get_span_context().trace_id, None)


class KeptTraceExemplarFilter(ExemplarFilter):
    """Trace-based exemplar filter that admits only traces the collectors will keep (see module doc)."""

    def __init__(self, percent: float = 100.0, *, ttfw_objective_s: float = TTFW_OBJECTIVE_S) -> None:
        self.percent = float(percent)
        self.ttfw_objective_s = ttfw_objective_s

    def should_sample(self, value: float, time_unix_nano: int, attributes: Attributes, context: Context) -> bool:
        span = trace.get_current_span(context)
        ctx = span.get_span_context()
        if not ctx.is_valid or not ctx.trace_flags.sampled:
            return False
        call = _open.get(ctx.trace_id)
        if call is not None and call.marked:
            return True
        if not (in_share(ctx.trace_id, self.percent) or keeps_span(span, ttfw_objective_s=self.ttfw_objective_s)):
            return False
        target = call.root if call is not None else span
        if not target.is_recording():
            return False  # nothing left to mark: the trace may be dropped, so no exemplar
        target.set_attribute(Attr.TRACE_KEEP, True)
        # Read it back: a span that ended in another thread meanwhile ignored the attribute.
        marks = getattr(target, "attributes", None) or {}
        if marks.get(Attr.TRACE_KEEP) is not True:
            return False
        if call is not None:
            call.marked = True
        return True
