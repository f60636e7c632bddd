"""``voxpulse demo`` as a user runs it (what ``make demo`` runs): the stack on the host's loopback,
real calls through its LiveKit server, and a console URL with a one-time login that the user's
browser (Debian's Chromium, in the host's network namespace) opens; the slowest call's page shows.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.support import ROOT, throwaway_database, unavailable
from voxpulse_console import stack

pytestmark = [pytest.mark.db, pytest.mark.stack, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
CONSOLE_LINE = re.compile(r"VoxPulse console: (http://\S+)\s+\(log in as (\S+), password (\S+) ")
SLOWEST_LINE = re.compile(r"the slowest call: (http://\S+/calls/\S+)")


@dataclass
class Demo:
    out: str
    url: str
    user: str
    password: str
    slowest: str


@pytest.fixture(scope="module")
def demo(base_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    why = stack.media_supported()
    if why:
        unavailable("LIVEKIT", f"no media namespace: {why}")
    missing = [n for n in ("livekit-server", "otelcol", "prometheus", "jaeger", "alertmanager")
               if stack.binaries().get(n) is None]
    missing += [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        unavailable("LIVEKIT", f"missing {', '.join(missing)}: run scripts/build-backends.sh")
    if not Path(CHROMIUM).is_file():
        unavailable("BROWSER", "no /usr/bin/chromium (scripts/bootstrap.sh installs Debian's chromium)")
    state = tmp_path_factory.mktemp("demo-state")
    with throwaway_database("voxpulse_demo") as dsn:
        env = {**os.environ, "VOXPULSE_STACK_DIR": str(state / "stack"), "DATABASE_URL": dsn,
               "COLUMNS": "250", "TERM": "dumb", "NO_COLOR": "1"}
        env.pop("VOXPULSE_UI_USERS", None)
        try:
            proc = subprocess.run([sys.executable, "-m", "voxpulse_console", "demo", "--real-calls", "3"],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
            out = proc.stdout + proc.stderr
            assert proc.returncode == 0, out[-6000:]
            login = CONSOLE_LINE.search(out)
            slowest = SLOWEST_LINE.search(out)
            assert login is not None and slowest is not None, out[-6000:]
            yield Demo(out, login.group(1), login.group(2), login.group(3), slowest.group(1))
        finally:
            stack.down(state_dir=state / "stack")


def test_the_demo_places_real_calls(demo: Demo) -> None:
    assert "real calls (LiveKit server, agent worker, callers speaking over WebRTC)" in demo.out, demo.out[-4000:]
    assert "simulating calls offline instead" not in demo.out, demo.out[-4000:]
    assert demo.url == "http://127.0.0.1:8090"  # the host's loopback: the user's own browser opens it
    # no dead links: nothing of compose's (Grafana) natively, the raw trace through the console
    assert ":3000" not in demo.out, demo.out[-3000:]
    assert "raw trace:  http://127.0.0.1:8090/api/traces/" in demo.out, demo.out[-3000:]


def test_the_printed_url_opens_in_the_browser_and_the_login_works(demo: Demo) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page: Any = browser.new_context(locale="en-GB").new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(demo.slowest)
            page.wait_for_url(re.compile(r".*/login\?next=.*"))
            page.get_by_label("User name").fill(demo.user)
            page.get_by_label("Password").fill(demo.password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(demo.slowest)
            view = page.get_by_test_id("callview")
            view.wait_for()
            call_id = unquote(demo.slowest.rsplit("/", 1)[1])
            assert view.get_attribute("data-call-id") == call_id
            page.get_by_test_id("lane").first.wait_for()
            assert page.get_by_test_id("lane").count() >= 1
            assert page.get_by_test_id("source-notice").count() == 0  # history and trace both there
            assert not errors, errors
        finally:
            browser.close()
