"""Metric instruments (names from ``semconv.METRICS``) and the helpers that record them.

Every helper is a cheap no-op until ``configure()`` ran. Histograms record in the current span's
context, so the SDK's trace-based exemplar filter links their points to the call's trace.
Attributes are only the low-cardinality keys listed in ``semconv``; ``call_id``, phone numbers and
free text are never metric attributes.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Final

from opentelemetry.metrics import Meter, MeterProvider

from telemetry._errors import internal_errors
from telemetry._state import STATE
from telemetry.semconv import METRICS, Attr, MetricKind, Stage

__all__ = [
    "fitting_booked",
    "order_created",
    "record_time_to_first_chunk",
    "record_time_to_first_word",
    "set_operator_queue",
    "store_api_error",
    "tool_anomaly",
]

_SPECS: Final = {m.name: m for m in METRICS}


class Instruments:
    """All instruments of one MeterProvider, created once."""

    def __init__(self, meter: Meter) -> None:
        self._by_name: dict[str, Any] = {}
        for spec in METRICS:
            if spec.kind is MetricKind.HISTOGRAM:
                inst: Any = meter.create_histogram(
                    spec.name, unit=spec.unit, description=spec.description,
                    explicit_bucket_boundaries_advisory=list(spec.buckets or ()),
                )
            elif spec.kind is MetricKind.COUNTER:
                inst = meter.create_counter(spec.name, unit=spec.unit, description=spec.description)
            elif spec.kind is MetricKind.UP_DOWN_COUNTER:
                inst = meter.create_up_down_counter(spec.name, unit=spec.unit, description=spec.description)
            else:
                inst = meter.create_gauge(spec.name, unit=spec.unit, description=spec.description)
            self._by_name[spec.name] = inst
        self.ttfw = self._by_name["voice.turn.time_to_first_word"]
        self.ttfc = self._by_name["voice.stage.time_to_first_chunk"]
        self.call_duration = self._by_name["voice.call.duration"]
        self.call_cost = self._by_name["voice.call.cost"]
        self.api_spend = self._by_name["voice.api.spend"]
        self.calls_active = self._by_name["voice.calls.active"]
        self.operator_queue = self._by_name["voice.operator.queue_length"]
        self.calls = self._by_name["voice.calls"]
        self.transfers = self._by_name["voice.transfers"]
        self.orders = self._by_name["voice.orders.created"]
        self.fittings = self._by_name["voice.fittings.booked"]
        self.store_errors = self._by_name["voice.store_api.errors"]
        self.tool_anomalies = self._by_name["voice.tool.anomalies"]
        self.export_dropped = self._by_name["voxpulse.export.dropped"]
        self.calllog_records = self._by_name["voxpulse.calllog.records"]


# Keyed by the provider itself, weakly: an id() key is reused once a shut-down provider is freed,
# and the next provider at that address would then record into the dead one's instruments.
_cache: weakref.WeakKeyDictionary[MeterProvider, Instruments] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def instruments_for(provider: MeterProvider) -> Instruments:
    inst = _cache.get(provider)
    if inst is None:
        with _cache_lock:  # export threads record too; create each provider's instruments once
            inst = _cache.get(provider)
            if inst is None:
                inst = _cache[provider] = Instruments(provider.get_meter("voxpulse"))
    return inst


def current() -> Instruments | None:
    provider = STATE.meter_provider
    return instruments_for(provider) if provider is not None else None


def _version_attrs() -> dict[str, str]:
    return {Attr.AGENT_VERSION: STATE.service_version} if STATE.service_version else {}


def record_time_to_first_word(seconds: float) -> None:
    """End of caller speech to the first byte of agent audio, for one turn."""
    inst = current()
    if inst is not None:
        with internal_errors("metrics.ttfw"):
            inst.ttfw.record(seconds, _version_attrs())


def record_time_to_first_chunk(
    stage: Stage | str, seconds: float, *, provider: str | None = None, model: str | None = None
) -> None:
    """Time to first token (LLM), first audio byte (TTS) or first transcript (STT)."""
    inst = current()
    if inst is None:
        return
    attrs: dict[str, str] = {Attr.STAGE: Stage(stage).value}
    if provider:
        attrs[Attr.PROVIDER] = provider
    if model:
        attrs[Attr.MODEL] = model
    with internal_errors("metrics.ttfc"):
        inst.ttfc.record(seconds, attrs)


def order_created() -> None:
    inst = current()
    if inst is not None:
        with internal_errors("metrics.orders"):
            inst.orders.add(1)


def fitting_booked() -> None:
    inst = current()
    if inst is not None:
        with internal_errors("metrics.fittings"):
            inst.fittings.add(1)


def store_api_error(status_code: int) -> None:
    """A failed store API request; ``status_code`` 0 means no response (timeout, refused)."""
    inst = current()
    if inst is not None:
        with internal_errors("metrics.store_api_error"):
            inst.store_errors.add(1, {Attr.HTTP_STATUS: int(status_code)})


def set_operator_queue(length: int) -> None:
    inst = current()
    if inst is not None:
        with internal_errors("metrics.operator_queue"):
            inst.operator_queue.set(length)


def tool_anomaly(tool_name: str, reason: str) -> None:
    """A tool call that looks anomalous (prompt-injection suspicion). ``reason`` is a short code."""
    inst = current()
    if inst is not None:
        with internal_errors("metrics.tool_anomaly"):
            inst.tool_anomalies.add(1, {Attr.TOOL_NAME: str(tool_name)[:64], Attr.TOOL_ANOMALY: str(reason)[:64]})


def export_dropped(count: int, *, signal: str = "traces") -> None:
    """Telemetry not delivered (queue full, exporter failing, left at a shutdown deadline)."""
    inst = current()
    if inst is not None:
        with internal_errors("metrics.export_dropped"):
            inst.export_dropped.add(count, {Attr.EXPORT_SIGNAL: signal})


def calllog_records(count: int, *, result: str, buffer: str) -> None:
    """Call-history records written, buffered, flushed or dropped (telemetry.history uses it)."""
    inst = current()
    if inst is not None and count:
        with internal_errors("metrics.calllog_records"):
            inst.calllog_records.add(count, {Attr.CALLLOG_RESULT: result, Attr.CALLLOG_BUFFER: buffer})
