"""Internal failures never break a call: one guard contains them, counts them and logs them, rate-limited.

    with internal_errors("metrics.ttfw"):        # a block
        ...

    @internal_errors("history.count")            # a function returning None (sync or async)
    def _count(...) -> None: ...

A contained error adds one to ``voxpulse.internal_errors{voxpulse.internal_error.site}`` and is
logged on ``voxpulse.internal``: the first time a site fails, then at most once per
:data:`LOG_INTERVAL_S` per site with the number of errors not logged since (a site failing ten
thousand times writes a handful of lines, and the counter holds the real number).

While a test runs (``PYTEST_CURRENT_TEST`` is set) or with ``VOXPULSE_RAISE_INTERNAL_ERRORS=true``,
errors are re-raised instead, so tests catch the bugs; ``VOXPULSE_RAISE_INTERNAL_ERRORS=false``
contains them even under pytest (tests of the containment itself).
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, ParamSpec, overload

from telemetry import _env

__all__ = ["LOG_INTERVAL_S", "internal_error", "internal_errors", "raise_internal_errors"]

P = ParamSpec("P")

LOG_INTERVAL_S: Final = 60.0
_logger = logging.getLogger("voxpulse.internal")


@dataclass(slots=True)
class _Site:
    total: int = 0
    suppressed: int = 0
    logged_at: float = float("-inf")


_sites: dict[str, _Site] = {}
_lock = threading.Lock()


def raise_internal_errors() -> bool:
    """True when internal errors are re-raised: the explicit flag if set, else while a test runs."""
    explicit = _env.optional_flag(_env.VOXPULSE_RAISE_INTERNAL_ERRORS)
    if explicit is not None:
        return explicit
    return _env.under_test()


def counts() -> dict[str, int]:
    """Errors contained so far, by site (also the ``voxpulse.internal_errors`` counter)."""
    with _lock:
        return {site: s.total for site, s in _sites.items()}


def _reset() -> None:
    """Forget the per-site state (tests)."""
    with _lock:
        _sites.clear()


def internal_error(site: str, exc: Exception) -> None:
    """Contains ``exc`` raised at ``site``: counts and (rate-limited) logs it; re-raises it instead
    while tests run. Call it from an ``except Exception`` block."""
    if raise_internal_errors():
        raise exc
    now = time.monotonic()
    with _lock:
        state = _sites.setdefault(site, _Site())
        state.total += 1
        due = now - state.logged_at >= LOG_INTERVAL_S
        if due:
            suppressed, state.suppressed, state.logged_at = state.suppressed, 0, now
        else:
            state.suppressed += 1
    if due:
        if suppressed:
            _logger.error("telemetry error in %s (%d more since the last report); the call continues",
                          site, suppressed, exc_info=exc)
        else:
            _logger.error("telemetry error in %s; the call continues", site, exc_info=exc)
    _count(site)


def _count(site: str) -> None:
    try:
        from telemetry import metrics  # metrics imports this module

        metrics._record_internal_error(site)
    except Exception:  # counting must not fail the containment itself
        _logger.debug("could not count an internal error", exc_info=True)


class internal_errors:
    """Contains the ``Exception`` s of a block or a function (see the module docstring).

    As a decorator it suits functions returning ``None``: a contained error returns ``None``."""

    __slots__ = ("site",)

    def __init__(self, site: str) -> None:
        self.site = site

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # BaseException (cancellation, exit) passes through
        internal_error(self.site, exc)
        return True

    @overload
    def __call__(self, fn: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]: ...
    @overload
    def __call__(self, fn: Callable[P, None]) -> Callable[P, None]: ...
    def __call__(self, fn: Callable[P, object]) -> Callable[P, object]:
        site = self.site
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_guarded(*args: P.args, **kwargs: P.kwargs) -> None:
                try:
                    await fn(*args, **kwargs)
                except Exception as exc:
                    internal_error(site, exc)

            return async_guarded

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
            try:
                fn(*args, **kwargs)
            except Exception as exc:
                internal_error(site, exc)

        return guarded
