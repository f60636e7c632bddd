"""The configs, checked by the real tools (collector validate, promtool, tempo -config.verify),
and a deliberately broken copy of each rejected; plus the names contract with telemetry.semconv."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from telemetry import semconv

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.stack

COLLECTOR = ROOT / "otel-collector" / "config.yaml"
TEMPO = ROOT / "tempo" / "tempo.yaml"
PROMETHEUS = ROOT / "prometheus" / "prometheus.yml"


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **env}, cwd=ROOT
    )


# --- collector ---------------------------------------------------------------------------------


def test_collector_config_is_valid(need: Callable[[str], Path]) -> None:
    otelcol = need("otelcol")
    proc = run([str(otelcol), "validate", f"--config={COLLECTOR}"])
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # a pipeline naming an exporter that is not defined
        ("exporters: [otlp_grpc/tempo, span_metrics]", "exporters: [otlp_grpc/tempo, span_metricz]"),
        # a bad value for a typed key
        ("      unit: ms\n", "      unit: minutes\n"),
    ],
    ids=["undefined-component", "bad-unit"],
)
def test_collector_rejects_broken_config(
    need: Callable[[str], Path], tmp_path: Path, old: str, new: str
) -> None:
    otelcol = need("otelcol")
    text = COLLECTOR.read_text()
    assert old in text
    broken = tmp_path / "config.yaml"
    broken.write_text(text.replace(old, new))
    proc = run([str(otelcol), "validate", f"--config={broken}"])
    assert proc.returncode != 0


def test_collector_env_defaults_expand(need: Callable[[str], Path]) -> None:
    """${env:NAME:-default} works in this build, and an override reaches the config."""
    otelcol = need("otelcol")
    proc = run(
        [str(otelcol), "print-config", "--mode=unredacted", f"--config={COLLECTOR}"],
        VOXPULSE_SPANMETRICS_FLUSH="7s",
        VOXPULSE_COLLECTOR_BIND="0.0.0.0",
    )
    assert proc.returncode == 0, proc.stderr
    effective = yaml.safe_load(proc.stdout)
    assert effective["connectors"]["span_metrics"]["metrics_flush_interval"] == "7s"
    assert effective["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert effective["exporters"]["otlp_grpc/tempo"]["endpoint"] == "127.0.0.1:4417"


def _ms(d: str) -> float:
    if d.endswith("ms"):
        return float(d[:-2])
    assert d.endswith("s"), d
    return float(d[:-1]) * 1000


def test_collector_follows_semconv() -> None:
    cfg = yaml.safe_load(COLLECTOR.read_text())
    sm = cfg["connectors"]["span_metrics"]
    assert sm["namespace"] == "traces.span.metrics"
    assert sm["histogram"]["unit"] == "ms"
    buckets = [_ms(b) for b in sm["histogram"]["explicit"]["buckets"]]
    assert buckets == [round(b * 1000, 6) for b in semconv.DURATION_BUCKETS_S]
    dims = [d["name"] for d in sm["dimensions"]]
    assert tuple(dims) == semconv.SPANMETRICS_DIMENSIONS
    assert semconv.Attr.CALL_ID not in dims
    assert "collector.instance.id" in sm["exclude_dimensions"]
    assert sm["exemplars"]["enabled"] is True
    assert sm["aggregation_cardinality_limit"] > 0
    assert "metrics_flush_interval" in sm
    prom = cfg["exporters"]["prometheus"]
    assert prom["enable_open_metrics"] is True
    pipelines = cfg["service"]["pipelines"]
    traces = pipelines["traces"]
    # redaction before both the connector and the Tempo exporter (they are the pipeline's exporters)
    assert "transform/redact" in traces["processors"]
    assert "redaction" in traces["processors"]
    assert set(traces["exporters"]) == {"otlp_grpc/tempo", "span_metrics"}
    # span-derived and SDK metrics both reach the Prometheus exporter
    exported = {name for name, p in pipelines.items() if "prometheus" in p.get("exporters", [])}
    assert any("span_metrics" in pipelines[n]["receivers"] for n in exported)
    assert any("otlp" in pipelines[n]["receivers"] for n in exported)


def test_builder_manifest_matches_config_components(need: Callable[[str], Path]) -> None:
    """Every component type the config uses is compiled in (real `components` output)."""
    otelcol = need("otelcol")
    proc = run([str(otelcol), "components"])
    assert proc.returncode == 0, proc.stderr
    built = yaml.safe_load(proc.stdout)
    cfg = yaml.safe_load(COLLECTOR.read_text())
    for section in ("receivers", "processors", "exporters", "connectors", "extensions"):
        have = {c["name"] for c in built.get(section) or []}
        used = {key.split("/")[0] for key in cfg.get(section) or {}}
        assert used <= have, f"{section}: {used - have} not in the build"
    versions = {c["module"].split()[-1] for s in ("receivers", "processors", "exporters", "connectors",
                                                  "extensions") for c in built.get(s) or []}
    assert versions == {"v" + built["buildinfo"]["version"]}, versions


# --- Prometheus --------------------------------------------------------------------------------


def test_prometheus_config_is_valid(need: Callable[[str], Path]) -> None:
    promtool = need("promtool")
    proc = run([str(promtool), "check", "config", str(PROMETHEUS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_rejects_broken_config(need: Callable[[str], Path], tmp_path: Path) -> None:
    promtool = need("promtool")
    shutil.copytree(PROMETHEUS.parent, tmp_path / "prometheus")
    broken = tmp_path / "prometheus" / "prometheus.yml"
    broken.write_text(PROMETHEUS.read_text().replace("scrape_interval: 15s", "scrape_interval: fifteen", 1))
    proc = run([str(promtool), "check", "config", str(broken)])
    assert proc.returncode != 0


def test_prometheus_scrapes_what_the_design_says() -> None:
    cfg = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    collector = jobs["otel-collector"]
    assert collector["honor_labels"] is True
    assert collector["static_configs"][0]["targets"] == ["127.0.0.1:8889"]
    assert collector.get("scrape_interval", cfg["global"]["scrape_interval"]) == "15s"
    targets = {t for j in jobs.values() for sc in j.get("static_configs", []) for t in sc["targets"]}
    assert {"127.0.0.1:8888", "127.0.0.1:3200", "127.0.0.1:9093", "127.0.0.1:9090"} <= targets
    files = {f for j in jobs.values() for sd in j.get("file_sd_configs", []) for f in sd["files"]}
    assert {"targets/node.yml", "targets/livekit.yml", "targets/blackbox-*.yml"} <= files
    assert cfg["rule_files"] == ["rules/*.yml"]
    am = cfg["alerting"]["alertmanagers"][0]
    assert am["api_version"] == "v2"
    assert am["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    assert cfg["storage"]["exemplars"]["max_exemplars"] > 0


# --- Tempo -------------------------------------------------------------------------------------


def test_tempo_config_is_valid(need: Callable[[str], Path], tmp_path: Path) -> None:
    tempo = need("tempo")
    proc = run(
        [str(tempo), f"-config.file={TEMPO}", "-config.expand-env=true", "-config.verify=true"],
        VOXPULSE_TEMPO_DATA=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tempo_rejects_broken_config(need: Callable[[str], Path], tmp_path: Path) -> None:
    tempo = need("tempo")
    broken = tmp_path / "tempo.yaml"
    broken.write_text(TEMPO.read_text().replace("trace_idle_period:", "trace_idle_periods:"))
    proc = run(
        [str(tempo), f"-config.file={broken}", "-config.expand-env=true", "-config.verify=true"],
        VOXPULSE_TEMPO_DATA=str(tmp_path),
    )
    assert proc.returncode != 0
    assert "trace_idle_periods" in proc.stdout + proc.stderr


# --- alertmanager (as `voxpulse stack up` runs it) ---------------------------------------------------


def test_stack_renders_alertmanager_config_without_secrets(
    need: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voxpulse_console import stack

    for name in ("VOXPULSE_ALERTMANAGER_CONFIG", "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "SLACK_WEBHOOK_URL",
                 "SMTP_SMARTHOST", "ALERT_EMAIL_TO", "ALERTS_RECEIVER_URL"):
        monkeypatch.delenv(name, raising=False)
    out = stack._alertmanager_config(tmp_path)
    assert out.parent == tmp_path and out.stat().st_mode & 0o777 == 0o600
    cfg = yaml.safe_load(out.read_text())
    receivers = {r["name"]: r for r in cfg["receivers"]}
    assert receivers["alerts-history"]["webhook_configs"][0]["url"] == f"http://{stack.RECEIVER_LISTEN}/alerts"
    assert not any("telegram_configs" in r or "slack_configs" in r for r in receivers.values())
    amtool = need("amtool")
    proc = run([str(amtool), "check-config", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stack_puts_the_telegram_secret_only_in_the_rendered_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voxpulse_console import stack

    monkeypatch.delenv("VOXPULSE_ALERTMANAGER_CONFIG", raising=False)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:test-token")
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "-100200")
    out = stack._alertmanager_config(tmp_path)
    assert "123:test-token" in out.read_text()
    assert "123:test-token" not in (ROOT / "prometheus" / "alertmanager.yml").read_text()
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "not-a-number")
    with pytest.raises(stack.StackError, match="TELEGRAM_CHAT_ID"):
        stack._alertmanager_config(tmp_path)
