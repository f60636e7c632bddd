"""Fixtures for the stack tests: the real binaries, never stand-ins (``tests.support.binary`` finds
them, or skips -- fails under VOXPULSE_REQUIRE_STACK). Build them with scripts/build-backends.sh.
"""

from __future__ import annotations

import pytest

from tests.support import unavailable
from voxpulse_console import stack


@pytest.fixture(scope="session")
def compose_cmd() -> list[str]:
    """`docker compose` (the CLI plugin) or the standalone docker-compose v2 binary."""
    cmd = stack.compose_command()
    if cmd is None:
        unavailable("STACK", "no docker compose: run scripts/build-backends.sh --only=compose")
    return cmd
