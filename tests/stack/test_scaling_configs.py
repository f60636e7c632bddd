"""The scale-out configs (docs/scaling.md), checked by the real tools and against the one source of names.

* Every collector config in otel-collector/ and in docs/scaling.md passes the collector's own
  ``validate`` (the load-balancing tier layered with its ring file, with each resolver example and
  with docker compose's DNS resolver), and a broken one is rejected.
* The load-balancing tier loses nothing the single collector would not: its queue is on disk
  (file_storage, in the builder manifest), retried without giving up through the ring as it is then,
  with no per-backend queue that would take a batch off the disk and drop it with its backend.
* What the processing collectors repeat from the single collector (redaction, the span-metrics
  connector, the SDK-metric guard) is the same; the tail-sampling rules use semconv's names and the
  time-to-first-word objective; the share uses telemetry.sampling's hash salt.
* Prometheus: the config the native stack renders for N processing collectors passes promtool;
  every dashboard and rule query over span metrics sums the collectors' series (no per-collector
  or per-restart split can reach a panel or an alert).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from telemetry import semconv
from telemetry.sampling import HASH_SALT
from tests.support import binary
from voxpulse_console import stack
from voxpulse_console.stack import _topology

ROOT = Path(__file__).resolve().parents[2]
COL = ROOT / "otel-collector"
SINGLE, LB, PROCESSING = COL / "config.yaml", COL / "lb.yaml", COL / "processing.yaml"
COMPOSE_SINGLE, COMPOSE_TIERED = COL / "compose-single.yaml", COL / "compose-tiered.yaml"
EXAMPLES = sorted((COL / "examples").glob("*.yaml"))
JAEGER_EXAMPLES = sorted((ROOT / "jaeger" / "examples").glob("*.yaml"))
SCALING_DOC = ROOT / "docs" / "scaling.md"

pytestmark = pytest.mark.stack


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **env}, cwd=ROOT)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def validate(otelcol: Path, *configs: Path) -> subprocess.CompletedProcess[str]:
    return run([str(otelcol), "validate", *(f"--config={c}" for c in configs)])


# --- the collector's own validate --------------------------------------------------------------------


def test_processing_and_lb_configs_are_valid(tmp_path: Path) -> None:
    otelcol = binary("otelcol")
    for cfg in (PROCESSING, LB):
        proc = validate(otelcol, cfg)
        assert proc.returncode == 0, (cfg.name, proc.stderr)
    ring = tmp_path / "ring.yaml"
    _topology.write_ring_file(ring, [stack.processing_ports(k).endpoint for k in (1, 2, 3)])
    proc = validate(otelcol, LB, ring)
    assert proc.returncode == 0, proc.stderr
    # docker compose layers one of these over the collector's config (docker-compose.yml)
    for base, overlay in ((SINGLE, COMPOSE_SINGLE), (LB, COMPOSE_TIERED)):
        proc = validate(otelcol, base, overlay)
        assert proc.returncode == 0, (overlay.name, proc.stderr)


def _base(example: Path) -> Path:
    """examples/lb-*.yaml are layered over lb.yaml, examples/processing-*.yaml over processing.yaml."""
    return LB if example.name.startswith("lb-") else PROCESSING


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_examples_are_valid(example: Path) -> None:
    assert example.name.startswith(("lb-", "processing-")), example.name
    proc = validate(binary("otelcol"), _base(example), example)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("example", JAEGER_EXAMPLES, ids=[e.name for e in JAEGER_EXAMPLES])
def test_jaeger_examples_are_valid(example: Path, tmp_path: Path) -> None:
    jaeger = binary("jaeger")
    proc = run([str(jaeger), "validate", f"--config=file:{example}"], VOXPULSE_JAEGER_DATA=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    broken = tmp_path / example.name
    broken.write_text(example.read_text().replace("shards: 5", "shards: five"))
    assert run([str(jaeger), "validate", f"--config=file:{broken}"]).returncode != 0


def test_two_resolvers_at_once_are_rejected(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text("exporters:\n  load_balancing:\n    resolver:\n      dns:\n        hostname: otelcol-processing\n")
    proc = validate(binary("otelcol"), LB, both)
    assert proc.returncode != 0 and "only one resolver" in proc.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("sampling_percentage: ${env:VOXPULSE_TRACE_SAMPLING_PERCENT:-100}", "sampling_percentage: ten"),
        ("decision_wait: ${env:VOXPULSE_TRACE_DECISION_WAIT:-15m}", "decision_wait: soon"),
        ("receivers: [span_metrics, span_metrics/kept]", "receivers: [span_metrics, span_metrics/kepd]"),
    ],
    ids=["bad-percentage", "bad-duration", "undefined-connector"],
)
def test_broken_processing_config_is_rejected(tmp_path: Path, old: str,
                                              new: str) -> None:
    text = PROCESSING.read_text()
    assert old in text
    broken = tmp_path / "processing.yaml"
    broken.write_text(text.replace(old, new))
    assert validate(binary("otelcol"), broken).returncode != 0


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("      storage: file_storage/queue\n", "      storage_id: file_storage/queue\n"),
        ("      max_elapsed_time: 0s\n", "      max_elapsed_time: never\n"),
        ("      sizer: items\n", "      sizer: spans\n"),
    ],
    ids=["unknown-queue-key", "bad-duration", "bad-sizer"],
)
def test_broken_lb_queue_is_rejected(tmp_path: Path, old: str, new: str) -> None:
    text = LB.read_text()
    assert text.count(old) == 1
    broken = tmp_path / "lb.yaml"
    broken.write_text(text.replace(old, new))
    assert validate(binary("otelcol"), broken).returncode != 0


# --- no loss that the single collector would not have ------------------------------------------------


def test_lb_queues_on_disk_and_retries_through_the_ring() -> None:
    """The load-balancing exporter's own queue (in front of the ring) is on disk and bounded, its
    retries never give up, and the per-backend template has no queue or retries of its own: a batch
    that failed on a dead collector comes back to the disk queue and is re-routed through the ring
    as it is when retried (the exporter's README, "Resilience and scaling considerations"). No batch
    processor before it: a span the tier acknowledged is on disk."""
    lb = load(LB)
    exporter = lb["exporters"]["load_balancing"]
    queue, retry = exporter["sending_queue"], exporter["retry_on_failure"]
    assert queue["enabled"] is True and queue["sizer"] == "items"
    storage = queue["storage"]
    assert storage.split("/")[0] == "file_storage" and storage in lb["service"]["extensions"]
    # the same queue folder, bounds and crash recovery as the single collector's trace-store queue
    assert lb["extensions"][storage] == load(SINGLE)["extensions"]["file_storage/queue"]
    assert queue["queue_size"] == load(SINGLE)["exporters"]["otlp_grpc/tracestore"]["sending_queue"]["queue_size"]
    assert retry["enabled"] is True and retry["max_elapsed_time"] == "0s"
    # batched from the queue, not before it: nothing in memory between the acknowledgement and the disk
    assert queue["batch"] == {"flush_timeout": "1s", "min_size": 2048}
    assert lb["service"]["pipelines"]["traces"]["processors"] == ["memory_limiter"]
    backend = exporter["protocol"]["otlp"]
    assert backend["sending_queue"] == {"enabled": False}
    assert backend["retry_on_failure"] == {"enabled": False}
    # the extension is built into the native collector (compose's contrib image has it too)
    manifest = load(COL / "builder-config.yaml")
    assert any("/extension/storage/filestorage " in e["gomod"] for e in manifest["extensions"])


def test_the_native_stack_gives_the_lb_its_queue_folder(tmp_path: Path) -> None:
    env = _topology.tiered(3)["otelcol"].env(tmp_path)
    assert env["VOXPULSE_COLLECTOR_QUEUE_DIR"] == str(tmp_path / "queue")
    assert env["VOXPULSE_COLLECTOR_NAME"] == "lb"


def test_compose_finds_the_processing_collectors_by_dns() -> None:
    """docker compose's tiered topology: the DNS resolver replaces the static list (a dead collector
    leaves Docker's DNS answer, and so the ring), re-resolving every few seconds."""
    resolver = load(COMPOSE_TIERED)["exporters"]["load_balancing"]["resolver"]
    assert resolver["static"] is None
    dns = resolver["dns"]
    assert dns["hostname"] == "otelcol-processing" and dns["port"] == "4317"
    assert dns["interval"] == "2s" and dns["timeout"] == "1s"
    assert load(COMPOSE_SINGLE) is None  # one collector: config.yaml unchanged


def _doc_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", SCALING_DOC.read_text(encoding="utf-8"), flags=re.S)


def test_every_collector_config_in_the_scaling_doc_is_a_validated_file() -> None:
    """Every YAML block of docs/scaling.md is one of the example files, verbatim (its first line
    names it), and that file passes the collector's -- or Jaeger's -- own validate above."""
    blocks = _doc_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        m = re.match(r"# ((?:otel-collector|jaeger)/examples/\S+\.yaml)\n", block)
        assert m, f"a YAML block of docs/scaling.md is not an example file: {block[:80]!r}"
        path = ROOT / m.group(1)
        body = path.read_text(encoding="utf-8")
        assert block == body, f"docs/scaling.md's {m.group(1)} differs from the file"
        assert path in EXAMPLES or path in JAEGER_EXAMPLES


# --- one source of names -----------------------------------------------------------------------------


def test_processing_repeats_the_single_collectors_redaction_and_span_metrics() -> None:
    single, processing = load(SINGLE), load(PROCESSING)
    for name in ("transform/redact", "redaction", "transform/spanmetrics", "batch"):
        assert processing["processors"][name] == single["processors"][name], name
    # the memory limiter alike but for its limit: a processing collector holds calls for their decision
    # (its own variable and default, sized in docs/scaling.md section 6; bench_scaling judges the default)
    limiter = dict(processing["processors"]["memory_limiter"])
    single_limiter = dict(single["processors"]["memory_limiter"])
    assert limiter.pop("limit_mib") == "${env:VOXPULSE_PROCESSING_MEMORY_MIB:-1024}"
    assert single_limiter.pop("limit_mib") == "${env:VOXPULSE_COLLECTOR_MEMORY_MIB:-512}"
    assert limiter == single_limiter
    exact, kept = processing["connectors"]["span_metrics"], processing["connectors"]["span_metrics/kept"]
    reference = dict(single["connectors"]["span_metrics"])
    assert reference.pop("exemplars")["enabled"] is True
    assert {k: v for k, v in exact.items() if k != "exemplars"} == reference
    assert exact["exemplars"] == {"enabled": False}
    assert {k: v for k, v in kept.items() if k not in ("exemplars", "namespace")} == {
        k: v for k, v in reference.items() if k != "namespace"}
    assert kept["exemplars"]["enabled"] is True
    assert [d["name"] for d in exact["dimensions"]] == list(semconv.SPANMETRICS_DIMENSIONS)
    # the kept series' names as semconv says
    assert kept["namespace"].replace(".", "_") + "_duration_milliseconds" == semconv.SPANMETRICS_KEPT_DURATION
    assert kept["namespace"].replace(".", "_") + "_calls_total" == semconv.SPANMETRICS_KEPT_CALLS
    assert load(LB)["processors"]["transform/metrics"] == single["processors"]["transform/metrics"]
    assert processing["exporters"]["otlp_grpc/tracestore"] == single["exporters"]["otlp_grpc/tracestore"]


def _policies() -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in load(PROCESSING)["processors"]["tail_sampling"]["policies"]}


def test_tail_sampling_rules_use_semconv() -> None:
    pol = _policies()
    assert set(pol) == {"error", "slow-turn", "transfer", "tool-anomaly", "exemplar", "share"}
    assert pol["error"]["status_code"]["status_codes"] == ["ERROR"]
    (slow,) = pol["slow-turn"]["ottl_condition"]["span"]
    assert f'attributes["{semconv.Attr.TURN_TTFW}"]' in slow
    objective = re.search(r"VOXPULSE_TTFW_OBJECTIVE_S:-([\d.]+)\}", slow)
    assert objective and float(objective.group(1)) == semconv.TTFW_OBJECTIVE_S
    assert pol["transfer"]["string_attribute"] == {"key": semconv.Attr.CALL_OUTCOME,
                                                   "values": [semconv.CallOutcome.TRANSFERRED.value]}
    (anomaly,) = pol["tool-anomaly"]["ottl_condition"]["span"]
    assert f'attributes["{semconv.Attr.TOOL_ANOMALY}"]' in anomaly
    assert pol["exemplar"]["boolean_attribute"] == {"key": semconv.Attr.TRACE_KEEP, "value": True}
    assert pol["share"]["probabilistic"]["hash_salt"] == HASH_SALT
    stamp = load(PROCESSING)["processors"]["transform/collector"]["trace_statements"][0]["statements"][0]
    assert f'span.attributes["{semconv.Attr.COLLECTOR}"]' in stamp


def test_the_latency_alert_uses_the_same_objective() -> None:
    rules = load(ROOT / "prometheus" / "rules" / "alerts-voice.yml")
    (alert,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "VoiceResponseLatencyHigh"]
    threshold = re.search(r">\s*([\d.]+)\s*$", alert["expr"].strip())
    assert threshold and float(threshold.group(1)) == semconv.TTFW_OBJECTIVE_S


def test_every_setting_of_the_tier_configs_is_in_env_example() -> None:
    listed = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
              if "=" in line and not line.startswith("#")}
    for cfg in (LB, PROCESSING):
        used = set(re.findall(r"\$\{env:([A-Z_][A-Z0-9_]*)", cfg.read_text())) - {"NAME"}  # NAME: the comment
        assert used - listed == set(), f"{cfg.name}: not in .env.example: {sorted(used - listed)}"


# --- Prometheus ----------------------------------------------------------------------------------------


def test_rendered_prometheus_config_for_the_tier_is_valid(tmp_path: Path) -> None:
    promtool = binary("promtool")
    argv = _topology.tiered_prometheus_argv(3)(Path("/usr/bin/prometheus"), tmp_path)
    rendered = Path(next(a for a in argv if a.startswith("--config.file=")).split("=", 1)[1])
    proc = run([str(promtool), "check", "config", str(rendered)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = load(rendered)
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    spans = load(Path(jobs["otel-collector-spans"]["file_sd_configs"][0]["files"][0]))
    assert [g["targets"] for g in spans] == [[f"127.0.0.1:{stack.processing_ports(k).metrics}"]
                                              for k in (1, 2, 3)]
    assert [g["labels"]["collector"] for g in spans] == ["p1", "p2", "p3"]
    assert jobs["otel-collector-spans"]["honor_labels"] is True


def test_compose_target_files_list_the_three_processing_collectors() -> None:
    targets = ROOT / "prometheus" / "targets"
    assert load(targets / "otelcol-processing.yml") == []  # one collector: nothing to scrape
    for name, port in (("otelcol-processing-tiered.yml", "metrics"), ("otelcol-processing-internal-tiered.yml",
                                                                        "telemetry")):
        groups = load(targets / name)
        # by service name: in compose they run on the compose network, not in Prometheus's namespace
        assert [g["targets"] for g in groups] == [
            [f"otelcol-p{k}:{getattr(stack.processing_ports(k), port)}"] for k in (1, 2, 3)]


SPAN_SERIES = re.compile(r"(?<![\w:])(traces_span_(?:metrics|kept)_\w+)")
AGGREGATIONS = ("sum", "avg", "max", "min", "count", "topk", "bottomk", "quantile", "group")


def _enclosing_aggregation(expr: str, pos: int) -> str | None:
    """The innermost aggregation operator whose parentheses hold position ``pos``, with its grouping."""
    depth = 0
    for i in range(pos, -1, -1):
        if expr[i] == ")":
            depth += 1
        elif expr[i] == "(":
            if depth == 0:
                head = expr[:i].rstrip()
                m = re.search(r"(\w+)\s*(?:(by|without)\s*\(([^)]*)\))?\s*$", head)
                if m and m.group(1) in AGGREGATIONS:
                    return f"{m.group(1)} {m.group(2) or ''} ({m.group(3) or ''})"
                if m and m.group(2):  # `sum by (x) (...)`: the name before `by`
                    return None
            else:
                depth -= 1
    return None


def _prom_queries() -> list[tuple[str, str]]:
    out = []
    for f in sorted((ROOT / "grafana" / "dashboards").rglob("*.json")):
        out += [(f"{f.parent.name}/{f.name}", e) for e in re.findall(r'"expr": "((?:[^"\\]|\\.)*)"', f.read_text())]
    for f in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        out += [(f.name, r["expr"]) for g in load(f)["groups"] for r in g["rules"]]
    return out


def test_span_metric_queries_sum_over_the_collectors() -> None:
    """Each processing collector exposes its own span-metric series (label instance / collector):
    a query must aggregate them away, or a panel would show one line per collector and a rule fire
    per collector."""
    checked = 0
    for where, expr in _prom_queries():
        expr = expr.replace('\\"', '"')
        for m in SPAN_SERIES.finditer(expr):
            agg = _enclosing_aggregation(expr, m.start())
            assert agg is not None, f"{where}: {m.group(1)} outside any aggregation in {expr}"
            assert "instance" not in agg and "collector" not in agg, f"{where}: keeps the collector in {agg}"
            assert not agg.startswith(("topk", "bottomk")), f"{where}: {agg}"
            checked += 1
    assert checked >= 20


def test_the_aggregation_check_catches_a_per_collector_query() -> None:
    assert _enclosing_aggregation("rate(traces_span_metrics_calls_total[5m])", 5) is None
    expr = "sum by (instance) (rate(traces_span_metrics_calls_total[5m]))"
    assert "instance" in str(_enclosing_aggregation(expr, expr.index("traces_")))
