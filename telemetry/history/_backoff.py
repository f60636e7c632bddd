"""Reachability of one store (PostgreSQL, the Redis buffer) with exponential back-off between probes."""

from __future__ import annotations

import time
from typing import Final

__all__ = ["Backoff", "failure_reason"]

_FIRST_DELAY_S: Final = 0.05


class Backoff:
    """``ok`` after a successful probe or write; after a failure the next probe is due in 50 ms,
    then twice as long after each further failure, up to ``max_delay_s``."""

    __slots__ = ("delay", "max_delay_s", "ok", "retry_at")

    def __init__(self, max_delay_s: float) -> None:
        self.max_delay_s = max_delay_s
        self.ok = False
        self.delay = 0.0
        self.retry_at = 0.0

    def up(self) -> None:
        self.ok = True
        self.delay = 0.0

    def down(self) -> None:
        self.ok = False
        self.delay = min(self.max_delay_s, max(_FIRST_DELAY_S, self.delay * 2))
        self.retry_at = time.monotonic() + self.delay

    def due(self, now: float, *, closing: bool = False) -> bool:
        """A probe should run now: the store is down and its delay passed (or the logger closes)."""
        return not self.ok and (now >= self.retry_at or closing)


def failure_reason(exc: BaseException) -> str:
    """``Type: first line of the message`` (200 characters at most), for log lines."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
