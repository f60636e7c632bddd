"""Grafana's dashboard-linter on every dashboard, and on a broken one it must reject.

The binary is built by scripts/build-backends.sh from github.com/grafana/dashboard-linter v0.2.0
with one file swapped (grafana/linter/v2.go): the original imports a grafana module version the Go
proxy here refuses, only to read v2-schema dashboards; every lint rule is the linter's own.
Exclusions, each with its reason, are in grafana/dashboards/.lint.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASH = ROOT / "grafana" / "dashboards"


def _lint(linter: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([linter, "lint", "--strict", "--config", str(DASH / ".lint"), str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def linter(bin_or_skip: Callable[[str], str]) -> str:
    return bin_or_skip("dashboard-linter")


@pytest.mark.parametrize("name", sorted(p.name for p in DASH.glob("*.json")))
def test_dashboard_linter(linter: str, name: str) -> None:
    res = _lint(linter, DASH / name)
    assert res.returncode == 0, res.stdout + res.stderr


def test_linter_rejects_a_panel_without_description_or_rate(linter: str, tmp_path: Path) -> None:
    dash = json.loads((DASH / "realtime.json").read_text(encoding="utf-8"))
    panel = next(p for p in dash["panels"] if p.get("targets"))
    panel["description"] = ""
    panel["targets"][0]["expr"] = "sum(voice_calls_total)"
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(dash), encoding="utf-8")
    res = _lint(linter, bad)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "has missing title or description" in out
    assert "'voice_calls_total' is not aggregated with rate" in out
