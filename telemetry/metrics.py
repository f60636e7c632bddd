"""Metric instruments: VoxPulse's own (``semconv.METRICS``) and the ones an application defines.

An application declares its metrics the way ``semconv`` declares VoxPulse's, and gets typed
instruments that are safe to use anywhere::

    from telemetry import metrics
    from telemetry.semconv import Attr, MetricKind, MetricSpec

    BOOKINGS = metrics.Counter(MetricSpec("dental.bookings.created", MetricKind.COUNTER, "{booking}",
                                          "Appointments the bot booked."))
    API_ERRORS = metrics.Counter(MetricSpec("dental.api.errors", MetricKind.COUNTER, "{error}",
                                            "Clinic API errors.", (Attr.HTTP_STATUS,)))
    BOOKINGS.add(1)
    API_ERRORS.add(1, {Attr.HTTP_STATUS: 503})

Every instrument is a cheap no-op until ``configure()`` ran, records in the current span's context
(so the SDK's trace-based exemplar filter links its points to the call's trace) and never raises
into the caller (errors are contained, counted and logged; see ``telemetry._errors``). Definitions
are checked when made: the naming rule, a unit with a Prometheus translation (``spec.prometheus``
is the series name), attribute keys classified as ``metric_label`` (VoxPulse's in
``semconv.ATTRIBUTES``, or the application's own given as ``labels=``), never a PII key; recording
with an undeclared attribute key is an internal error. ``call_id``, phone numbers and free text are
never metric attributes.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final

from opentelemetry.metrics import MeterProvider
from opentelemetry.util.types import AttributeValue

from telemetry._errors import internal_errors
from telemetry._state import STATE
from telemetry.exceptions import TelemetryConfigError
from telemetry.semconv import (
    ATTRIBUTES,
    METRICS,
    TURN_SEGMENT_OWNERS,
    Attr,
    AttributeSpec,
    Metric,
    MetricKind,
    MetricSpec,
    Stage,
    TurnSegment,
)

__all__ = [
    "Counter",
    "Gauge",
    "Histogram",
    "UpDownCounter",
    "record_time_to_first_chunk",
    "record_time_to_first_word",
    "registered",
    "set_operator_queue",
    "tool_anomaly",
]

Attributes = Mapping[str, AttributeValue]

_METER: Final = "voxpulse"
_labels: dict[str, AttributeSpec] = {a.key: a for a in ATTRIBUTES}
_specs: dict[str, MetricSpec] = {}
# The OTel instruments of each MeterProvider, by metric name. Keyed by the provider itself, weakly:
# an id() key is reused once a shut-down provider is freed, and the next provider at that address
# would then record into the dead one's instruments.
_cache: weakref.WeakKeyDictionary[MeterProvider, dict[str, Any]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def registered() -> tuple[MetricSpec, ...]:
    """Every metric defined in this process: VoxPulse's, then the application's, in definition order."""
    return tuple(_specs.values())


def _register(spec: MetricSpec, labels: Iterable[AttributeSpec]) -> None:
    for label in labels:
        if not label.metric_label or label.pii:
            raise TelemetryConfigError(f"label {label.key}: a metric label must be metric_label=True and not pii")
        known = _labels.get(label.key)
        if known is not None and known != label:
            raise TelemetryConfigError(f"label {label.key} is already defined differently: {known}")
        _labels[label.key] = label
    for key in spec.attributes:
        declared = _labels.get(key)
        if declared is None or not declared.metric_label or declared.pii:
            raise TelemetryConfigError(
                f"metric {spec.name}: attribute {key} is not a declared low-cardinality metric label "
                "(classify it in semconv or pass labels=[AttributeSpec(key, ..., metric_label=True)])"
            )
    known_spec = _specs.get(spec.name)
    if known_spec is not None and known_spec != spec:
        raise TelemetryConfigError(f"metric {spec.name} is already defined differently: {known_spec}")
    _specs[spec.name] = spec


def _instrument(spec: MetricSpec, provider: MeterProvider) -> Any:
    by_name = _cache.get(provider)
    inst = by_name.get(spec.name) if by_name is not None else None
    if inst is not None:
        return inst
    with _cache_lock:  # export threads record too; create each provider's instruments once
        by_name = _cache.get(provider)
        if by_name is None:
            by_name = _cache[provider] = {}
        inst = by_name.get(spec.name)
        if inst is None:
            meter = provider.get_meter(_METER)
            kw: dict[str, Any] = {"unit": spec.unit, "description": spec.description}
            if spec.kind is MetricKind.HISTOGRAM:
                inst = meter.create_histogram(spec.name, explicit_bucket_boundaries_advisory=list(spec.buckets or ()),
                                              **kw)
            elif spec.kind is MetricKind.COUNTER:
                inst = meter.create_counter(spec.name, **kw)
            elif spec.kind is MetricKind.UP_DOWN_COUNTER:
                inst = meter.create_up_down_counter(spec.name, **kw)
            else:
                inst = meter.create_gauge(spec.name, **kw)
            by_name[spec.name] = inst
    return inst


class _Metric:
    """One defined metric; subclasses add the recording method of their kind."""

    KIND: ClassVar[MetricKind]
    __slots__ = ("_allowed", "_guard", "spec")

    def __init__(self, spec: MetricSpec, *, labels: Iterable[AttributeSpec] = ()) -> None:
        if spec.kind is not self.KIND:
            raise TelemetryConfigError(f"metric {spec.name} is a {spec.kind.value}, not a {self.KIND.value}")
        _register(spec, labels)
        self.spec = spec
        self._allowed = frozenset(spec.attributes)
        self._guard = internal_errors(f"metrics.{spec.name}")

    def _target(self, attributes: Attributes | None, provider: MeterProvider | None) -> Any:
        """The OTel instrument to record into, or None while metrics are off."""
        provider = provider if provider is not None else STATE.meter_provider
        if provider is None:
            return None
        if attributes and not self._allowed.issuperset(attributes):
            undeclared = sorted(set(attributes) - self._allowed)
            raise ValueError(f"metric {self.spec.name}: undeclared attribute(s) {undeclared}")
        return _instrument(self.spec, provider)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r})"


class Counter(_Metric):
    """A monotonic counter (``MetricKind.COUNTER``)."""

    KIND = MetricKind.COUNTER
    __slots__ = ()

    def add(self, amount: float = 1, attributes: Attributes | None = None, *,
            meter_provider: MeterProvider | None = None) -> None:
        with self._guard:
            inst = self._target(attributes, meter_provider)
            if inst is not None:
                inst.add(amount, attributes)


class UpDownCounter(_Metric):
    """A counter that also goes down (``MetricKind.UP_DOWN_COUNTER``), e.g. calls in progress."""

    KIND = MetricKind.UP_DOWN_COUNTER
    __slots__ = ()

    def add(self, amount: float, attributes: Attributes | None = None, *,
            meter_provider: MeterProvider | None = None) -> None:
        with self._guard:
            inst = self._target(attributes, meter_provider)
            if inst is not None:
                inst.add(amount, attributes)


class Histogram(_Metric):
    """A distribution with the spec's buckets (``MetricKind.HISTOGRAM``); points get exemplars."""

    KIND = MetricKind.HISTOGRAM
    __slots__ = ()

    def record(self, value: float, attributes: Attributes | None = None, *,
               meter_provider: MeterProvider | None = None) -> None:
        with self._guard:
            inst = self._target(attributes, meter_provider)
            if inst is not None:
                inst.record(value, attributes)


class Gauge(_Metric):
    """The last value set (``MetricKind.GAUGE``)."""

    KIND = MetricKind.GAUGE
    __slots__ = ()

    def set(self, value: float, attributes: Attributes | None = None, *,
            meter_provider: MeterProvider | None = None) -> None:
        with self._guard:
            inst = self._target(attributes, meter_provider)
            if inst is not None:
                inst.set(value, attributes)


_KINDS: Final[dict[MetricKind, type[_Metric]]] = {
    cls.KIND: cls for cls in (Counter, UpDownCounter, Histogram, Gauge)
}
_OWN: Final[dict[str, Any]] = {spec.name: _KINDS[spec.kind](spec) for spec in METRICS}

# VoxPulse's own instruments (typed; telemetry.calls and the export pipeline record them).
_TTFW: Final[Histogram] = _OWN[Metric.TTFW]
_TURN_SEGMENT: Final[Histogram] = _OWN[Metric.TURN_SEGMENT]
_GREETING_TTFW: Final[Histogram] = _OWN[Metric.GREETING_TTFW]
_GREETING_SEGMENT: Final[Histogram] = _OWN[Metric.GREETING_SEGMENT]
_INTERRUPTIONS: Final[Counter] = _OWN[Metric.INTERRUPTIONS]
_YIELD_TIME: Final[Histogram] = _OWN[Metric.YIELD_TIME]
_BUDGET_BREACHES: Final[Counter] = _OWN[Metric.BUDGET_BREACHES]
_STAGE_TTFC: Final[Histogram] = _OWN[Metric.STAGE_TTFC]
_CALL_DURATION: Final[Histogram] = _OWN[Metric.CALL_DURATION]
_CALL_COST: Final[Histogram] = _OWN[Metric.CALL_COST]
_API_SPEND: Final[Counter] = _OWN[Metric.API_SPEND]
_CALLS_ACTIVE: Final[UpDownCounter] = _OWN[Metric.CALLS_ACTIVE]
_OPERATOR_QUEUE: Final[Gauge] = _OWN[Metric.OPERATOR_QUEUE]
_CALLS: Final[Counter] = _OWN[Metric.CALLS]
_TRANSFERS: Final[Counter] = _OWN[Metric.TRANSFERS]
_TOOL_ANOMALIES: Final[Counter] = _OWN[Metric.TOOL_ANOMALIES]
_EXPORT_DROPPED: Final[Counter] = _OWN[Metric.EXPORT_DROPPED]
_INTERNAL_ERRORS: Final[Counter] = _OWN[Metric.INTERNAL_ERRORS]
_CALLLOG_RECORDS: Final[Counter] = _OWN[Metric.CALLLOG_RECORDS]
_DATA_ERRORS: Final[Counter] = _OWN[Metric.DATA_ERRORS]


def record_time_to_first_word(seconds: float) -> None:
    """End of caller speech to the first byte of agent audio, for one turn."""
    _TTFW.record(seconds, {Attr.AGENT_VERSION: STATE.service_version} if STATE.service_version else None)


def _turn_segment(segment: TurnSegment, seconds: float) -> None:
    """One part of a turn's time to first word (telemetry.livekit._anatomy)."""
    _TURN_SEGMENT.record(seconds, {Attr.TURN_SEGMENT: segment.value,
                                   Attr.TURN_SEGMENT_OWNER: TURN_SEGMENT_OWNERS[segment][0]})


def _greeting(seconds: float, segments: Iterable[tuple[TurnSegment, float]]) -> None:
    """The greeting's time to first word and its parts (telemetry.livekit._greeting)."""
    _GREETING_TTFW.record(seconds, {Attr.AGENT_VERSION: STATE.service_version} if STATE.service_version else None)
    for segment, part in segments:
        _GREETING_SEGMENT.record(part, {Attr.TURN_SEGMENT: segment.value,
                                        Attr.TURN_SEGMENT_OWNER: TURN_SEGMENT_OWNERS[segment][0]})


def _interruption(direction: str, kind: str) -> None:
    """One interruption (telemetry.livekit._interruptions)."""
    _INTERRUPTIONS.add(1, {Attr.INTERRUPTION_DIRECTION: direction, Attr.INTERRUPTION_KIND: kind})


def _budget_breach(budget: str) -> None:
    """A latency budget exceeded (telemetry.livekit._budgets)."""
    _BUDGET_BREACHES.add(1, {Attr.BUDGET: budget})


def _interruption_yield(seconds: float) -> None:
    """How fast the agent stopped talking after a barge-in."""
    _YIELD_TIME.record(seconds)


def record_time_to_first_chunk(
    stage: Stage | str, seconds: float, *, provider: str | None = None, model: str | None = None
) -> None:
    """Time to first token (LLM), first audio byte (TTS) or first transcript (STT)."""
    if STATE.meter_provider is None:
        return
    with _STAGE_TTFC._guard:  # an unknown stage is contained like any recording error
        attrs: dict[str, AttributeValue] = {Attr.STAGE: Stage(stage).value}
        if provider:
            attrs[Attr.PROVIDER] = provider
        if model:
            attrs[Attr.MODEL] = model
        _STAGE_TTFC.record(seconds, attrs)


def set_operator_queue(length: int) -> None:
    """Callers waiting for a human operator now (the application knows its queue)."""
    _OPERATOR_QUEUE.set(length)


def tool_anomaly(tool_name: str, reason: str) -> None:
    """A tool call that looks anomalous (prompt-injection suspicion). ``reason`` is a short code and
    ``tool_name`` one of the agent's tools, or ``semconv.OTHER`` for a name the model made up (the
    real name belongs on the span event, not in a metric label)."""
    _TOOL_ANOMALIES.add(1, {Attr.TOOL_NAME: str(tool_name)[:64], Attr.TOOL_ANOMALY: str(reason)[:64]})


def _export_dropped(count: int, *, signal: str = "traces") -> None:
    """Telemetry not delivered (queue full, exporter failing, left at a shutdown deadline)."""
    _EXPORT_DROPPED.add(count, {Attr.EXPORT_SIGNAL: signal})


def _record_internal_error(site: str) -> None:
    """One contained internal error (telemetry._errors); recorded without a guard of its own, so a
    failure here cannot loop back into the error handling."""
    provider = STATE.meter_provider
    if provider is not None:
        _instrument(_INTERNAL_ERRORS.spec, provider).add(1, {Attr.INTERNAL_ERROR_SITE: site})


def _calllog_records(count: int, *, result: str, buffer: str, meter_provider: MeterProvider | None = None) -> None:
    """Call-history records written, buffered, flushed or dropped (telemetry.history)."""
    if count:
        _CALLLOG_RECORDS.add(count, {Attr.CALLLOG_RESULT: result, Attr.CALLLOG_BUFFER: buffer},
                             meter_provider=meter_provider)


def _data_error(source: str, reason: str) -> None:
    """One impossible duration kept out of the histograms (telemetry._quality)."""
    _DATA_ERRORS.add(1, {Attr.DATA_ERROR_SOURCE: source, Attr.DATA_ERROR_REASON: reason})
