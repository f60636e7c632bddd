"""Fixtures for the stack tests: the real binaries, never stand-ins (``tests.support.binary`` finds
them, or skips -- fails under VOXPULSE_REQUIRE_STACK). Build them with scripts/build-backends.sh.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.support import unavailable
from voxpulse_console import stack


@pytest.fixture(scope="session")
def compose_cmd() -> list[str]:
    """`docker compose` (the CLI plugin) or a standalone docker-compose v2 binary."""
    candidates: list[list[str]] = [["docker", "compose"]]
    standalone = stack.binaries().get("docker-compose")
    if standalone is not None:
        candidates.append([str(standalone)])
    for cmd in candidates:
        try:
            proc = subprocess.run([*cmd, "version"], capture_output=True, timeout=30, check=False)
            ok = proc.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return cmd
    unavailable("STACK", "no docker compose: run scripts/build-backends.sh --only=compose")
