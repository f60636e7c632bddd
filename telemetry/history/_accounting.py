"""Where records go (:class:`Mode`), and what happened to them: :class:`LoggerStats` and the
``voxpulse.calllog.records`` counter, always moved together."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from opentelemetry.metrics import MeterProvider

from telemetry import metrics as _metrics
from telemetry._errors import internal_errors

__all__ = ["Accounting", "LoggerStats", "Mode"]


class Mode(StrEnum):
    """Where records go now."""

    POSTGRES = "postgres"
    REDIS = "redis"
    MEMORY = "memory"


@dataclass(slots=True)
class LoggerStats:
    """Counts since start (the same numbers as the ``voxpulse.calllog.records`` counter)."""

    enqueued: int = 0
    written: int = 0  # rows that reached PostgreSQL (directly or from a buffer)
    buffered_redis: int = 0
    buffered_memory: int = 0  # records held in memory while both stores were down
    flushed_redis: int = 0
    flushed_memory: int = 0
    dropped: int = 0  # memory bound exceeded, logger closed, or lost at shutdown
    rejected: int = 0  # invalid records (reason logged)


class Accounting:
    """The logger's stats and its counter (``meter_provider``: the global one when None)."""

    __slots__ = ("_meter_provider", "stats")

    def __init__(self, meter_provider: MeterProvider | None) -> None:
        self.stats = LoggerStats()
        self._meter_provider = meter_provider

    @internal_errors("history.count")
    def count(self, n: int, result: str, buffer: Mode) -> None:
        """Adds ``n`` records with ``result`` (written, buffered, flushed, dropped, rejected) to the counter."""
        if n > 0:
            _metrics._calllog_records(n, result=result, buffer=buffer.value, meter_provider=self._meter_provider)
