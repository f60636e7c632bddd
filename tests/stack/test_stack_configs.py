"""The configs, checked by the real tools (collector validate, jaeger validate, promtool), and a
deliberately broken copy of each rejected; plus the names contract with telemetry.semconv.

Tempo (docker compose only: its Go module is AGPL, so no Tempo binary is built here) is checked
without Tempo: its ports against the collector's exporter and Grafana's data source."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from telemetry import redaction, semconv
from tests.support import binary

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.stack

COLLECTOR = ROOT / "otel-collector" / "config.yaml"
JAEGER = ROOT / "jaeger" / "jaeger.yaml"
TEMPO = ROOT / "tempo" / "tempo.yaml"
PROMETHEUS = ROOT / "prometheus" / "prometheus.yml"
VERSIONS = ROOT / "scripts" / "versions.env"


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **env}, cwd=ROOT
    )


# --- collector ---------------------------------------------------------------------------------


def test_collector_config_is_valid() -> None:
    otelcol = binary("otelcol")
    proc = run([str(otelcol), "validate", f"--config={COLLECTOR}"])
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # a pipeline naming an exporter that is not defined
        ("exporters: [otlp_grpc/tracestore, span_metrics]", "exporters: [otlp_grpc/tracestore, span_metricz]"),
        # a bad value for a typed key
        ("      unit: ms\n", "      unit: minutes\n"),
        # the persistent queue measured in a unit the exporter does not know
        ("      sizer: items\n", "      sizer: spans\n"),
    ],
    ids=["undefined-component", "bad-unit", "bad-queue-sizer"],
)
def test_collector_rejects_broken_config(
    tmp_path: Path, old: str, new: str
) -> None:
    otelcol = binary("otelcol")
    text = COLLECTOR.read_text()
    assert old in text
    broken = tmp_path / "config.yaml"
    broken.write_text(text.replace(old, new))
    proc = run([str(otelcol), "validate", f"--config={broken}"])
    assert proc.returncode != 0


def test_collector_env_defaults_expand() -> None:
    """${env:NAME:-default} works in this build, and an override reaches the config."""
    otelcol = binary("otelcol")
    proc = run(
        [str(otelcol), "print-config", "--mode=unredacted", f"--config={COLLECTOR}"],
        VOXPULSE_SPANMETRICS_FLUSH="7s",
        VOXPULSE_COLLECTOR_BIND="0.0.0.0",
        VOXPULSE_COLLECTOR_QUEUE_DIR="/tmp/vp-queue",
    )
    assert proc.returncode == 0, proc.stderr
    effective = yaml.safe_load(proc.stdout)
    assert effective["connectors"]["span_metrics"]["metrics_flush_interval"] == "7s"
    assert effective["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "0.0.0.0:4317"
    exporter = effective["exporters"]["otlp_grpc/tracestore"]
    assert exporter["endpoint"] == "127.0.0.1:4417"
    assert exporter["sending_queue"]["queue_size"] == 200000
    assert effective["extensions"]["file_storage/queue"]["directory"] == "/tmp/vp-queue"
    assert effective["extensions"]["file_storage/queue"]["max_size"] == 1 << 30


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
    # redaction before both the connector and the trace store's exporter (the pipeline's exporters)
    assert "transform/redact" in traces["processors"]
    assert "redaction" in traces["processors"]
    # the join keys pass the collector's redaction as the library passes them: verbatim
    assert set(cfg["processors"]["redaction"]["ignored_keys"]) == redaction._VERBATIM_KEYS
    assert set(traces["exporters"]) == {"otlp_grpc/tracestore", "span_metrics"}
    # span-derived and SDK metrics both reach the Prometheus exporter
    exported = {name for name, p in pipelines.items() if "prometheus" in p.get("exporters", [])}
    assert any("span_metrics" in pipelines[n]["receivers"] for n in exported)
    assert any("otlp" in pipelines[n]["receivers"] for n in exported)


def test_builder_manifest_matches_config_components() -> None:
    """Every component type the config uses is compiled in (real `components` output)."""
    otelcol = binary("otelcol")
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


def test_prometheus_config_is_valid() -> None:
    promtool = binary("promtool")
    proc = run([str(promtool), "check", "config", str(PROMETHEUS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_rejects_broken_config(tmp_path: Path) -> None:
    promtool = binary("promtool")
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
    assert cfg["global"]["scrape_interval"] == "15s"  # the users' scrape interval, for everything else
    assert collector["scrape_interval"] == jobs["otel-collector-spans"]["scrape_interval"] == "3s"
    targets = {t for j in jobs.values() for sc in j.get("static_configs", []) for t in sc["targets"]}
    assert {"127.0.0.1:8888", "127.0.0.1:9093", "127.0.0.1:9090"} <= targets
    files = {f for j in jobs.values() for sd in j.get("file_sd_configs", []) for f in sd["files"]}
    assert {"targets/node.yml", "targets/livekit.yml", "targets/blackbox-*.yml"} <= files
    # the trace store's own metrics: Jaeger natively; compose mounts the file of the store it runs
    assert jobs["trace-store"]["file_sd_configs"][0]["files"] == ["targets/trace-store.yml"]
    folder = PROMETHEUS.parent / "targets"
    native = yaml.safe_load((folder / "trace-store.yml").read_text())
    assert native == yaml.safe_load((folder / "trace-store-jaeger.yml").read_text())
    assert native[0]["targets"] == ["127.0.0.1:14269"]
    assert yaml.safe_load((folder / "trace-store-tempo.yml").read_text())[0]["targets"] == ["127.0.0.1:3200"]
    assert cfg["rule_files"] == ["rules/*.yml"]
    am = cfg["alerting"]["alertmanagers"][0]
    assert am["api_version"] == "v2"
    assert am["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    assert cfg["storage"]["exemplars"]["max_exemplars"] > 0


# --- the trace export queue --------------------------------------------------------------------


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert m, duration
    return int(m[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m[2]]


def test_span_metrics_fresh_and_exemplar_complete() -> None:
    """Span end -> Prometheus within ~10 s (bench/bench_freshness.py measures it): flush + scrape + the
    batch timer under 8 s; and every flush scraped at least once (scrape < flush, or exemplars are
    lost); the same defaults in every collector config, docker-compose.yml and .env.example."""
    cfg = yaml.safe_load(PROMETHEUS.read_text())
    scrape = _seconds(next(j for j in cfg["scrape_configs"] if j["job_name"] == "otel-collector")["scrape_interval"])
    flushes = set()
    for name in ("config.yaml", "processing.yaml"):
        flushes |= set(re.findall(r"VOXPULSE_SPANMETRICS_FLUSH:-(\w+)\}", (ROOT / "otel-collector" / name).read_text()))
    flushes |= set(re.findall(r"VOXPULSE_SPANMETRICS_FLUSH:-(\w+)\}", (ROOT / "docker-compose.yml").read_text()))
    flushes |= set(re.findall(r"^VOXPULSE_SPANMETRICS_FLUSH=(\w+)$", (ROOT / ".env.example").read_text(), re.M))
    assert len(flushes) == 1, flushes
    flush = _seconds(flushes.pop())
    batch = _seconds(yaml.safe_load(COLLECTOR.read_text())["processors"]["batch"]["timeout"])
    assert scrape < flush
    assert flush + scrape + batch <= 8
    groups = {g["name"]: g for f in sorted((PROMETHEUS.parent / "rules").glob("*.yml"))
              for g in yaml.safe_load(f.read_text())["groups"]}
    for name in ("voxpulse-voice-alerts", "voxpulse-latency-recording"):
        assert _seconds(groups[name].get("interval", cfg["global"]["evaluation_interval"])) <= 5, name


def test_trace_export_queue_is_persistent_and_bounded() -> None:
    """Spans waiting for the trace store are on disk (they survive a collector restart), bounded in
    spans and in bytes, and retried until delivered (the bounded queue decides what is dropped)."""
    cfg = yaml.safe_load(COLLECTOR.read_text())
    exporter = cfg["exporters"]["otlp_grpc/tracestore"]
    queue = exporter["sending_queue"]
    assert queue["enabled"] is True and queue["storage"] == "file_storage/queue"
    assert queue["sizer"] == "items" and "queue_size" in queue
    assert exporter["retry_on_failure"]["max_elapsed_time"] == "0s"
    storage = cfg["extensions"]["file_storage/queue"]
    assert storage["create_directory"] is True and "max_size" in storage
    assert storage["compaction"]["on_rebound"] is True
    assert "file_storage/queue" in cfg["service"]["extensions"]
    from voxpulse_console import stack

    assert stack.COMPONENTS["otelcol"].env(Path("/s/otelcol")) == {"VOXPULSE_COLLECTOR_QUEUE_DIR": "/s/otelcol/queue"}


def test_builder_manifest_carries_the_scale_out_components() -> None:
    """One build serves today's config and the scale-out tier (tail sampling, load balancing)."""
    manifest = yaml.safe_load((ROOT / "otel-collector" / "builder-config.yaml").read_text())
    modules = {c["gomod"].split()[0].rsplit("/", 1)[-1] for s in ("receivers", "processors", "exporters",
                                                                 "connectors", "extensions") for c in manifest[s]}
    assert {"filestorage", "tailsamplingprocessor", "loadbalancingexporter", "otlphttpexporter",
            "otlpexporter", "forwardconnector"} <= modules
    versions = {c["gomod"].split()[1] for s in ("receivers", "processors", "exporters", "connectors", "extensions")
                for c in manifest[s]}
    builder = dict(line.split("=", 1) for line in VERSIONS.read_text().splitlines()
                   if "=" in line and not line.startswith("#"))["BUILDER_VERSION"]
    assert versions == {f"v{builder}"} and manifest["dist"]["version"] == builder


# --- Jaeger ------------------------------------------------------------------------------------


def test_jaeger_config_is_valid(tmp_path: Path) -> None:
    jaeger = binary("jaeger")
    proc = run([str(jaeger), "validate", f"--config=file:{JAEGER}"], VOXPULSE_JAEGER_DATA=str(tmp_path))
    assert proc.returncode == 0 and "Error" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_jaeger_rejects_broken_config(tmp_path: Path) -> None:
    jaeger = binary("jaeger")
    broken = tmp_path / "jaeger.yaml"
    broken.write_text(JAEGER.read_text().replace("exporters: [jaeger_storage_exporter]", "exporters: [nowhere]"))
    proc = run([str(jaeger), "validate", f"--config=file:{broken}"], VOXPULSE_JAEGER_DATA=str(tmp_path))
    # `jaeger validate` exits 0 on errors in this version; it prints them
    assert "references exporter \"nowhere\" which is not configured" in proc.stdout + proc.stderr


def _expand_env(text: str, env: dict[str, str]) -> str:
    """The collector's ${env:NAME:-default} expansion, for a config file read here."""
    return re.sub(r"\$\{env:([A-Z0-9_]+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1), m.group(2) or ""), text)


def test_jaeger_on_cassandra_layers_over_the_stacks_config(tmp_path: Path) -> None:
    """jaeger/jaeger-cassandra.yaml over jaeger.yaml (--trace-store cassandra): valid for the binary;
    the spans go to Cassandra and the query reads them there, the retention is the keyspace's TTL, and
    the exporter's queue pushes back instead of dropping."""
    jaeger = binary("jaeger")
    overlay = JAEGER.parent / "jaeger-cassandra.yaml"
    env = {"VOXPULSE_JAEGER_DATA": str(tmp_path), "VOXPULSE_JAEGER_RETENTION": "48h"}
    proc = run([str(jaeger), "validate", f"--config=file:{JAEGER}", f"--config=file:{overlay}"], **env)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(_expand_env(overlay.read_text(encoding="utf-8"), env))
    (name,) = cfg["extensions"]["jaeger_storage"]["backends"]
    cassandra = cfg["extensions"]["jaeger_storage"]["backends"][name]["cassandra"]
    assert cfg["extensions"]["jaeger_query"]["storage"]["traces"] == name
    exporter = cfg["exporters"]["jaeger_storage_exporter"]
    assert exporter["trace_storage"] == name
    assert exporter["queue"]["block_on_overflow"] is True
    assert cassandra["schema"]["create"] is True and cassandra["schema"]["trace_ttl"] == "48h"
    assert cassandra["schema"]["replication_factor"] == 1
    assert cassandra["connection"]["servers"] == ["127.0.0.1:9042"]
    # only what is searched is indexed: call_id (the console, Grafana), the slow turns (Grafana)
    from telemetry.semconv import Attr

    assert {Attr.CALL_ID, Attr.TURN_SLOW} <= set(cassandra["index"]["tag_whitelist"].split(","))
    from voxpulse_console import stack

    node = yaml.safe_load((ROOT / "cassandra" / "cassandra.yaml").read_text(encoding="utf-8"))
    assert node["native_transport_port"] == stack.CASSANDRA.ports[0]
    assert node["listen_address"] == node["rpc_address"] == "127.0.0.1"  # the loopback only


def test_jaeger_settings_the_stack_relies_on(tmp_path: Path) -> None:
    """Effective config: ports, storage in the state dir with a retention, self-tracing off, own
    metrics off the collector's ports, no batching before disk. The binary validates the file with
    these settings; the file is then read with the same ${env:...} expansion (Jaeger v2.12.0's
    `print-config` panics in its collector v0.139.0 -- a nil dereference in otelcol.unmarshal -- so
    the binary's own print-out is not available on the approved release)."""
    jaeger = binary("jaeger")
    env = {"VOXPULSE_JAEGER_DATA": str(tmp_path), "VOXPULSE_JAEGER_RETENTION": "48h"}
    proc = run([str(jaeger), "validate", f"--config=file:{JAEGER}"], **env)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(_expand_env(JAEGER.read_text(encoding="utf-8"), env))
    otlp = cfg["receivers"]["otlp"]["protocols"]
    assert (otlp["grpc"]["endpoint"], otlp["http"]["endpoint"]) == ("127.0.0.1:4417", "127.0.0.1:4418")
    query = cfg["extensions"]["jaeger_query"]
    assert (query["http"]["endpoint"], query["grpc"]["endpoint"]) == ("127.0.0.1:16686", "127.0.0.1:16685")
    assert query["enable_tracing"] is False
    (backend,) = cfg["extensions"]["jaeger_storage"]["backends"].values()
    badger = backend["badger"]
    assert badger["ephemeral"] is False and badger["consistency"] is True
    assert badger["directories"] == {"keys": f"{tmp_path}/keys", "values": f"{tmp_path}/values"}
    assert badger["ttl"]["spans"] == "48h"
    assert cfg["extensions"]["healthcheckv2"]["http"]["endpoint"] == "127.0.0.1:13134"
    (reader,) = cfg["service"]["telemetry"]["metrics"]["readers"]
    assert reader["pull"]["exporter"]["prometheus"]["port"] == 14269
    assert cfg["service"]["pipelines"]["traces"]["processors"] == []
    from voxpulse_console import stack

    comp = stack.COMPONENTS["jaeger"]
    assert comp.ready_url == "http://127.0.0.1:13134/status"
    assert {4417, 4418, 16686, 16685, 13134, 14269} == set(comp.ports)
    assert not set(comp.ports) & set(stack.COMPONENTS["otelcol"].ports)
    assert comp.env(tmp_path) == {"VOXPULSE_JAEGER_DATA": str(tmp_path / "data")}
    assert list(stack.COMPONENTS).index("jaeger") < list(stack.COMPONENTS).index("otelcol")


def test_trace_store_ports_agree() -> None:
    """The collector exports to 127.0.0.1:4417, where Jaeger (native, compose) and Tempo (compose)
    both take OTLP; Grafana's data sources and the console's defaults point at their query ports."""
    from voxpulse_console import tracestore

    collector = yaml.safe_load(COLLECTOR.read_text())
    endpoint = collector["exporters"]["otlp_grpc/tracestore"]["endpoint"]
    assert endpoint == "${env:VOXPULSE_TRACE_STORE_OTLP:-127.0.0.1:4417}"
    jaeger = yaml.safe_load(JAEGER.read_text())
    assert jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4417")
    tempo = yaml.safe_load(TEMPO.read_text())
    assert tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4417")
    assert tempo["server"]["http_listen_port"] == 3200
    datasources = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text())
    urls = {d["uid"]: d["url"] for d in datasources["datasources"]}
    assert urls["jaeger"] == tracestore.DEFAULT_URLS["jaeger"] == "http://127.0.0.1:16686"
    assert urls["tempo"] == tracestore.DEFAULT_URLS["tempo"] == "http://127.0.0.1:3200"


# --- alertmanager (as `voxpulse stack up` runs it) ---------------------------------------------------


def test_stack_renders_alertmanager_config_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voxpulse_console.stack import _catalogue

    for name in ("VOXPULSE_ALERTMANAGER_CONFIG", "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "SLACK_WEBHOOK_URL",
                 "SMTP_SMARTHOST", "ALERT_EMAIL_TO", "ALERTS_RECEIVER_URL"):
        monkeypatch.delenv(name, raising=False)
    out = _catalogue.alertmanager_config(tmp_path)
    assert out.parent == tmp_path and out.stat().st_mode & 0o777 == 0o600
    cfg = yaml.safe_load(out.read_text())
    receivers = {r["name"]: r for r in cfg["receivers"]}
    assert receivers["alerts-history"]["webhook_configs"][0]["url"] == f"http://{_catalogue.RECEIVER_LISTEN}/alerts"
    assert not any("telegram_configs" in r or "slack_configs" in r for r in receivers.values())
    amtool = binary("amtool")
    proc = run([str(amtool), "check-config", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stack_puts_the_telegram_secret_only_in_the_rendered_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voxpulse_console import stack
    from voxpulse_console.stack import _catalogue

    monkeypatch.delenv("VOXPULSE_ALERTMANAGER_CONFIG", raising=False)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:test-token")
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "-100200")
    out = _catalogue.alertmanager_config(tmp_path)
    assert "123:test-token" in out.read_text()
    assert "123:test-token" not in (ROOT / "prometheus" / "alertmanager.yml").read_text()
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "not-a-number")
    with pytest.raises(stack.StackError, match="TELEGRAM_CHAT_ID"):
        _catalogue.alertmanager_config(tmp_path)
