"""Fixtures for the dashboard, alert-rule and alert-receiver tests.

* ``bin_or_skip(name)``: a backend binary (promtool, amtool, dashboard-linter) or a skip with the
  reason; with VOXPULSE_REQUIRE_STACK set a missing binary fails instead.
* ``dashboards_db``: a throw-away database, migrated (the call history and the console's
  alerts_history), on the REAL PostgreSQL of scripts/services.sh (skipped when unreachable unless
  VOXPULSE_REQUIRE_DB is set).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE_BIN = Path(os.environ.get("VOXPULSE_CACHE_DIR") or Path.home() / ".cache" / "voxpulse") / "bin"


def load_module(name: str, path: Path) -> ModuleType:
    """Import a file by path (grafana/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def builder() -> ModuleType:
    return load_module("voxpulse_build_dashboards", ROOT / "grafana" / "build_dashboards.py")


@pytest.fixture(scope="session")
def queries() -> ModuleType:
    return load_module("voxpulse_grafana_queries", ROOT / "grafana" / "queries.py")


@pytest.fixture(scope="session")
def bin_or_skip() -> Callable[[str], str]:
    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None and (CACHE_BIN / name).exists():
            path = str(CACHE_BIN / name)
        if path is None:
            hint = ("bash scripts/build-backends.sh --only=linter" if name == "dashboard-linter"
                    else "bash scripts/build-backends.sh --only=debian")
            msg = f"{name} not installed ({hint})"
            if os.environ.get("VOXPULSE_REQUIRE_STACK"):
                pytest.fail(f"VOXPULSE_REQUIRE_STACK is set but {msg}", pytrace=False)
            pytest.skip(msg)
        return path

    return find


# -- PostgreSQL ---------------------------------------------------------------------------------


def _env_file() -> dict[str, str]:
    state = Path(os.environ.get("VOXPULSE_STATE_DIR", ROOT / ".voxpulse"))
    if not state.is_absolute():
        state = ROOT / state
    out: dict[str, str] = {}
    f = state / "services" / "env"
    if f.is_file():
        for line in f.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
    return out


def _db_unavailable(reason: str) -> None:
    if os.environ.get("VOXPULSE_REQUIRE_DB"):
        pytest.fail(f"VOXPULSE_REQUIRE_DB is set but {reason}", pytrace=False)
    pytest.skip(f"{reason} (start it with scripts/services.sh)")


def _with_db(dsn: str, db: str) -> str:
    u = urlsplit(dsn)
    return urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))


@pytest.fixture(scope="session")
def dashboards_db() -> Iterator[str]:
    """A throw-away, migrated database for this test session."""
    env = _env_file()
    base = (os.environ.get("VOXPULSE_DATABASE_URL") or os.environ.get("DATABASE_URL")
            or env.get("VOXPULSE_DATABASE_URL") or env.get("DATABASE_URL"))
    if not base:
        _db_unavailable("no DATABASE_URL (env or .voxpulse/services/env)")
    assert base is not None
    from telemetry.history import migrate
    from voxpulse_console import alert_receiver

    name = f"voxpulse_dash_{os.getpid()}_{secrets.token_hex(3)}"

    async def create() -> None:
        conn = await asyncpg.connect(base, timeout=3)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await migrate(_with_db(base, name))  # the call history's schema
        await alert_receiver.migrate(_with_db(base, name))  # and the console's (alerts_history)

    async def drop() -> None:
        conn = await asyncpg.connect(base, timeout=3)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except (OSError, asyncpg.PostgresError) as exc:
        _db_unavailable(f"PostgreSQL at {urlsplit(base).hostname}:{urlsplit(base).port} unusable ({exc!r})")
    yield _with_db(base, name)
    asyncio.run(drop())
