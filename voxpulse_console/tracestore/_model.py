"""What a trace store hands back, and the interface every implementation offers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

__all__ = ["CallTrace", "Span", "Trace", "TraceStore", "TraceStoreError"]


class TraceStoreError(RuntimeError):
    """The trace store did not answer, or answered something that is not a trace."""


@dataclass(frozen=True, slots=True)
class Span:
    """One span as the store returns it (ids in lower-case hex, times in ns since the epoch)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    error: bool = False
    events: tuple[tuple[int, str, Mapping[str, Any]], ...] = ()  # (time_ns, name, attributes)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(frozen=True, slots=True)
class Trace:
    """All spans of one trace (in start order)."""

    trace_id: str
    spans: tuple[Span, ...]

    @property
    def root(self) -> Span | None:
        ids = {s.span_id for s in self.spans}
        roots = [s for s in self.spans if s.parent_id is None or s.parent_id not in ids]
        return min(roots, key=lambda s: s.start_ns) if roots else None

    @property
    def call_id(self) -> str | None:
        for s in self.spans:
            value = s.attributes.get("call_id")
            if value:
                return str(value)
        return None


@dataclass(frozen=True, slots=True)
class CallTrace:
    """One call found in a time window: its trace, when it started and how long it took."""

    trace_id: str
    call_id: str | None
    start_ns: int
    duration_ms: float


class TraceStore(Protocol):
    """The trace store's read side. Implementations: Jaeger (native stack) and Tempo (compose)."""

    #: ``"jaeger"`` or ``"tempo"``
    kind: str
    #: base URL of the store's query API
    url: str

    async def trace(self, trace_id: str) -> Trace | None:
        """The trace with this id (32 hex), or None when the store does not have it."""
        ...

    async def traces_for_call(self, call_id: str, *, lookback_s: float = 7 * 86400) -> list[str]:
        """Ids of the traces whose spans carry ``call_id`` (normally exactly one), newest first."""
        ...

    async def calls(
        self, start_s: float, end_s: float, *, min_duration_ms: float | None = None, limit: int = 20
    ) -> list[CallTrace]:
        """Calls (root ``call`` traces) that started in [start_s, end_s]; slowest first when
        ``min_duration_ms`` is given, else newest first."""
        ...

    def trace_link(self, trace_id: str) -> str:
        """A URL a person can open for this trace (the store's own API or UI)."""
        ...

    async def ready(self) -> bool:
        """True when the store answers its query API."""
        ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
