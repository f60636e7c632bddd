"""Internal failures never break a call: they are logged once per site and swallowed.

Under pytest (or with VOXPULSE_RAISE_INTERNAL_ERRORS=1) they are re-raised so tests catch them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["internal_errors", "log_internal_error"]

_logger = logging.getLogger("voxpulse.internal")
_seen: set[str] = set()


def _raise_internal() -> bool:
    return os.environ.get("VOXPULSE_RAISE_INTERNAL_ERRORS") == "1" or "pytest" in sys.modules


def log_internal_error(site: str, exc: BaseException) -> None:
    if site not in _seen:
        _seen.add(site)
        _logger.error("telemetry error in %s; the call continues", site, exc_info=exc)


@contextmanager
def internal_errors(site: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if _raise_internal():
            raise
        log_internal_error(site, exc)
