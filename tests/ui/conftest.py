"""Fixtures for the web console's tests: the REAL console process (``voxpulse ui``), the real
PostgreSQL of scripts/services.sh (a throw-away database per session), and for the browser tests the
real stack (collector, trace store, Prometheus) and Debian's Chromium driven by Playwright.

Without PostgreSQL / the stack / Chromium the tests that need them skip with the reason, unless
VOXPULSE_REQUIRE_DB / VOXPULSE_REQUIRE_STACK / VOXPULSE_REQUIRE_BROWSER is set (CI), where they fail
(``tests.support.unavailable``). ``base_dsn`` is the root conftest's.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support import closed_port, free_port, throwaway_database, wait_for
from voxpulse_console.ui.auth import hash_password

ROOT = Path(__file__).resolve().parents[2]
ADMIN = ("admin", "admin-" + secrets.token_urlsafe(12))  # may see raw personal data and play recordings
VIEWER = ("viewer", "viewer-" + secrets.token_urlsafe(12))  # sees masked values
CLERK = ("clerk", "clerk-" + secrets.token_urlsafe(12))  # raw personal data, but not the recordings
#: Debian's Chromium, as the browser tests drive it (a browser download is impossible here)
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
TABLES = "calls, call_turns, call_tool_calls, customers, alerts_history, daily_stats, insights_calls"


@pytest.fixture(scope="session")
def console_db(base_dsn: str) -> Iterator[str]:
    """A throw-away database for the API tests (their ``pg`` fixture empties it per test)."""
    with throwaway_database("voxpulse_console") as dsn:
        yield dsn


def users_env() -> str:
    return (f"{ADMIN[0]}:{hash_password(ADMIN[1])}:pii+audio "
            f"{VIEWER[0]}:{hash_password(VIEWER[1])} "
            f"{CLERK[0]}:{hash_password(CLERK[1])}:pii")


_USERS: dict[str, str] = {}


def cached_users_env() -> str:
    if "v" not in _USERS:
        _USERS["v"] = users_env()
    return _USERS["v"]


@dataclass
class Console:
    """A running ``voxpulse ui`` process."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self, who: tuple[str, str] | None = ADMIN) -> ConsoleClient:
        c = ConsoleClient(httpx.Client(base_url=self.url, timeout=15, follow_redirects=False))
        if who is not None:
            c.login(*who)
        return c

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class ConsoleClient:
    http: httpx.Client
    csrf: str = ""

    def session(self) -> dict[str, object]:
        r = self.http.get("/api/session")
        r.raise_for_status()
        body: dict[str, object] = r.json()
        self.csrf = str(body["csrf"])
        return body

    def login(self, user: str, password: str) -> httpx.Response:
        self.session()
        r = self.http.post("/api/login", json={"user": user, "password": password},
                           headers={"X-CSRF-Token": self.csrf})
        if r.status_code == 200:
            self.csrf = r.json()["csrf"]
        return r

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.http.get(path, params=params or None)

    def post(self, path: str, json: object = None, **headers: str) -> httpx.Response:
        return self.http.post(path, json=json if json is not None else {},
                              headers={"X-CSRF-Token": self.csrf, **headers})

    def close(self) -> None:
        self.http.close()


def start_console(tmp: Path, dsn: str | None, **env: str) -> Console:
    port = free_port()  # the console is told its port (it cannot report one it picked)
    full = {
        **{k: v for k, v in os.environ.items()
           if not k.startswith(("VOXPULSE_UI_", "DATABASE_URL", "VOXPULSE_DATABASE"))},
        "VOXPULSE_UI_USERS": cached_users_env(),
        "VOXPULSE_UI_LISTEN": f"127.0.0.1:{port}",
        "LOG_LEVEL": "INFO",
        **env,
    }
    if dsn:
        full["DATABASE_URL"] = dsn
    log = tmp / f"console-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "voxpulse_console", "ui"], cwd=ROOT, env=full,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    c = Console(f"http://127.0.0.1:{port}", proc, log, full)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the console exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        return httpx.get(f"{c.url}/healthz", timeout=1).status_code == 200

    wait_for(up, "the console's /healthz", 30, every_s=0.1)
    return c


def stop_console(c: Console) -> None:
    c.proc.terminate()
    try:
        c.proc.wait(10)
    except subprocess.TimeoutExpired:
        c.proc.kill()
        c.proc.wait(5)


@pytest.fixture(scope="module")
def console(console_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The console on the throw-away database; Prometheus and the trace store point at closed ports
    (the tests of this fixture check the console without them: degraded, not broken); the insights
    receiver's folder is ``env["VOXPULSE_INSIGHTS_DIR"]``."""
    with closed_port() as prometheus, closed_port() as trace_store:
        tmp = tmp_path_factory.mktemp("console")
        (tmp / "insights").mkdir()
        c = start_console(tmp, console_db, VOXPULSE_INSIGHTS_DIR=str(tmp / "insights"),
                          VOXPULSE_PROMETHEUS_URL=f"http://127.0.0.1:{prometheus}",
                          VOXPULSE_TRACE_STORE="jaeger", VOXPULSE_TRACE_STORE_URL=f"http://127.0.0.1:{trace_store}")
        yield c
        stop_console(c)
    assert "Traceback" not in c.log_text(), c.log_text()[-4000:]


@pytest.fixture
async def pg(console_db: str):  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(console_db)
    await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    yield conn
    await conn.close()


def login(page: Any, base: str, who: tuple[str, str], then: str) -> None:
    """Open ``then``, which sends an anonymous user to the login page, sign in as ``who`` and land there."""
    page.goto(f"{base}{then}")
    page.wait_for_url(re.compile(r".*/login\?next=.*"))
    page.get_by_label("User name").fill(who[0])
    page.get_by_label("Password").fill(who[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}{then}")
