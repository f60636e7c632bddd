"""No module that must not be used (AGPL Tempo, Grafana, Loki, and the other rows of
scripts/go-not-to-use.txt) is fetched or built: the Go module cache that scripts/build-backends.sh
fills (a cache of its own) holds none of them, the check itself catches one, and every Go build
verifies module checksums (no GOSUMDB=off anywhere in the scripts)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support import unavailable

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build-backends.sh"
DENY = ROOT / "scripts" / "go-not-to-use.txt"

pytestmark = pytest.mark.stack


def _modcache() -> Path:
    cache = Path(os.environ.get("VOXPULSE_CACHE_DIR") or Path.home() / ".cache" / "voxpulse")
    return Path(os.environ.get("VOXPULSE_GOMODCACHE") or cache / "go" / "mod")


def check(modcache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VOXPULSE_GOMODCACHE": str(modcache)}
    return subprocess.run(["bash", str(SCRIPT), "--only=licences"], capture_output=True, text=True, timeout=300,
                          env=env, check=False)


def test_the_builds_module_cache_holds_no_module_not_to_use() -> None:
    modcache = _modcache()
    if not (modcache / "cache" / "download").is_dir():
        unavailable("STACK", f"no Go module cache at {modcache}: run scripts/build-backends.sh")
    proc = check(modcache)
    assert proc.returncode == 0, proc.stderr
    assert "no module of scripts/go-not-to-use.txt" in proc.stderr
    # the builds did fill it: the collector's and Jaeger's modules are there
    downloaded = modcache / "cache" / "download"
    assert (downloaded / "github.com" / "jaegertracing" / "jaeger" / "@v").is_dir()
    assert (downloaded / "go.opentelemetry.io" / "collector" / "otelcol" / "@v").is_dir()
    assert not (downloaded / "github.com" / "grafana" / "tempo").exists()


def test_the_check_catches_a_module_not_to_use(tmp_path: Path) -> None:
    downloaded = tmp_path / "cache" / "download"
    for module in (
        "github.com/grafana/tempo",  # listed
        "github.com/grafana/grafana/pkg/apimachinery",  # below a listed path
        "github.com/grafana/grafana-foundation-sdk/go",  # a different module that shares a prefix
        "github.com/hashicorp/nomad/api",  # allowed below a listed path ("!" line)
        "github.com/!burnt!sushi/toml",  # upper case, escaped by the module cache
        "go.opentelemetry.io/collector/otelcol",
    ):
        (downloaded / module / "@v").mkdir(parents=True)
        (downloaded / module / "@v" / "v1.0.0.mod").write_text("module x\n")
    (downloaded / "sumdb" / "sum.golang.org" / "lookup").mkdir(parents=True)
    proc = check(tmp_path)
    assert proc.returncode != 0
    flagged = {line.strip() for line in proc.stderr.splitlines() if line.startswith("  ")}
    assert flagged == {"github.com/grafana/tempo", "github.com/grafana/grafana/pkg/apimachinery"}, proc.stderr


def test_the_deny_list_covers_the_agpl_modules() -> None:
    entries = {ln.strip() for ln in DENY.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    assert {"github.com/grafana/tempo", "github.com/grafana/grafana", "github.com/grafana/loki",
            "github.com/grafana/loki/v3", "github.com/grafana/grafana/apps/dashboard"} <= entries


def test_every_go_build_verifies_checksums(tmp_path: Path) -> None:
    scripts = "\n".join(p.read_text() for p in (ROOT / "scripts").glob("*.sh"))
    code = "\n".join(ln for ln in scripts.splitlines() if not ln.lstrip().startswith("#"))
    assert not re.search(r"(^|[\s;(])(export\s+)?(GOSUMDB|GONOSUMDB|GONOSUMCHECK|GOINSECURE)=|-insecure|go env -w",
                         code, re.M)
    # and a build asked for with verification switched off is refused before anything is fetched
    env = {**os.environ, "GOSUMDB": "off", "VOXPULSE_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(["bash", str(SCRIPT), "--only=jaeger"], capture_output=True, text=True, timeout=60,
                          env=env, check=False)
    assert proc.returncode != 0
    assert "GOSUMDB=off: module checksums must be verified" in proc.stderr
    assert not (tmp_path / "go" / "mod" / "cache").exists()


def test_versions_are_pinned_in_one_place() -> None:
    pinned = dict(ln.split("=", 1) for ln in (ROOT / "scripts" / "versions.env").read_text().splitlines()
                  if "=" in ln and not ln.startswith("#"))
    assert {"BUILDER_VERSION", "JAEGER_VERSION", "JAEGER_MODULE_VERSION", "DASHBOARD_LINTER_VERSION",
            "COMPOSE_VERSION"} <= set(pinned)
    build = SCRIPT.read_text()
    assert 'source "$root/scripts/versions.env"' in build
    assert not re.search(r"^\s*[A-Z_]*VERSION=", build, re.M), "versions belong in scripts/versions.env"
    assert not (ROOT / "tempo" / "build.env").exists()
