"""Span processors and exporter wrappers installed by configure().

* :class:`CallIdProcessor` stamps ``call_id`` on every span started inside a call scope (or under
  a parent that has one, or with ``call_id`` baggage from another process, or in a trace whose
  call is known: ``telemetry._callmap``) and maps LiveKit's stage spans to ``voice.stage``.
* :class:`QueueingSpanProcessor` is the SDK's BatchSpanProcessor that counts, instead of logging per
  span, the spans it drops when its queue is full, and holds the spans of a trace that will become
  a call (a LiveKit job) until the call's id is known. Its sizes and delays: explicit arguments,
  else ``OTEL_BSP_*``, else our defaults (``_env``).
* :class:`ChangedPointsExporter` sends only the metric points that changed, so exemplars survive.
* :class:`SafeExporter` redacts every span before the real exporter sees it (on the export thread,
  off the event loop; a span of values it already left unchanged goes through as it is:
  :class:`KnownClean`), completes ``call_id`` and ``gen_ai.conversation.id`` from the call map,
  counts spans it could not deliver, and logs failure and recovery once each.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import replace
from itertools import filterfalse
from types import MappingProxyType
from typing import Any, Final

from opentelemetry import baggage, context, trace
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status
from opentelemetry.util.types import AttributeValue

from telemetry import _env
from telemetry import metrics as _metrics
from telemetry._callmap import CALLS
from telemetry.calls import _current_call_id
from telemetry.exceptions import TelemetryConfigError
from telemetry.redaction import Redactor
from telemetry.semconv import LIVEKIT_STAGE_SPANS, Attr

__all__ = [
    "CallIdProcessor", "ChangedPointsExporter", "KnownClean", "QueueingSpanProcessor", "SafeExporter",
    "add_start_hook", "redact_span", "stamp",
]

_logger = logging.getLogger("voxpulse.export")
_STAGE_BY_SPAN = {name: stage.value for name, stage in LIVEKIT_STAGE_SPANS.items()}
_NO_ATTRIBUTES: Final[Mapping[str, AttributeValue]] = MappingProxyType({})


def _attribute_dict(span: object) -> Mapping[str, AttributeValue]:
    """A span's attributes, read-only, for the hot path (every span start and end, every export).

    ``span.attributes`` of an SDK span builds a ``MappingProxy`` over the SDK's ``BoundedAttributes``
    on every read, whose ``in``, ``get`` and ``items`` are Python-level ``Mapping`` methods: such
    reads were about a tenth of a decorated span's cost on the calling thread, and most of the
    redaction's on the export thread. The SDK keeps the values in a plain dict
    (``BoundedAttributes._dict``), read here directly; any other span (a ``NonRecordingSpan``, a
    ``ReadableSpan`` built from a dict, a later SDK that moved the dict) is read through its public
    ``attributes``. Callers never write to what this returns."""
    raw = getattr(span, "_attributes", None)
    inner = getattr(raw, "_dict", raw)
    if type(inner) is dict:
        return inner
    public = getattr(span, "attributes", None)
    return public if public else _NO_ATTRIBUTES


def _log_outside_call(message: str, *args: object) -> None:
    """A pipeline warning is about the process, not about the call whose span happened to trigger
    it: log it with an empty context and call_id None so it carries no ids of that call."""
    token = context.attach(context.Context())
    try:
        _logger.warning(message, *args, extra={"call_id": None})
    finally:
        context.detach(token)


StartHook = Callable[[Span, "context.Context | None"], None]
_START_HOOKS: list[StartHook] = []


def add_start_hook(hook: StartHook) -> None:
    """Runs ``hook(span, parent_context)`` on every starting span, before call_id is stamped
    (the LiveKit integration nests LiveKit's turn spans and marks job traces with it). A hook
    must be cheap and must not raise."""
    if hook not in _START_HOOKS:
        _START_HOOKS.append(hook)


def stamp(span: Span, parent_context: context.Context | None) -> None:
    """Puts call_id (and voice.stage on LiveKit's stage spans) on a starting span."""
    for hook in _START_HOOKS:
        hook(span, parent_context)
    attrs = _attribute_dict(span)  # one read: set_attribute below does not change the keys looked up
    call_id: str | None = None
    if Attr.CALL_ID not in attrs:
        call_id = _current_call_id()
        if call_id is None:
            value = _attribute_dict(trace.get_current_span(parent_context)).get(Attr.CALL_ID)
            call_id = value if isinstance(value, str) else None
            if call_id is None and parent_context is not None:
                carried = baggage.get_baggage("call_id", parent_context)
                call_id = carried if isinstance(carried, str) else None
            if call_id is None:
                call_id = CALLS.call_id(span.context.trace_id)
        if call_id is not None:
            span.set_attribute(Attr.CALL_ID, call_id)
    else:
        value = attrs[Attr.CALL_ID]
        call_id = value if isinstance(value, str) else None
    # one conversation id per trace: LiveKit stamps the room's id on its spans, ours is the call_id
    if call_id is not None and Attr.CONVERSATION_ID in attrs:
        span.set_attribute(Attr.CONVERSATION_ID, call_id)
    stage = _STAGE_BY_SPAN.get(span.name)
    if stage is not None:
        span.set_attribute(Attr.STAGE, stage)


class CallIdProcessor(SpanProcessor):
    """:func:`stamp` as a processor of its own (tests, custom pipelines)."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        stamp(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# A job's spans wait at most this long for their call's id (a caller that never joins), and at
# most this many spans wait in all; beyond either they are exported without it.
HOLD_MAX_S = 120.0
HOLD_MAX_SPANS = 2048


class QueueingSpanProcessor(BatchSpanProcessor):
    """BatchSpanProcessor that stamps call_id on start (one processor on the hot path, not two),
    counts queue-full drops (one log line when the queue fills and one when it has drained below
    half, not per span nor per exported batch), and holds the spans of an expected call's trace
    (``telemetry._callmap``) that end before the call's id is known."""

    def __init__(self, exporter: SpanExporter, *, max_queue_size: int | None = None,
                 schedule_delay_ms: float | None = None, max_export_batch_size: int | None = None,
                 export_timeout_ms: float | None = None) -> None:
        max_queue_size = int(_env.number(_env.OTEL_BSP_MAX_QUEUE_SIZE, max_queue_size, minimum=1))
        batch = int(_env.number(_env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, max_export_batch_size, minimum=1))
        if batch > max_queue_size:
            raise TelemetryConfigError(
                f"span export batch size {batch} exceeds the queue size {max_queue_size} "
                f"({_env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE.name} / {_env.OTEL_BSP_MAX_QUEUE_SIZE.name})"
            )
        super().__init__(
            exporter, max_queue_size=max_queue_size,
            schedule_delay_millis=_env.number(_env.OTEL_BSP_SCHEDULE_DELAY, schedule_delay_ms, minimum=1),
            max_export_batch_size=batch,
            export_timeout_millis=_env.number(_env.OTEL_BSP_EXPORT_TIMEOUT, export_timeout_ms, minimum=1),
        )
        self.dropped = 0
        self._dropping = False
        self._queue_limit = max_queue_size
        inner = getattr(self, "_batch_processor", None)
        self._queue: Sized = getattr(inner, "_queue", ())  # the SDK's deque (private; () if it moves)
        self._held: dict[int, list[ReadableSpan]] = {}
        self._held_count = 0
        self._held_lock = threading.Lock()

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        stamp(span, parent_context)

    @property
    def pending(self) -> int:
        """Spans waiting in the queue (not yet handed to the exporter)."""
        return len(self._queue)

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context or not span.context.trace_flags.sampled:
            return
        if self._held:
            self._release(force=False)
        if Attr.CALL_ID not in _attribute_dict(span) and self._hold(span):
            return
        self._enqueue(span)

    def _hold(self, span: ReadableSpan) -> bool:
        trace_id = span.context.trace_id
        since = CALLS.expected_since(trace_id)
        if since is None or time.time() - since > HOLD_MAX_S:
            return False
        with self._held_lock:
            if self._held_count >= HOLD_MAX_SPANS:
                return False
            self._held.setdefault(trace_id, []).append(span)
            self._held_count += 1
        return True

    def _release(self, *, force: bool) -> None:
        """Queues the held spans whose call is now known (or that waited too long; all with force)."""
        ready: list[ReadableSpan] = []
        now = time.time()
        with self._held_lock:
            for trace_id in list(self._held):
                since = CALLS.expected_since(trace_id)
                if force or since is None or now - since > HOLD_MAX_S:
                    spans = self._held.pop(trace_id)
                    self._held_count -= len(spans)
                    ready.extend(spans)
                    if since is not None and not force:
                        CALLS.forget_expected(trace_id)
        for span in ready:
            self._enqueue(span)

    def export_ready(self) -> None:
        """Exports, on the calling thread, what is queued and the held spans whose call is now known
        (those still waiting for it stay held): what the export thread sends next, without
        waiting for it. ``telemetry.testing`` reads its in-memory exporter after this."""
        self._release(force=False)
        super().force_flush()

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        self._release(force=True)
        return super().force_flush(timeout_millis) if timeout_millis is not None else super().force_flush()

    def shutdown(self) -> None:
        self._release(force=True)
        super().shutdown()  # type: ignore[no-untyped-call]

    def _enqueue(self, span: ReadableSpan) -> None:
        if len(self._queue) >= self._queue_limit:
            self.dropped += 1
            _metrics._export_dropped(1)
            if not self._dropping:
                self._dropping = True
                _log_outside_call("span queue full (%d); dropping spans until the exporter catches up",
                                self._queue_limit)
            return
        if self._dropping and len(self._queue) <= self._queue_limit // 2:
            # hysteresis: while the exporter is failing or slow it frees one batch at a time and the
            # queue refills at once; "full"/"room again" must not alternate for every batch
            self._dropping = False
            _log_outside_call("span queue has room again; %d spans dropped so far", self.dropped)
        super().on_end(span)


def _completed(attributes: dict[str, AttributeValue], trace_id: int) -> dict[str, AttributeValue]:
    """call_id (and the one conversation id) from the call map, for a span that started before
    its trace's call was known."""
    call_id = attributes.get(Attr.CALL_ID)
    if call_id is None:
        call_id = CALLS.call_id(trace_id)
        if call_id is None:
            return attributes
        attributes[Attr.CALL_ID] = call_id
    if Attr.CONVERSATION_ID in attributes:
        attributes[Attr.CONVERSATION_ID] = call_id
    return attributes


_KNOWN_MAX: Final = 4096
_NUMBERS: Final = frozenset({int, float, bool})


class KnownClean:
    """What a redactor is known to leave as it is, learnt from the spans it redacted: a string value
    under its key, and the keys whose numbers it keeps. A span made only of those, with no events,
    no status message and nothing to complete from the call map, leaves as it is without running
    the redactor again: most spans repeat the same few values (provider, model, stage, call_id), and
    the redactor's walk cost over ten times the export thread's own work per span.

    Equal values are redacted alike (a ``str`` subclass equal to a known string too: the redactor
    reads the text only); numbers are never changed, only dropped by key. Anything else (a
    sequence) is always walked. Bounded; forgets everything when the redactor's settings change.
    One per exporter (its thread, or a flush's)."""

    __slots__ = ("_content", "_max_length", "number_keys", "strings")

    def __init__(self) -> None:
        self.strings: set[tuple[str, AttributeValue]] = set()
        self.number_keys: set[str] = set()
        self._content: str | None = None
        self._max_length = 0

    def unchanged(self, span: ReadableSpan, attributes: Mapping[str, AttributeValue], redactor: Redactor) -> bool:
        """Whether :func:`redact_span` would return ``span`` itself (``attributes``: its attributes).
        One call per span on the export thread, so the checks are inlined."""
        if redactor.content != self._content or redactor.max_length != self._max_length:
            self._content, self._max_length = redactor.content, redactor.max_length
            self.strings = set()
            self.number_keys = set()
            return False
        strings = self.strings
        try:
            known = strings.issuperset(attributes.items())  # one C call for a span of known strings
        except TypeError:  # an unhashable value (a list)
            return False
        if not known:  # the rest must be numbers under known keys
            numbers = self.number_keys
            for key, value in filterfalse(strings.__contains__, attributes.items()):
                if type(value) not in _NUMBERS or key not in numbers:
                    return False
        events = getattr(span, "_events", None)  # span.events copies the SDK's list under its lock
        if (events if events is not None else span.events) or span.status.description:
            return False
        # what _completed would change: call_id from the call map, the one conversation id
        call_id = attributes.get(Attr.CALL_ID)
        if call_id is None:
            return span.context is None or CALLS.call_id(span.context.trace_id) is None
        return attributes.get(Attr.CONVERSATION_ID, call_id) == call_id

    def learn(self, original: Mapping[str, AttributeValue], redacted: Mapping[str, AttributeValue]) -> None:
        """Records what ``redacted`` (the redactor's output for ``original``) kept unchanged."""
        if len(self.strings) >= _KNOWN_MAX:
            self.strings = set()
        if len(self.number_keys) >= _KNOWN_MAX:
            self.number_keys = set()
        for key, value in original.items():
            if key not in redacted or redacted[key] != value:
                continue
            if type(value) is str:
                self.strings.add((key, value))
            elif type(value) in _NUMBERS:
                self.number_keys.add(key)


def redact_span(span: ReadableSpan, redactor: Redactor, known: KnownClean | None = None) -> ReadableSpan:
    """The span as it may leave the process (the same object when nothing needed redacting).

    ``known``: what this redactor left unchanged before (:class:`KnownClean`), to skip it."""
    original = _attribute_dict(span)
    if known is not None and known.unchanged(span, original, redactor):
        return span
    attributes = redactor.attributes(original)
    if known is not None:
        known.learn(original, attributes)
    if span.context is not None:
        attributes = _completed(attributes, span.context.trace_id)
    if (
        not span.events and not span.status.description and len(attributes) == len(original)
        and all(k in attributes and attributes[k] == v for k, v in original.items())
    ):
        return span
    events = [
        Event(e.name, redactor.attributes(e.attributes), e.timestamp) for e in span.events
    ]
    status = span.status
    if status.description:
        status = Status(status.status_code, redactor.text(status.description))
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class SafeExporter(SpanExporter):
    """Redacts, then exports; never raises; counts and logs (once) what could not be delivered."""

    def __init__(self, inner: SpanExporter, redactor: Redactor) -> None:
        self.inner = inner
        self.redactor = redactor
        self.failed_spans = 0
        self.in_flight = 0  # spans of the batch being exported right now
        self._known = KnownClean()
        self._failing = False
        self._aborted = False
        self._closed = False
        self._lock = threading.Lock()

    def abort(self) -> None:
        """A shutdown deadline passed and what was left is already counted: stop the inner
        exporter (its retry loop ends at once) and count nothing more."""
        self._aborted = True
        self.shutdown()

    def aborted(self) -> bool:
        return self._aborted

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.aborted():
            return SpanExportResult.FAILURE
        self.in_flight = len(spans)
        try:
            redacted = [redact_span(s, self.redactor, self._known) for s in spans]
            result = self.inner.export(redacted)
        except Exception as exc:  # an exporter must not kill the export thread
            _logger.debug("exporter raised", exc_info=exc)
            result = SpanExportResult.FAILURE
        finally:
            self.in_flight = 0
        if self.aborted():  # set meanwhile by another thread: counted as abandoned at the deadline
            return result
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                if self._failing:
                    self._failing = False
                    _logger.warning("span export recovered; %d spans were not delivered while failing",
                                    self.failed_spans)
                return result
            self.failed_spans += len(spans)
            first = not self._failing
            self._failing = True
        _metrics._export_dropped(len(spans))
        if first:
            _logger.warning("span export failing (collector unreachable?); counting undelivered spans "
                            "in voxpulse.export.dropped and logging again on recovery")
        return result

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class ChangedPointsExporter(MetricExporter):
    """Sends a cumulative data point only when it changed since it was last sent (or every
    ``keepalive_s``), so that an export without new measurements does not replace, in the
    collector's Prometheus exporter, the point that carries the exemplars (trace ids).

    Without it the export at shutdown, right after a flush, and every periodic export of an idle
    series, send the same counts with no exemplars, and the collector exposes that point instead:
    the exemplars of a short-lived agent process (one LiveKit job per call) never reached
    Prometheus. The exporter keeps a series until ``metric_expiration`` (30 min), so a keepalive
    well inside that keeps idle series (an active-calls gauge at 0) visible.
    """

    def __init__(self, inner: MetricExporter, *, keepalive_s: float = 300.0) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)
        self.inner = inner
        self.keepalive_s = keepalive_s
        self._sent: dict[tuple[object, ...], tuple[object, float]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def _state(point: object) -> object:
        if isinstance(point, HistogramDataPoint):
            return (point.count, point.sum)
        if isinstance(point, NumberDataPoint):
            return point.value
        return object()  # anything else (exponential histograms): always sent

    def _changed(self, data: MetricsData) -> MetricsData | None:
        now = time.monotonic()
        resources: list[ResourceMetrics] = []
        with self._lock:
            for rm in data.resource_metrics:
                scopes: list[ScopeMetrics] = []
                for sm in rm.scope_metrics:
                    metrics: list[Metric] = []
                    for metric in sm.metrics:
                        temporality = getattr(metric.data, "aggregation_temporality", None)
                        if temporality is not AggregationTemporality.CUMULATIVE:
                            metrics.append(metric)
                            continue
                        kept = []
                        for point in metric.data.data_points:
                            key = (id(rm.resource), sm.scope.name, metric.name,
                                   frozenset((point.attributes or {}).items()))
                            state = self._state(point)
                            last = self._sent.get(key)
                            if last is None or last[0] != state or now - last[1] >= self.keepalive_s:
                                self._sent[key] = (state, now)
                                kept.append(point)
                        if kept:
                            metrics.append(Metric(name=metric.name, description=metric.description,
                                                  unit=metric.unit, data=replace(metric.data, data_points=kept)))  # type: ignore[arg-type]
                    if metrics:
                        scopes.append(ScopeMetrics(scope=sm.scope, metrics=metrics, schema_url=sm.schema_url))
                if scopes:
                    resources.append(ResourceMetrics(resource=rm.resource, scope_metrics=scopes,
                                                     schema_url=rm.schema_url))
        return MetricsData(resource_metrics=resources) if resources else None

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        changed = self._changed(metrics_data)
        if changed is None:
            return MetricExportResult.SUCCESS
        return self.inner.export(changed, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
