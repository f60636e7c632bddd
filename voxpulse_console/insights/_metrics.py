"""The receiver's metrics (``telemetry.semconv``: ``voxpulse.insights.*``), without per-call labels.

* ``voxpulse.insights.verdicts{judge, verdict}``, ``voxpulse.insights.outcomes{outcome}``,
  ``voxpulse.insights.tags{tag}``: what :func:`._store.save_events` found new, so a repeated upload
  of the same call counts nothing;
* ``voxpulse.insights.uploads{kind, http.response.status_code}``: every request answered.

A judge's, verdict's, outcome's or tag's name is the agent's code, not the caller's words, but nothing
stops an agent from putting anything there: :class:`LabelCap` keeps each label to short identifiers
and to at most :data:`MAX_VALUES` distinct values per process, the rest folded into ``_OTHER``.
Recorded through ``telemetry.metrics`` into the process's meter provider (``telemetry.configure``: OTLP
to the collector, like the agents' own metrics), or the one given (tests).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Final

from opentelemetry.metrics import MeterProvider

from telemetry import metrics
from telemetry.semconv import OTHER, Attr, Metric, metric_spec
from voxpulse_console.insights._store import NewEvents

__all__ = ["MAX_VALUES", "InsightsMetrics", "LabelCap"]

#: distinct values each label may take in one receiver process before the rest fold into ``_OTHER``
MAX_VALUES: Final = 50
_VALUE_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")

VERDICTS: Final = metrics.Counter(metric_spec(Metric.INSIGHTS_VERDICTS))
OUTCOMES: Final = metrics.Counter(metric_spec(Metric.INSIGHTS_OUTCOMES))
TAGS: Final = metrics.Counter(metric_spec(Metric.INSIGHTS_TAGS))
UPLOADS: Final = metrics.Counter(metric_spec(Metric.INSIGHTS_UPLOADS))


class LabelCap:
    """One label's values: a short identifier (letters, digits, ``_.:/-``, at most 64 characters) is
    kept while fewer than ``limit`` distinct values have been seen, or when it was seen before; any
    other value is ``_OTHER``. Thread-safe."""

    def __init__(self, limit: int = MAX_VALUES) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if not _VALUE_RE.match(value) or value == OTHER:
            return OTHER
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(value)
            return value


class InsightsMetrics:
    """The receiver's counters, each label behind its own :class:`LabelCap`."""

    def __init__(self, meter_provider: MeterProvider | None = None, *, limit: int = MAX_VALUES) -> None:
        self._provider = meter_provider
        self.judge, self.verdict = LabelCap(limit), LabelCap(limit)
        self.outcome, self.tag = LabelCap(limit), LabelCap(limit)

    def stored(self, new: NewEvents) -> None:
        """Count what a logs upload stored that was not stored before."""
        for judge, verdict in new.verdicts:
            VERDICTS.add(1, {Attr.INSIGHTS_JUDGE: self.judge(judge), Attr.INSIGHTS_VERDICT: self.verdict(verdict)},
                         meter_provider=self._provider)
        self._count(OUTCOMES, Attr.INSIGHTS_OUTCOME, map(self.outcome, new.outcomes))
        self._count(TAGS, Attr.INSIGHTS_TAG, map(self.tag, new.tags))

    def _count(self, counter: metrics.Counter, key: str, values: Iterable[str]) -> None:
        for value in values:
            counter.add(1, {key: value}, meter_provider=self._provider)

    def answered(self, kind: str, status: int) -> None:
        """Count one upload request (``kind``: traces, metrics, logs or recordings) by its status."""
        UPLOADS.add(1, {Attr.INSIGHTS_UPLOAD_KIND: kind, Attr.HTTP_STATUS: status}, meter_provider=self._provider)
