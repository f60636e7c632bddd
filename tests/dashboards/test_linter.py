"""Grafana's dashboard-linter on every dashboard (bash scripts/build-backends.sh --only=linter).

dashboard-linter v0.2.0 depends on github.com/grafana/grafana/apps/dashboard
v0.0.0-20260602113031-3fcdbc5a6e5c, which the Go module proxy reachable from the build machine
refuses (403 "This module version is not available"), so the binary may be missing: the test then
skips with that reason, also in CI. The linter's panel rules are also checked without it in
test_dashboards.py (titles/descriptions, units, counter aggregation, $__rate_interval).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASH = ROOT / "grafana" / "dashboards"


@pytest.mark.parametrize("name", sorted(p.name for p in DASH.glob("*.json")))
def test_dashboard_linter(name: str) -> None:
    import shutil

    from agent.stack import cache_dir

    found = cache_dir() / "bin" / "dashboard-linter"
    linter = str(found) if found.exists() else shutil.which("dashboard-linter")
    if linter is None:
        # Not a missing install step: the Go proxy refuses a module the linter needs (module docstring).
        pytest.skip("dashboard-linter cannot be built here: the Go proxy refuses "
                    "github.com/grafana/grafana/apps/dashboard@v0.0.0-20260602113031-3fcdbc5a6e5c (403)")
    res = subprocess.run([linter, "lint", "--strict", "--config", str(DASH / ".lint"), str(DASH / name)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
