"""docker-compose.yml: accepted by `docker compose config` (no engine needed), every file it mounts
exists, images pinned, secrets required from the environment, only Grafana's and the console's ports
published; the trace store is Tempo by default and Jaeger with VOXPULSE_TRACE_STORE=jaeger (its profile), and that
one setting also points Grafana and Prometheus at it."""

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
# a console user for `docker compose config` (a hash of a throw-away password, never a real one)
# the one bind mount from outside the repository: node_exporter reads the host's file systems (read-only)
HOST_MOUNTS = {("node-exporter", "/")}
UI_USERS = "ops:scrypt.16384.8.1.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def compose_config(compose_cmd: list[str], env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_cmd, "-f", str(COMPOSE), "--env-file", str(env_file), "config", "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
        # only what the env file says: a developer's exported variables must not make the test pass
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home())},
    )


def _config(compose_cmd: list[str], folder: Path, **settings: str) -> dict[str, Any]:
    """`docker compose config` with .env.example plus the secrets, and ``settings`` changed in it."""
    env = folder / f"test-{'-'.join(settings.values()) or 'default'}.env"
    lines = ENV_EXAMPLE.read_text().splitlines()
    lines = [f"{line.split('=', 1)[0]}={settings[line.split('=', 1)[0]]}" if line.split("=", 1)[0] in settings
             else line for line in lines]
    env.write_text("\n".join(lines) + "\nGRAFANA_ADMIN_PASSWORD=test-only\nPOSTGRES_PASSWORD=test-only\n"
                   "LIVEKIT_API_KEY=test-only\nLIVEKIT_API_SECRET=test-only-not-a-secret-of-32-chars\n"
                   f"VOXPULSE_UI_USERS={UI_USERS}\n")
    proc = compose_config(compose_cmd, env)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.fixture(scope="module")
def config(compose_cmd: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _config(compose_cmd, tmp_path_factory.mktemp("compose"))


@pytest.fixture(scope="module")
def jaeger_config(compose_cmd: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _config(compose_cmd, tmp_path_factory.mktemp("compose-jaeger"), VOXPULSE_TRACE_STORE="jaeger")


def test_compose_requires_the_secrets(compose_cmd: list[str], tmp_path: Path) -> None:
    env = tmp_path / "empty.env"
    required = ("GRAFANA_ADMIN_PASSWORD", "POSTGRES_PASSWORD", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
    for missing in required:
        env.write_text("".join(f"{k}=x\n" for k in required if k != missing) + f"VOXPULSE_UI_USERS={UI_USERS}\n")
        proc = compose_config(compose_cmd, env)
        assert proc.returncode != 0, missing
        assert missing in proc.stderr, missing
    env.write_text("".join(f"{k}=x\n" for k in required))  # no console users: no default login
    proc = compose_config(compose_cmd, env)
    assert proc.returncode != 0
    assert "VOXPULSE_UI_USERS" in proc.stderr


@pytest.mark.parametrize("profile", ["default", "jaeger"])
def test_every_mounted_file_exists(config: dict[str, Any], jaeger_config: dict[str, Any], profile: str) -> None:
    mounts = []
    for name, svc in (config if profile == "default" else jaeger_config)["services"].items():
        for vol in svc.get("volumes", []):
            if vol["type"] == "bind":
                mounts.append((name, Path(vol["source"])))
    assert mounts
    missing = [(name, str(src)) for name, src in mounts if not src.exists()]
    assert not missing, f"bind mounts without a source in the repository: {missing}"
    for name, src in mounts:
        if (name, str(src)) in HOST_MOUNTS:
            continue
        assert src.resolve().is_relative_to(ROOT), src


def test_images_are_pinned(config: dict[str, Any], jaeger_config: dict[str, Any]) -> None:
    for name, svc in {**config["services"], **jaeger_config["services"]}.items():
        image = svc.get("image", "")
        if "build" in svc:
            continue
        assert re.fullmatch(r"[\w./-]+:v?\d+(\.\d+)+(-[\w.]+)?", image), f"{name}: {image!r} is not pinned"
    manifest = yaml.safe_load((ROOT / "otel-collector" / "builder-config.yaml").read_text())
    collector = config["services"]["otel-collector"]["image"]
    assert collector == f"otel/opentelemetry-collector-contrib:{manifest['dist']['version']}"
    assert config["services"]["tempo"]["image"].startswith("grafana/tempo:2.8.")
    # the native Jaeger's release, from the one place versions are pinned
    versions = dict(line.split("=", 1) for line in (ROOT / "scripts" / "versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    assert jaeger_config["services"]["jaeger"]["image"] == f"jaegertracing/jaeger:{versions['JAEGER_VERSION'][1:]}"


def test_only_grafana_and_the_console_are_published(config: dict[str, Any]) -> None:
    published = {
        (name, int(p["target"])) for name, svc in config["services"].items() for p in svc.get("ports", [])
    }
    assert published == {("telemetry", 3000), ("telemetry", 8090)}
    assert config["services"]["grafana"]["network_mode"] == "service:telemetry"
    assert config["services"]["console"]["network_mode"] == "service:telemetry"


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
        secret = ("GRAFANA_ADMIN_PASSWORD=", "POSTGRES_PASSWORD=", "LIVEKIT_API_KEY=", "LIVEKIT_API_SECRET=")
        if line.startswith(secret):
            assert line.endswith("="), "no secrets in .env.example"


def _mounts(svc: dict[str, Any]) -> dict[str, str]:
    """target -> source (relative to the repository for binds, the volume's name otherwise)."""
    out = {}
    for vol in svc.get("volumes", []):
        src = vol["source"]
        out[vol["target"]] = str(Path(src).relative_to(ROOT)) if vol["type"] == "bind" else src
    return out


def test_tempo_is_the_default_trace_store(config: dict[str, Any]) -> None:
    services = config["services"]
    assert "tempo" in services and "jaeger" not in services
    assert services["grafana"]["environment"]["VOXPULSE_TRACE_STORE"] == "tempo"
    prom = _mounts(services["prometheus"])
    assert prom["/etc/prometheus/targets/trace-store.yml"] == "prometheus/targets/trace-store-tempo.yml"
    assert "tempo" in services["grafana"]["depends_on"]


def test_jaeger_profile_replaces_tempo(jaeger_config: dict[str, Any]) -> None:
    """One setting (VOXPULSE_TRACE_STORE=jaeger): Jaeger runs instead of Tempo (its profile), with
    the native stack's config file, and Grafana and Prometheus follow."""
    services = jaeger_config["services"]
    assert "jaeger" in services and "tempo" not in services
    jaeger = services["jaeger"]
    assert jaeger["network_mode"] == "service:telemetry"
    assert _mounts(jaeger)["/etc/jaeger/jaeger.yaml"] == "jaeger/jaeger.yaml"
    assert jaeger["command"] == ["--config=file:/etc/jaeger/jaeger.yaml"]
    assert jaeger["environment"]["VOXPULSE_JAEGER_DATA"] in _mounts(jaeger)
    assert services["grafana"]["environment"]["VOXPULSE_TRACE_STORE"] == "jaeger"
    prom = _mounts(services["prometheus"])
    assert prom["/etc/prometheus/targets/trace-store.yml"] == "prometheus/targets/trace-store-jaeger.yml"
    # the collector's target is the same port either way; its queue is on a volume
    collector = services["otel-collector"]
    assert collector["environment"]["VOXPULSE_TRACE_STORE_OTLP"] == "127.0.0.1:4417"
    assert _mounts(collector)[collector["environment"]["VOXPULSE_COLLECTOR_QUEUE_DIR"]] == "otelcol-queue"
    # Jaeger's health is probed by the namespace owner (the image has no HTTP client)
    assert "13134/status" in " ".join(services["telemetry"]["healthcheck"]["test"])


def test_grafana_data_sources_cover_both_stores(config: dict[str, Any]) -> None:
    text = (ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text()
    assert {"tempo", "jaeger"} <= {d["uid"] for d in yaml.safe_load(text)["datasources"]}
    assert "datasourceUid: ${VOXPULSE_TRACE_STORE}" in text  # Grafana expands it from its environment
    assert "VOXPULSE_TRACE_STORE" in config["services"]["grafana"]["environment"]


@pytest.fixture(scope="module")
def tiered_config(compose_cmd: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _config(compose_cmd, tmp_path_factory.mktemp("compose-tiered"), VOXPULSE_TOPOLOGY="tiered")


def test_one_collector_is_the_default(config: dict[str, Any]) -> None:
    services = config["services"]
    assert not [n for n in services if n.startswith("otelcol-p")]
    assert services["otel-collector"]["command"] == ["--config=/etc/otelcol/single.yaml",
                                                     "--config=/etc/otelcol/compose.yaml"]
    assert _mounts(services["otel-collector"])["/etc/otelcol/single.yaml"] == "otel-collector/config.yaml"
    assert _mounts(services["otel-collector"])["/etc/otelcol/compose.yaml"] == "otel-collector/compose-single.yaml"
    prom = _mounts(services["prometheus"])
    assert prom["/etc/prometheus/targets/otelcol-processing.yml"] == "prometheus/targets/otelcol-processing-single.yml"


def test_tiered_profile_runs_the_scale_out_topology(tiered_config: dict[str, Any]) -> None:
    """One setting (VOXPULSE_TOPOLOGY=tiered): the load-balancing tier on the collector's ports,
    three processing collectors found by DNS (the network alias the resolver asks for, OTLP on its
    port), the other ports native, Prometheus scraping them (docs/scaling.md)."""
    from voxpulse_console.stack import processing_ports

    services = tiered_config["services"]
    lb = services["otel-collector"]
    assert lb["command"] == ["--config=/etc/otelcol/tiered.yaml", "--config=/etc/otelcol/compose.yaml"]
    assert _mounts(lb)["/etc/otelcol/tiered.yaml"] == "otel-collector/lb.yaml"
    assert _mounts(lb)["/etc/otelcol/compose.yaml"] == "otel-collector/compose-tiered.yaml"
    dns = yaml.safe_load((ROOT / "otel-collector" / "compose-tiered.yaml").read_text())[
        "exporters"]["load_balancing"]["resolver"]["dns"]
    for k in (1, 2, 3):
        p, svc = processing_ports(k), services[f"otelcol-p{k}"]
        env = svc["environment"]
        assert "network_mode" not in svc
        assert svc["networks"]["default"]["aliases"] == [dns["hostname"]]
        assert env["VOXPULSE_PROCESSING_OTLP_PORT"] == dns["port"]
        assert env["VOXPULSE_COLLECTOR_BIND"] == "0.0.0.0"
        assert svc["image"] == lb["image"]
        assert _mounts(svc)["/etc/otelcol/processing.yaml"] == "otel-collector/processing.yaml"
        assert {n: env[n] for n in p.env() if n != "VOXPULSE_PROCESSING_OTLP_PORT"} == {
            n: v for n, v in p.env().items() if n != "VOXPULSE_PROCESSING_OTLP_PORT"}
        assert f"http://otelcol-p{k}:{p.health}/" in services["telemetry"]["healthcheck"]["test"][1]
        assert _mounts(svc)[env["VOXPULSE_COLLECTOR_QUEUE_DIR"]] == f"otelcol-queue-p{k}"
        agent = services["agent"]["environment"]
        assert env["VOXPULSE_TRACE_SAMPLING_PERCENT"] == agent["VOXPULSE_TRACE_SAMPLING_PERCENT"]
    prom = _mounts(services["prometheus"])
    assert prom["/etc/prometheus/targets/otelcol-processing.yml"] == "prometheus/targets/otelcol-processing-tiered.yml"
    assert (prom["/etc/prometheus/targets/otelcol-processing-internal.yml"]
            == "prometheus/targets/otelcol-processing-internal-tiered.yml")


def test_the_single_topologys_target_files_equal_the_native_defaults() -> None:
    targets = ROOT / "prometheus" / "targets"
    for name in ("otelcol-processing", "otelcol-processing-internal"):
        assert yaml.safe_load((targets / f"{name}-single.yml").read_text()) == yaml.safe_load(
            (targets / f"{name}.yml").read_text()) == []


def test_the_exporters_run_as_natively(config: dict[str, Any], jaeger_config: dict[str, Any]) -> None:
    """node_exporter and the blackbox exporter: Debian bookworm's release lines, the native stack's
    flags and listen addresses (voxpulse_console/stack/_exporters.py), the repository's blackbox.yml, and
    the trace store's readiness probe follows VOXPULSE_TRACE_STORE."""
    from voxpulse_console.stack import _exporters as exporters

    services = config["services"]
    node, blackbox = services["node-exporter"], services["blackbox-exporter"]
    assert node["image"] == "prom/node-exporter:v1.5.0"
    assert blackbox["image"] == "prom/blackbox-exporter:v0.23.0"
    native = exporters.node_exporter_argv(Path("node_exporter"), Path())[1:]
    assert [a for a in node["command"] if not a.startswith("--path.rootfs=")] == native
    assert node["network_mode"] == blackbox["network_mode"] == "service:telemetry"
    host_root = next(v for v in node["volumes"] if v["target"] == "/host")
    assert host_root["source"] == "/" and host_root["read_only"] is True
    assert f"--web.listen-address={exporters.BLACKBOX_LISTEN}" in blackbox["command"]
    config_file = next(a.split("=", 1)[1] for a in blackbox["command"] if a.startswith("--config.file="))
    assert _mounts(blackbox)[config_file] == "prometheus/blackbox.yml"
    probe = "/etc/prometheus/targets/blackbox-http-trace-store.yml"
    assert _mounts(services["prometheus"])[probe] == "prometheus/targets/trace-store-probe-tempo.yml"
    assert (_mounts(jaeger_config["services"]["prometheus"])[probe]
            == "prometheus/targets/trace-store-probe-jaeger.yml")


def test_the_native_trace_store_probe_is_jaegers() -> None:
    targets = ROOT / "prometheus" / "targets"
    assert yaml.safe_load((targets / "trace-store-probe-jaeger.yml").read_text()) == yaml.safe_load(
        (targets / "blackbox-http-trace-store.yml").read_text())


def test_the_insights_receiver_runs_beside_the_collector(config: dict[str, Any]) -> None:
    """LiveKit Agents' observability upload: in the telemetry namespace (the collector it forwards to on
    127.0.0.1, agents on the compose network at telemetry:9097), not published, the stack's LiveKit key
    trusted, its files on a volume of its own, audio off unless enabled, probed like natively."""
    svc = config["services"]["insights-receiver"]
    assert svc["network_mode"] == "service:telemetry" and not svc.get("ports")
    assert svc["command"] == ["voxpulse", "insights-receiver", "--listen", "0.0.0.0:9097"]
    env = svc["environment"]
    assert env["VOXPULSE_INSIGHTS_KEYS"].startswith("test-only: test-only-not-a-secret-of-32-chars")
    assert env["VOXPULSE_INSIGHTS_AUDIO"] == "false"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert env["DATABASE_URL"].endswith("@postgres:5432/voxpulse")
    assert _mounts(svc) == {env["VOXPULSE_INSIGHTS_DIR"]: "insights-data"}
    assert "/insights-data" in config["services"]["volumes-init"]["command"]
    assert "9097/healthz" in " ".join(svc["healthcheck"]["test"])
