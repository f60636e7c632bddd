"""Fixtures for the console tests: a REAL Jaeger (the binary scripts/build-backends.sh builds, with the
repository's jaeger/jaeger.yaml), started in a temporary state folder by voxpulse_console.stack, or
the one that already answers on 127.0.0.1:16686 (then the restart test skips with the reason, or
fails under VOXPULSE_REQUIRE_STACK).

Without the binary these tests skip with the reason, unless VOXPULSE_REQUIRE_STACK is set (CI),
where a missing binary is a failure.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import unavailable
from voxpulse_console import stack

JAEGER = stack.COMPONENTS["jaeger"]


@dataclass
class LiveJaeger:
    state_dir: Path | None  # None: a Jaeger this session did not start (not to be restarted)
    url: str = "http://127.0.0.1:16686"
    otlp_http: str = "http://127.0.0.1:4418"


@pytest.fixture(scope="module")  # stopped after its module: the stack tests after it need the ports
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveJaeger]:
    if stack.binaries().get("jaeger") is None:
        unavailable("STACK", "missing jaeger: run scripts/build-backends.sh --only=jaeger")
    # a stack that is starting or stopping: wait until Jaeger is either up (reuse it) or gone
    deadline = time.monotonic() + 60
    while not stack.ready(JAEGER.ready_url) and any(stack.port_busy(p) for p in JAEGER.ports):
        assert time.monotonic() < deadline, f"ports {JAEGER.ports} busy but Jaeger not ready"
        time.sleep(0.2)
    if stack.ready(JAEGER.ready_url):
        yield LiveJaeger(None)
        return
    state = tmp_path_factory.mktemp("jaeger")
    stack.start("jaeger", state_dir=state, wait_s=60)
    try:
        yield LiveJaeger(state)
    finally:
        stack.stop("jaeger", state_dir=state)
