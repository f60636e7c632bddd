"""The insights receiver as a stack component: in the catalogue between the collector and Prometheus,
trusting the stack's LiveKit key, keeping its files in the stack's state folder, audio off unless the
operator enabled it, on ``up(bind=...)``'s address, in ``voxpulse stack env`` as
LIVEKIT_OBSERVABILITY_URL; and, under its keeper, ready, in ``stack status``, storing an upload signed
with the stack's key on the real PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from telemetry.semconv import Metric, metric_spec
from tests.insights.test_receiver import request_of
from voxpulse_console import insights, stack
from voxpulse_console.stack import _catalogue, _cli, _supervisor, _topology

NAME = "insights-receiver"
LAN = "192.0.2.10"  # TEST-NET-1: never reached, only named
METRICS_ADDR = "127.0.0.1:9198"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("VOXPULSE_INSIGHTS_DIR", "VOXPULSE_INSIGHTS_AUDIO", "VOXPULSE_INSIGHTS_KEYS",
                "VOXPULSE_INSIGHTS_LISTEN", "VOXPULSE_STACK_DIR", "VOXPULSE_STACK_BIND"):
        monkeypatch.delenv(var, raising=False)


def test_in_the_catalogue_after_the_collector_it_forwards_to() -> None:
    comp = stack.COMPONENTS[NAME]
    names = list(stack.COMPONENTS)
    assert names.index("otelcol") < names.index(NAME) < names.index("prometheus")
    assert comp.ready_url == "http://127.0.0.1:9097/healthz" and comp.ports == (9097,)
    assert comp.argv(Path("/venv/bin/voxpulse"), Path("/state") / NAME) == ["/venv/bin/voxpulse", "insights-receiver"]
    assert comp.binary_names == ("voxpulse",)
    assert _topology.tiered(2)[NAME] is comp  # the scale-out topology runs it too


@pytest.mark.usefixtures("clean_env")
def test_trusts_the_stack_key_and_keeps_files_in_the_state_folder(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    env = _catalogue.insights_env(tmp_path / NAME)
    assert env == {"VOXPULSE_STACK_DIR": str(tmp_path), "VOXPULSE_INSIGHTS_DIR": str(tmp_path / "insights")}
    creds = stack.livekit_env(tmp_path)  # made before LiveKit starts, so the receiver reads it at start-up
    assert creds["LIVEKIT_API_KEY"].startswith("API") and len(creds["LIVEKIT_API_SECRET"]) >= 32
    assert _catalogue.insights_env(tmp_path / NAME) == env and stack.livekit_env(tmp_path) == creds  # kept
    # what the receiver makes of that environment: the stack's key, the folder, no audio
    monkeypatch.chdir("/")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = insights.config_from_env(None, forward=False)
    assert dict(config.keys) == {creds["LIVEKIT_API_KEY"]: creds["LIVEKIT_API_SECRET"]}
    assert config.folder == tmp_path / "insights"
    assert config.keep_audio is False


@pytest.mark.usefixtures("clean_env")
def test_the_operators_folder_and_audio_setting_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXPULSE_INSIGHTS_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("VOXPULSE_INSIGHTS_AUDIO", "true")
    env = _catalogue.insights_env(tmp_path / NAME)
    assert env == {"VOXPULSE_STACK_DIR": str(tmp_path)}  # os.environ's folder and audio setting pass through
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = insights.config_from_env(None, forward=False)
    assert config.folder == tmp_path / "elsewhere" and config.keep_audio is True


def test_bound_with_the_console_and_the_collector() -> None:
    assert _catalogue.bind_env(LAN, {}, True)["VOXPULSE_INSIGHTS_LISTEN"] == f"{LAN}:9097"
    assert _catalogue.bind_env("::", {}, True)["VOXPULSE_INSIGHTS_LISTEN"] == ":::9097"
    assert _catalogue.bind_env("127.0.0.1", {}, False) == {}


@pytest.mark.parametrize(("bind", "base"), [
    ("127.0.0.1", "http://127.0.0.1:4318"),  # the default: bind_env changes nothing
    (LAN, f"http://{LAN}:4318"),  # the collector listens there only: 127.0.0.1:4318 is refused
    ("0.0.0.0", "http://127.0.0.1:4318"),  # a wildcard listens on the loopback too
    ("::", "http://127.0.0.1:4318"),
    ("2001:db8::10", "http://[2001:db8::10]:4318"),
])
def test_forwards_to_the_collector_where_it_listens(bind: str, base: str) -> None:
    """`stack up --bind ADDRESS` moves the collector's OTLP ports to ADDRESS; the receiver forwards
    there, whatever OTEL_EXPORTER_OTLP_* the operator's shell holds (the spawned process's environment,
    as the supervisor builds it)."""
    comp = stack.COMPONENTS[NAME]
    assert comp.env_from_stack is not None
    shell = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
             "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}
    env = {**shell, **_catalogue.bind_env(bind, {}, True)}
    env.update(comp.env_from_stack(env))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == base
    # what the receiver makes of it: telemetry's resolve(), its forward targets and its own metrics
    from telemetry._setup import resolve

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        config = insights.config_from_env(None)
        assert dict(config.forward) == {"traces": f"{base}/v1/traces", "metrics": f"{base}/v1/metrics"}
        own = resolve()
        assert (own.protocol, own.metrics_endpoint) == ("http/protobuf", f"{base}/v1/metrics")


@pytest.mark.usefixtures("clean_env")
def test_the_supervisor_applies_it_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spawned process's environment: the shell's, the component's own, up()'s (bind_env), then
    env_from_stack over all of them."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    env = _supervisor.process_env(stack.COMPONENTS[NAME], tmp_path / NAME, _catalogue.bind_env(LAN, {}, True))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{LAN}:4318"
    assert env["VOXPULSE_INSIGHTS_LISTEN"] == f"{LAN}:9097" and env["VOXPULSE_STACK_DIR"] == str(tmp_path)
    loopback = _supervisor.process_env(stack.COMPONENTS[NAME], tmp_path / NAME, {})
    assert loopback["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    other = _supervisor.process_env(stack.COMPONENTS["alerts-receiver"], tmp_path / "alerts-receiver",
                                    _catalogue.bind_env(LAN, {}, True))
    assert other["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"  # only the receiver's is derived


@pytest.mark.parametrize(("env", "url"), [
    ({}, "http://127.0.0.1:9097"),
    ({"VOXPULSE_STACK_BIND": LAN}, f"http://{LAN}:9097"),
    ({"VOXPULSE_STACK_BIND": "0.0.0.0"}, "http://127.0.0.1:9097"),
    ({"VOXPULSE_INSIGHTS_LISTEN": f"{LAN}:9197", "VOXPULSE_STACK_BIND": "0.0.0.0"}, f"http://{LAN}:9197"),
    ({"VOXPULSE_INSIGHTS_LISTEN": "::1:9097"}, "http://[::1]:9097"),
    ({"VOXPULSE_INSIGHTS_LISTEN": ":::9097"}, "http://127.0.0.1:9097"),
])
def test_observability_url(env: dict[str, str], url: str) -> None:
    assert _cli.observability_url(env) == url


@pytest.mark.usefixtures("clean_env")
def test_stack_env_prints_the_observability_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli.main(["env", "--state-dir", str(tmp_path)]) == 1  # no keys yet: nothing to print
    stack.livekit_env(tmp_path, create=True)
    capsys.readouterr()
    assert _cli.main(["env", "--state-dir", str(tmp_path)]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["LIVEKIT_OBSERVABILITY_URL"] == "http://127.0.0.1:9097"
    assert set(lines) == {"LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LIVEKIT_OBSERVABILITY_URL"}


# ------------------------------------------------------------------------------ under its keeper
@pytest.fixture
def receiver_up(tmp_path: Path, migrated_db: str, monkeypatch: pytest.MonkeyPatch,
                clean_env: None) -> Iterator[Path]:
    if stack.port_busy(9097) or stack.port_busy(int(METRICS_ADDR.rpartition(":")[2])):
        pytest.skip("127.0.0.1:9097 is taken (another stack): run inside a network namespace of your own")
    monkeypatch.setenv("DATABASE_URL", migrated_db)
    monkeypatch.delenv("VOXPULSE_DATABASE_URL", raising=False)
    # no collector here: its metrics on a /metrics endpoint of its own instead (the SDK's Prometheus
    # exporter, telemetry.configure's other way out), read below
    monkeypatch.setenv("VOXPULSE_EXPORTER", "none")
    monkeypatch.setenv("VOXPULSE_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("VOXPULSE_PROMETHEUS_ADDR", METRICS_ADDR)
    try:
        assert stack.up([NAME], state_dir=tmp_path, wait_s=30) == {NAME: "started"}
        yield tmp_path
    finally:
        stack.down([NAME], state_dir=tmp_path)


def scrape(series: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{labels (the SDK's otel_scope_* left out): value} of one series on the receiver process's /metrics."""
    text = httpx.get(f"http://{METRICS_ADDR}/metrics", timeout=5).text
    out = {}
    for line in text.splitlines():
        if line.startswith(series + "{"):
            labels = re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0])
            key = tuple(sorted((k, v) for k, v in labels if not k.startswith("otel_scope_")))
            out[key] = float(line.rsplit(" ", 1)[1])
    return out


@pytest.mark.db
def test_runs_under_its_keeper_and_stores_an_upload_signed_with_the_stack_key(receiver_up: Path) -> None:
    state = receiver_up
    (row,) = [r for r in stack.status(state_dir=state) if r.name == NAME]
    assert row.running and row.ready and row.pid is not None
    creds = stack.livekit_env(state)
    from livekit import api

    jwt = (api.AccessToken(creds["LIVEKIT_API_KEY"], creds["LIVEKIT_API_SECRET"])
           .with_observability_grants(api.ObservabilityGrants(write=True)).to_jwt())
    path, headers, body = request_of("recordings")
    url = _cli.observability_url()
    resp = httpx.post(url + path, content=body, headers={**headers, "Authorization": f"Bearer {jwt}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    call_id = resp.json()["call_id"]
    # in the stack's state folder; the audio dropped (off unless the operator enabled it)
    assert sorted(p.name for p in (state / "insights" / call_id).iterdir()) == ["chat_history.json"]
    assert json.loads((state / "insights" / call_id / "chat_history.json").read_text())["items"]
    # a token of another key is refused
    other = (api.AccessToken("APIother", "x" * 40).with_observability_grants(api.ObservabilityGrants(write=True))
             .to_jwt())
    assert httpx.post(url + path, content=body, headers={**headers, "Authorization": f"Bearer {other}"},
                      timeout=10).status_code == 401
    # the CLI's meter provider (telemetry.configure) counts: the logs upload's verdicts, once
    path, headers, body = request_of("logs")
    for _ in range(2):
        assert httpx.post(url + path, content=body, headers={**headers, "Authorization": f"Bearer {jwt}"},
                          timeout=10).status_code == 200
    judge, verdict = "voxpulse_insights_judge", "voxpulse_insights_verdict"
    assert scrape(metric_spec(Metric.INSIGHTS_VERDICTS).prometheus) == {
        ((judge, "conciseness"), (verdict, "fail")): 1.0, ((judge, "task_completion"), (verdict, "pass")): 1.0}
    status, kind = "http_response_status_code", "voxpulse_insights_upload_kind"
    assert scrape(metric_spec(Metric.INSIGHTS_UPLOADS).prometheus) == {
        ((status, "200"), (kind, "recordings")): 1.0, ((status, "401"), (kind, "recordings")): 1.0,
        ((status, "200"), (kind, "logs")): 2.0}
