"""Helpers shared by the whole test suite, imported as ``tests.support`` (fixtures: tests/conftest.py).

* :mod:`.require` -- the one reading of ``VOXPULSE_REQUIRE_<WHAT>``: a test that needs a real
  component it cannot find is skipped with the reason, or fails when the run requires that
  component (CI sets ``VOXPULSE_REQUIRE_STACK=1`` and ``VOXPULSE_REQUIRE_DB=1``).
* :mod:`.services` -- the real PostgreSQL and Redis of scripts/services.sh (environment first, then
  its env file under ``$VOXPULSE_STATE_DIR``), throw-away databases.
* :mod:`.backends` -- binaries of the native stack, Prometheus queries, waiting on a condition with a
  deadline, ports that nothing else can take.
* :mod:`.tier` -- when the scale-out topology has nothing in flight (its components' own counters).
* :mod:`.repo` -- the repository's paths and the scripts that are not packages (``grafana/*.py``).
"""

from __future__ import annotations

from .backends import PromClient, binary, closed_port, free_port, poll, wait_for
from .repo import ROOT, load_script, run_python
from .require import required, unavailable
from .services import database_url, drop_database, redis_url, setting, throwaway_database, with_database

__all__ = [
    "ROOT",
    "PromClient",
    "binary",
    "closed_port",
    "database_url",
    "drop_database",
    "free_port",
    "load_script",
    "poll",
    "redis_url",
    "required",
    "run_python",
    "setting",
    "throwaway_database",
    "unavailable",
    "wait_for",
    "with_database",
]
