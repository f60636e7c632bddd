"""``voxpulse stack up --bind ADDRESS``: the console and the collector's OTLP ports on an address other
than the loopback only with the console's TLS or the operator's explicit word; refused before anything
starts otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxpulse_console import stack
from voxpulse_console.stack import _catalogue, _supervisor

LAN = "192.0.2.10"  # TEST-NET-1: never reached, only named


def test_another_address_without_tls_is_refused_before_anything_starts(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("VOXPULSE_UI_TLS_CERT", "VOXPULSE_UI_TLS_KEY", "VOXPULSE_ALLOW_PLAIN_HTTP", "VOXPULSE_STACK_BIND"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(stack.StackError) as err:
        stack.up(["otelcol"], state_dir=tmp_path, bind=LAN)
    text = str(err.value)
    assert "plain HTTP" in text and "VOXPULSE_UI_TLS_CERT" in text and "--allow-plain-http" in text
    assert not [r.name for r in stack.status(state_dir=tmp_path) if r.running]
    assert not (tmp_path / "run").exists()  # nothing half-started


def test_the_environment_switch_is_refused_the_same_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXPULSE_STACK_BIND", LAN)
    monkeypatch.delenv("VOXPULSE_ALLOW_PLAIN_HTTP", raising=False)
    monkeypatch.delenv("VOXPULSE_UI_TLS_CERT", raising=False)
    with pytest.raises(stack.StackError, match="plain HTTP"):
        stack.up(["otelcol"], state_dir=tmp_path)


def test_not_an_address_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(stack.StackError, match="an IP address"):
        stack.up(["otelcol"], state_dir=tmp_path, bind="my-laptop.local")


@pytest.mark.parametrize(("env", "allow"), [
    ({"VOXPULSE_UI_TLS_CERT": "/etc/ssl/console.pem", "VOXPULSE_UI_TLS_KEY": "/etc/ssl/console.key"}, False),
    ({}, True),
    ({"VOXPULSE_ALLOW_PLAIN_HTTP": "1"}, False),
])
def test_tls_or_the_operators_word_binds_the_console_and_otlp(env: dict[str, str], allow: bool) -> None:
    assert _catalogue.bind_env(LAN, env, allow) == {"VOXPULSE_COLLECTOR_BIND": LAN, "VOXPULSE_UI_LISTEN": f"{LAN}:8090",
                                                    "VOXPULSE_INSIGHTS_LISTEN": f"{LAN}:9097"}
    assert _catalogue.bind_env("127.0.0.1", env, allow) == {}  # the default changes nothing
    assert _catalogue.bind_env("::", env, allow) == {"VOXPULSE_COLLECTOR_BIND": "::", "VOXPULSE_UI_LISTEN": ":::8090",
                                                     "VOXPULSE_INSIGHTS_LISTEN": ":::9097"}


def test_naming_the_collector_of_the_tiered_topology_brings_its_tier(tmp_path: Path) -> None:
    """`stack up --collectors 3 jaeger otelcol prometheus` started the load-balancing collector alone
    (every span routed nowhere) and said nothing: naming it brings its processing collectors and ring."""
    _supervisor._choose_topology(tmp_path, 3)
    names = _supervisor.component_names(["jaeger", "otelcol", "prometheus"], state=tmp_path)
    assert {"otelcol-1", "otelcol-2", "otelcol-3", "collector-ring"} <= set(names)
    assert names.index("otelcol-1") < names.index("otelcol") < names.index("prometheus")  # start order kept
    assert _supervisor.component_names(["livekit"], state=tmp_path) == ["media", "livekit"]
