"""docker-compose.yml: accepted by `docker compose config` (no engine needed), every file it mounts
exists, images pinned, secrets required from the environment, only Grafana's port published."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.stack

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"


def compose_config(compose_cmd: list[str], env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_cmd, "-f", str(COMPOSE), "--env-file", str(env_file), "config", "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
        # only what the env file says: a developer's exported variables must not make the test pass
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home())},
    )


@pytest.fixture(scope="module")
def config(compose_cmd: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env = tmp_path_factory.mktemp("compose") / "test.env"
    secrets = "\nGRAFANA_ADMIN_PASSWORD=test-only\nPOSTGRES_PASSWORD=test-only\n"
    env.write_text(ENV_EXAMPLE.read_text() + secrets)
    proc = compose_config(compose_cmd, env)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_compose_requires_the_secrets(compose_cmd: list[str], tmp_path: Path) -> None:
    env = tmp_path / "empty.env"
    env.write_text("GRAFANA_ADMIN_PASSWORD=x\n")
    proc = compose_config(compose_cmd, env)
    assert proc.returncode != 0
    assert "POSTGRES_PASSWORD" in proc.stderr
    env.write_text("POSTGRES_PASSWORD=x\n")
    proc = compose_config(compose_cmd, env)
    assert proc.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in proc.stderr


def test_every_mounted_file_exists(config: dict[str, Any]) -> None:
    mounts = []
    for name, svc in config["services"].items():
        for vol in svc.get("volumes", []):
            if vol["type"] == "bind":
                mounts.append((name, Path(vol["source"])))
    assert mounts
    missing = [(name, str(src)) for name, src in mounts if not src.exists()]
    assert not missing, f"bind mounts without a source in the repository: {missing}"
    for _, src in mounts:
        assert src.resolve().is_relative_to(ROOT), src


def test_images_are_pinned(config: dict[str, Any]) -> None:
    for name, svc in config["services"].items():
        image = svc.get("image", "")
        if "build" in svc:
            continue
        assert re.fullmatch(r"[\w./-]+:v?\d+(\.\d+)+(-[\w.]+)?", image), f"{name}: {image!r} is not pinned"
    manifest = yaml.safe_load((ROOT / "otel-collector" / "builder-config.yaml").read_text())
    collector = config["services"]["otel-collector"]["image"]
    assert collector == f"otel/opentelemetry-collector-contrib:{manifest['dist']['version']}"
    assert config["services"]["tempo"]["image"].startswith("grafana/tempo:2.8.")


def test_only_grafana_is_published(config: dict[str, Any]) -> None:
    published = {
        (name, int(p["target"])) for name, svc in config["services"].items() for p in svc.get("ports", [])
    }
    assert published == {("telemetry", 3000)}
    assert config["services"]["grafana"]["network_mode"] == "service:telemetry"


def test_grafana_is_locked(config: dict[str, Any]) -> None:
    env = config["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "test-only"


def test_health_checks(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in ("telemetry", "tempo", "prometheus", "alertmanager", "grafana", "postgres", "redis"):
        assert "healthcheck" in services[name], name
    # the collector's image has no shell: the namespace owner probes its health_check endpoint
    assert "13133" in " ".join(services["telemetry"]["healthcheck"]["test"])
    prom = " ".join(services["prometheus"]["command"])
    assert "--enable-feature=exemplar-storage" in prom
    assert "--storage.tsdb.retention.time=15d" in prom


def test_env_example_lists_every_variable() -> None:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    listed = {
        line.split("=", 1)[0].strip()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert used - listed == set(), f"not in .env.example: {sorted(used - listed)}"
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.startswith(("GRAFANA_ADMIN_PASSWORD=", "POSTGRES_PASSWORD=")):
            assert line.endswith("="), "no secrets in .env.example"
