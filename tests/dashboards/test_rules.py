"""Alert and recording rules (promtool) and the Alertmanager configuration (amtool).

Runs Debian's promtool 2.42 and amtool 0.25 (scripts/build-backends.sh --only=debian); skipped
when they are missing unless VOXPULSE_REQUIRE_STACK is set.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import binary
from voxpulse_console.alert_receiver import render_alertmanager_config, write_alertmanager_config

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
TESTS = sorted((PROM / "rules" / "tests").glob("*.test.yml"))
AM = PROM / "alertmanager.yml"
DASHBOARD_UIDS = {"voxpulse-realtime", "voxpulse-voice-quality", "voxpulse-agent-performance",
                  "voxpulse-analytics", "voxpulse-call-explorer"}

# The alerts the users asked for (voice agent, hosts, targets, media, probes), plus the pipeline's health.
SEED_ALERTS = {
    "VoiceHighTransferRate", "VoiceStageErrors", "VoiceResponseLatencyHigh", "VoiceOperatorQueueHigh",
    "VoiceApiSpendAnomaly", "VoiceToolCallAnomaly", "HostCpuHigh", "HostMemoryHigh", "HostDiskHigh",
    "TargetDown", "LiveKitPacketLossHigh", "ProbeFailed",
    "OtelCollectorRefusingSpans", "OtelCollectorDroppingSpans", "OtelCollectorExportFailing",
    "AgentSpansDropped", "TempoNotReady",
}


def _run(cmd: list[str | Path], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def alert_rules() -> list[dict[str, Any]]:
    return [r for f in RULES for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules() -> None:
    res = _run([binary("promtool"), "check", "rules", *map(str, RULES)])
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_promtool_test_rules() -> None:
    res = _run([binary("promtool"), "test", "rules", *(t.name for t in TESTS)], cwd=PROM / "rules" / "tests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") == len(TESTS), res.stdout


def test_prometheus_config_loads_these_rules() -> None:
    cfg = PROM / "prometheus.yml"
    assert cfg.is_file(), f"{cfg} is committed: a missing config is a failure, not a skip"
    assert "rules/*.yml" in yaml.safe_load(cfg.read_text())["rule_files"]
    res = _run([binary("promtool"), "check", "config", str(cfg)])
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alert_is_unit_tested_both_ways() -> None:
    """Each alert has a promtool case where it fires and one where it stays silent."""
    fires: set[str] = set()
    silent: set[str] = set()
    for f in TESTS:
        for case in yaml.safe_load(f.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                (fires if t.get("exp_alerts") else silent).add(t["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names >= SEED_ALERTS
    assert names - fires == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested silent"


def test_alerts_are_annotated() -> None:
    runbooks = (PROM / "runbooks.md").read_text()
    anchors = {h.lower() for h in re.findall(r"^## (\w+)", runbooks, re.M)}
    seen = set()
    for r in alert_rules():
        name = r["alert"]
        assert name not in seen, f"duplicate alert {name}"
        seen.add(name)
        labels, ann = r.get("labels", {}), r.get("annotations", {})
        assert labels.get("severity") in ("critical", "warning"), name
        assert labels.get("service"), name
        assert ann.get("summary") and ann.get("description"), name
        runbook = ann.get("runbook_url", "")
        assert runbook.startswith("prometheus/runbooks.md#") and runbook.split("#")[1] in anchors, name
        dash = ann.get("dashboard", "")
        assert dash.startswith("/d/") and dash.split("/")[2] in DASHBOARD_UIDS, name
        if "traceql" in ann:
            assert ann["traceql"].startswith("{") and ann["traceql"].endswith("}"), name


# ------------------------------------------------------------------------------- Alertmanager


def test_amtool_check_committed_config() -> None:
    res = _run([binary("amtool"), "check-config", str(AM)])
    assert res.returncode == 0, res.stdout + res.stderr


FULL_ENV = {
    "TELEGRAM_BOT_TOKEN": "123456:test-token-not-real",
    "TELEGRAM_CHAT_ID": "-1001234567890",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/services/T0/B0/x",
    "SLACK_CHANNEL": "#voice-alerts",
    "SMTP_SMARTHOST": "smtp.invalid:587",
    "SMTP_FROM": "alerts@example.invalid",
    "SMTP_PASSWORD": "not-a-secret",
    "ALERT_EMAIL_TO": "oncall@example.invalid",
    "ALERTS_RECEIVER_URL": "http://127.0.0.1:19095/alerts",
    "ALERT_WEBHOOK_URL": "https://hooks.example.invalid/voxpulse",
    "VOXPULSE_UI_PUBLIC_URL": "https://console.example.invalid/",
}


@pytest.mark.parametrize("env", [FULL_ENV, {}], ids=["all-integrations", "history-only"])
def test_amtool_check_rendered_config(env: dict[str, str], tmp_path: Path) -> None:
    text = render_alertmanager_config(AM.read_text(), env, allow_missing=True)
    out = tmp_path / "alertmanager.yml"
    write_alertmanager_config(out, text, PROM)
    assert out.stat().st_mode & 0o777 == 0o600
    cfg = yaml.safe_load(out.read_text())
    receivers = {r["name"]: r for r in cfg["receivers"]}
    if env:
        tele = receivers["telegram-critical"]["telegram_configs"][0]
        assert tele["bot_token"] == env["TELEGRAM_BOT_TOKEN"] and tele["chat_id"] == -1001234567890
        assert cfg["global"]["slack_api_url"] == env["SLACK_WEBHOOK_URL"]
        assert receivers["email"]["email_configs"][0]["to"] == env["ALERT_EMAIL_TO"]
        assert receivers["alerts-history"]["webhook_configs"][0]["url"] == env["ALERTS_RECEIVER_URL"]
        assert receivers["webhook"]["webhook_configs"][0]["url"] == env["ALERT_WEBHOOK_URL"]
        console = "https://console.example.invalid/alerts"
        assert receivers["slack-email-warnings"]["slack_configs"][0]["title_link"] == console
        assert f'href="{console}"' in tele["message"]
        assert f"Console: {console}" in receivers["email"]["email_configs"][0]["text"]
    else:
        assert "telegram_configs" not in receivers["telegram-critical"]
        assert "slack_configs" not in receivers["slack-email-warnings"]
        assert "webhook_configs" not in receivers["webhook"]
        assert receivers["alerts-history"]["webhook_configs"][0]["send_resolved"] is True
    res = _run([binary("amtool"), "check-config", str(out)])
    assert res.returncode == 0, res.stdout + res.stderr


def test_render_refuses_missing_secrets() -> None:
    from voxpulse_console.alert_receiver import ConfigError

    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN"):
        render_alertmanager_config(AM.read_text(), {})


def test_no_secrets_committed() -> None:
    cfg = yaml.safe_load(AM.read_text())
    tele = cfg["receivers"][1]["telegram_configs"][0]
    assert tele["bot_token"] == "${TELEGRAM_BOT_TOKEN}"
    assert "slack_api_url" not in cfg["global"] and "smtp_auth_password" not in cfg["global"]


@pytest.mark.parametrize(("labels", "receivers"), [
    ({"alertname": "VoiceStageErrors", "severity": "critical", "service": "voice-agent"},
     "alerts-history,webhook,telegram-critical"),
    ({"alertname": "VoiceResponseLatencyHigh", "severity": "warning", "service": "voice-agent"},
     "alerts-history,webhook,slack-email-warnings"),
    ({"alertname": "VoiceApiSpendAnomaly", "severity": "warning", "notify": "email"}, "alerts-history,webhook,email"),
])
def test_routing(labels: dict[str, str], receivers: str) -> None:
    res = _run([binary("amtool"), "config", "routes", "test", f"--config.file={AM}",
                *(f"{k}={v}" for k, v in labels.items())])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == receivers


def test_inhibition_rules() -> None:
    cfg = yaml.safe_load(AM.read_text())
    rules = cfg["inhibit_rules"]
    # target down silences its dependants (same service), and the collector's down every pipeline alert
    assert {"source_matchers": ['alertname="TargetDown"'], "target_matchers": ['alertname!="TargetDown"'],
            "equal": ["service"]} in rules
    assert any('pipeline="otel"' in r["target_matchers"] for r in rules)
    pipeline = {r["alert"] for r in alert_rules() if r.get("labels", {}).get("pipeline") == "otel"}
    assert {"VoiceStageErrors", "VoiceResponseLatencyHigh", "AgentSpansDropped"} <= pipeline
