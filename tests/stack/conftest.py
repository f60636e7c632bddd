"""Fixtures for the stack tests: the real binaries, never stand-ins.

Without the binaries these tests skip with the reason, unless VOXPULSE_REQUIRE_STACK is set (CI),
where a missing binary is a failure. Build them with scripts/build-backends.sh.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from voxpulse_console import stack

ROOT = Path(__file__).resolve().parents[2]


def require_stack() -> bool:
    return os.environ.get("VOXPULSE_REQUIRE_STACK", "").lower() not in ("", "0", "false", "no")


def _need(tools: dict[str, Path | None], *names: str) -> dict[str, Path]:
    missing = [n for n in names if tools.get(n) is None]
    if missing:
        msg = f"missing {', '.join(missing)}: run scripts/build-backends.sh (VOXPULSE_REQUIRE_STACK unset)"
        if require_stack():
            pytest.fail(msg.replace("(VOXPULSE_REQUIRE_STACK unset)", "(VOXPULSE_REQUIRE_STACK is set)"))
        pytest.skip(msg)
    return {n: p for n, p in tools.items() if p is not None}


@pytest.fixture(scope="session")
def tools() -> dict[str, Path | None]:
    return stack.binaries()


@pytest.fixture(scope="session")
def need(tools: dict[str, Path | None]) -> Callable[[str], Path]:
    """need("otelcol") -> the binary's path, or skip (fail under VOXPULSE_REQUIRE_STACK)."""
    return lambda name: _need(tools, name)[name]


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
    msg = "no docker compose: run scripts/build-backends.sh --only=compose"
    if require_stack():
        pytest.fail(msg)
    pytest.skip(msg)
