"""The console reads its variables through ``voxpulse_console.settings`` and the library's through
``telemetry._env``: one lookup of each, one spelling of each default, read when a command needs it."""

from __future__ import annotations

import argparse

import pytest

from voxpulse_console import alert_receiver, settings, tracestore
from voxpulse_console import cli as console_cli
from voxpulse_console.ui import auth
from voxpulse_console.ui.config import UiConfig

USERS = f"a:{auth.hash_password('a-long-password')}"


def test_the_console_config_takes_its_defaults_from_the_table() -> None:
    cfg = UiConfig.from_env({"VOXPULSE_UI_USERS": USERS})
    assert cfg.listen == settings.DEFAULT_UI_LISTEN == "127.0.0.1:8090"
    assert cfg.prometheus_url == settings.DEFAULT_PROMETHEUS_URL == "http://127.0.0.1:9090"
    assert (cfg.login_free_failures, cfg.login_delay_s, cfg.trace_cache, cfg.session_idle_s) == (3, 1.0, 32, 8 * 3600)
    assert cfg.database_url is None


def test_the_console_finds_the_dsn_as_the_library_does() -> None:
    """VOXPULSE_DATABASE_URL, then DATABASE_URL; a blank one is unset (the library's rule)."""
    both = {"VOXPULSE_UI_USERS": USERS, "VOXPULSE_DATABASE_URL": "postgresql://own", "DATABASE_URL": "postgresql://app"}
    assert UiConfig.from_env(both).database_url == "postgresql://own"
    blank = {**both, "VOXPULSE_DATABASE_URL": "  "}
    assert UiConfig.from_env(blank).database_url == "postgresql://app"


def test_a_malformed_value_names_its_variable() -> None:
    with pytest.raises(ValueError, match="VOXPULSE_UI_LOGIN_DELAY_S"):
        UiConfig.from_env({"VOXPULSE_UI_USERS": USERS, "VOXPULSE_UI_LOGIN_DELAY_S": "soon"})
    with pytest.raises(ValueError, match="VOXPULSE_UI_TRACE_CACHE"):
        UiConfig.from_env({"VOXPULSE_UI_USERS": USERS, "VOXPULSE_UI_TRACE_CACHE": "-1"})


def test_the_cli_reads_prometheus_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXPULSE_PROMETHEUS_URL", "http://prom.example:9")
    assert console_cli._prometheus() == "http://prom.example:9"
    monkeypatch.delenv("VOXPULSE_PROMETHEUS_URL")
    assert console_cli._prometheus() == settings.DEFAULT_PROMETHEUS_URL


def test_the_cli_checks_the_collector_the_library_sends_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """``simulate --exporter auto`` probes the endpoint the library resolves: with gRPC, 4317."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    assert console_cli._collector() == "http://127.0.0.1:4318"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert console_cli._collector() == "http://127.0.0.1:4317"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert console_cli._collector() == "http://collector:4317"


def test_the_trace_store_options_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXPULSE_TRACE_STORE", "tempo")
    monkeypatch.setenv("VOXPULSE_TRACE_STORE_URL", "http://tempo.example:3200")
    from_env = console_cli.open_store(argparse.Namespace())
    assert (from_env.kind, from_env.url) == ("tempo", "http://tempo.example:3200")
    chosen = console_cli.open_store(argparse.Namespace(trace_store="jaeger", trace_store_url=None))
    assert (chosen.kind, chosen.url) == ("jaeger", "http://tempo.example:3200")
    monkeypatch.delenv("VOXPULSE_TRACE_STORE_URL")
    default = tracestore.from_env({"VOXPULSE_TRACE_STORE": "jaeger"})
    assert default.url == settings.DEFAULT_TRACE_STORE_URLS["jaeger"] == "http://127.0.0.1:16686"


def test_alert_links_use_the_consoles_listen_address() -> None:
    assert alert_receiver.console_url({}) == "http://127.0.0.1:8090/alerts"
    assert alert_receiver.console_url({"VOXPULSE_UI_LISTEN": "0.0.0.0:9000"}) == "http://127.0.0.1:9000/alerts"
    assert alert_receiver.console_url({"VOXPULSE_UI_PUBLIC_URL": "https://c.example/"}) == "https://c.example/alerts"
