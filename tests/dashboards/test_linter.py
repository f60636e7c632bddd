"""Grafana's dashboard-linter on every dashboard (both trace-store sets), and on broken ones it must reject.

The binary is built by scripts/build-backends.sh from github.com/grafana/dashboard-linter v0.2.0
with two files swapped, each to keep an AGPL module out of the build (scripts/go-not-to-use.txt):
grafana/linter/v2.go (the original imports github.com/grafana/grafana/apps/dashboard only to read
v2-schema dashboards) and grafana/linter/logql.go (the original imports Loki's LogQL parser; this
build reports Loki targets as unsupported). Every other lint rule is the linter's own.
Exclusions, each with its reason, are in grafana/dashboards/.lint.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support import binary

ROOT = Path(__file__).resolve().parents[2]
DASH = ROOT / "grafana" / "dashboards"


def _lint(linter: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([linter, "lint", "--strict", "--config", str(DASH / ".lint"), str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def linter() -> str:
    return str(binary("dashboard-linter"))


@pytest.mark.parametrize("name", sorted(str(p.relative_to(DASH)) for p in DASH.glob("*/*.json")))
def test_dashboard_linter(linter: str, name: str) -> None:
    res = _lint(linter, DASH / name)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_set_is_linted() -> None:
    assert {p.parent.name for p in DASH.glob("*/*.json")} == {"tempo", "jaeger"}
    assert len(list(DASH.glob("*/*.json"))) == 10


def test_linter_rejects_a_panel_without_description_or_rate(linter: str, tmp_path: Path) -> None:
    dash = json.loads((DASH / "tempo" / "realtime.json").read_text(encoding="utf-8"))
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


def test_linter_reports_a_loki_target_as_unsupported(linter: str, tmp_path: Path) -> None:
    """This build leaves Loki's (AGPL) LogQL parser out: a LogQL target fails instead of passing unchecked."""
    dash = json.loads((DASH / "jaeger" / "realtime.json").read_text(encoding="utf-8"))
    panel = next(p for p in dash["panels"] if p.get("targets"))
    loki = {"type": "loki", "uid": "loki"}
    panel["datasource"] = loki
    panel["targets"] = [{"datasource": loki, "refId": "A", "expr": 'sum(rate({job="agent"}[$__auto]))'}]
    bad = tmp_path / "loki.json"
    bad.write_text(json.dumps(dash), encoding="utf-8")
    res = _lint(linter, bad)
    assert res.returncode != 0
    assert "LogQL targets are not supported by this build of the linter" in res.stdout + res.stderr
