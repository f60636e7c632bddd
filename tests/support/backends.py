"""The native stack's binaries, Prometheus queries, waiting with a deadline, and ports.

Waits are polls of a condition with a deadline, never fixed sleeps: :func:`wait_for` fails the test
with what it waited for and the last value seen; :func:`poll` returns ``None`` at the deadline and
how long it waited (the fault tests measure recovery times with it).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from .require import unavailable

__all__ = ["PROMETHEUS", "PromClient", "binary", "closed_port", "free_port", "poll", "wait_for"]

T = TypeVar("T")

PROMETHEUS = "http://127.0.0.1:9090"

# What a backend that is still starting (or just restarted) may answer with for a while.
TRANSIENT: tuple[type[Exception], ...] = (httpx.HTTPError, OSError, KeyError, ValueError, IndexError)

_BUILD_HINT = {
    "dashboard-linter": "bash scripts/build-backends.sh --only=linter",
    "docker-compose": "bash scripts/build-backends.sh --only=compose",
    "promtool": "bash scripts/build-backends.sh --only=debian",
    "amtool": "bash scripts/build-backends.sh --only=debian",
    "prometheus": "bash scripts/build-backends.sh --only=debian",
    "alertmanager": "bash scripts/build-backends.sh --only=debian",
}


def binary(name: str) -> Path:
    """Where the stack's tool ``name`` is (voxpulse_console.stack.binaries: the build cache, then
    PATH); skips the test without it, or fails it under ``VOXPULSE_REQUIRE_STACK``."""
    from voxpulse_console import stack

    path = stack.binaries().get(name)
    if path is None:
        hint = _BUILD_HINT.get(name, f"bash scripts/build-backends.sh --only={name}")
        unavailable("STACK", f"{name} not installed ({hint})")
    return path


def poll(fn: Callable[[], T | None], deadline_s: float, every_s: float = 0.5) -> tuple[T | None, float]:
    """``fn()`` until it returns something truthy or ``deadline_s`` passes; returns (that value or
    None, seconds waited). Transient backend errors count as "not yet"."""
    t0 = time.monotonic()
    while True:
        try:
            value = fn()
        except TRANSIENT:
            value = None
        if value:
            return value, time.monotonic() - t0
        if time.monotonic() - t0 > deadline_s:
            return None, time.monotonic() - t0
        time.sleep(every_s)


def wait_for(fn: Callable[[], T | None], what: str, deadline_s: float, every_s: float = 0.5) -> T:
    """``fn()`` until it returns something truthy; fails the test with ``what`` and the last value
    or error at the deadline."""
    end = time.monotonic() + deadline_s
    last: T | Exception | None = None
    while True:
        try:
            value = fn()
        except TRANSIENT as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:.0f}s waiting for {what}; last: {last!r}", pytrace=False)
        time.sleep(every_s)


class PromClient:
    """Prometheus's query API over the class's ``http`` client (a mixin for the tests' stack handles)."""

    http: httpx.Client
    prom_url: str = PROMETHEUS

    def prom(self, query: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": query}
        if at is not None:
            params["time"] = at
        r = self.http.get(f"{self.prom_url}/api/v1/query", params=params)
        r.raise_for_status()
        result: list[dict[str, Any]] = r.json()["data"]["result"]
        return result

    def prom_value(self, query: str) -> float | None:
        result = self.prom(query)
        return float(result[0]["value"][1]) if result else None


def free_port() -> int:
    """A loopback port free right now, for a child process that must be told where to listen.
    Between this call and the child's bind another process could take it: where the server can
    listen on port 0 and report its port, let it (alert_receiver.start, bench/sink.py, Alertmanager
    read from its log); for a port that must refuse connections, use :func:`closed_port`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs: it is bound (so no
    other process can take it) and never listened on. For "the collector / database is down"."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])
