"""The voxpulse CLI: the command wiring and its registry (no backend needed). The waterfall:
tests/console/test_waterfall.py."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support import ROOT
from voxpulse_console import registry
from voxpulse_console.cli import build_parser, main


def _pyproject_entry_points() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    eps: dict[str, str] = data["project"]["entry-points"][registry.GROUP]
    return eps


def test_commands_are_wired() -> None:
    parser = build_parser()
    args = parser.parse_args(["simulate", "--calls", "3", "--concurrency", "2", "--exporter", "none"])
    assert (args.calls, args.concurrency, args.exporter) == (3, 2, "none")
    assert parser.parse_args(["trace", "sim-1-0001"]).call_id == "sim-1-0001"
    args = parser.parse_args(["trace", "sim-1-0001", "--trace-store", "tempo", "--trace-store-url", "http://t:3200"])
    assert (args.trace_store, args.trace_store_url) == ("tempo", "http://t:3200")
    assert parser.parse_args(["demo"]).trace_store is None  # VOXPULSE_TRACE_STORE, else jaeger
    assert parser.parse_args(["demo", "--no-stack"]).no_stack
    assert parser.parse_args(["demo", "--calls", "4"]).calls == 4  # the agent's call options
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"simulate", "demo", "trace", "stack", "calls", "db", "ui", "alerts-receiver"} <= commands


def test_the_installed_entry_points_are_pyprojects() -> None:
    """The registry reads the installed metadata: a stale install (pyproject.toml changed since
    `pip install -e .`) would drop the agent's commands without a word."""
    installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=registry.GROUP)
                 if ep.dist is None or ep.dist.name == registry.DISTRIBUTION}
    assert installed == _pyproject_entry_points(), "reinstall the project: bash scripts/bootstrap.sh"


def test_the_agent_contributes_simulate_and_the_demo_calls() -> None:
    """pyproject's entry point names a module with register_cli and the demo's call functions."""
    value = _pyproject_entry_points()["simulate"]
    ep = importlib.metadata.EntryPoint("simulate", value, registry.GROUP)
    assert ep.module == "agent.commands" and ep.extras == []
    sub = argparse.ArgumentParser().add_subparsers()
    loaded = registry.load(sub, [ep])
    module = loaded["simulate"]
    assert "simulate" in sub.choices
    for name in ("add_sim_args", "simulate_calls", "print_summary", "real_calls"):
        assert callable(getattr(module, name)), name


def test_the_console_imports_no_agent_code() -> None:
    """Building the parser (every command) imports the agent only through its entry point."""
    code = ("import sys, importlib.metadata as m; import voxpulse_console.cli as c; "
            "m.entry_points = lambda **k: []; c.build_parser(); "
            "print(sorted(n for n in sys.modules if n == 'agent' or n.startswith('agent.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ------------------------------------------------------------------------------------------------
# a command module that fails to import: a real entry point of a real distribution on sys.path
# ------------------------------------------------------------------------------------------------
def _plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, *, extras: str = "") -> None:
    """An installed distribution (dist-info on sys.path) whose entry point ``broken`` names the
    module ``voxpulse_test_plugin`` with ``source``."""
    (tmp_path / "voxpulse_test_plugin.py").write_text(source, encoding="utf-8")
    info = tmp_path / "voxpulse_test_plugin-0.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: voxpulse-test-plugin\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text(f"[{registry.GROUP}]\nbroken = voxpulse_test_plugin{extras}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "voxpulse_test_plugin", raising=False)


@pytest.mark.parametrize(("source", "cause"), [
    ("import voxpulse_no_such_module\n", "No module named 'voxpulse_no_such_module'"),  # a typo
    ("from agent.sim import no_such_name\n", "cannot import name 'no_such_name'"),  # our own code, broken
    ("import rich.no_such_submodule\n", "No module named 'rich.no_such_submodule'"),  # installed, wrong name
    ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),  # any failure at import
    ("x = 1\n", "has no register_cli"),
])
def test_a_broken_command_module_fails_voxpulse_loudly(
    source: str, cause: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _plugin(tmp_path, monkeypatch, source)
    with pytest.raises(registry.CommandImportError, match=r"voxpulse_test_plugin \(broken\)") as err:
        build_parser()
    assert "install" not in str(err.value)
    assert main(["--help"]) == 1
    message = capsys.readouterr().err
    assert "voxpulse_test_plugin (broken)" in message and cause in message, message


def test_a_missing_optional_distribution_names_its_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Only a module a known optional distribution provides, really absent, reads as "install"."""
    monkeypatch.setitem(registry.OPTIONAL_MODULES, "voxpulse_absent_dist", "voxpulse-absent-dist")  # type: ignore[index]
    _plugin(tmp_path, monkeypatch, "import voxpulse_absent_dist\n", extras=" [agent]")
    parser = build_parser()  # the other commands still work
    assert {"broken", "demo", "trace"} <= set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    with pytest.raises(SystemExit) as exit_:
        main(["broken", "--calls", "3", "--help"])
    assert str(exit_.value.code) == ("voxpulse: voxpulse_test_plugin needs voxpulse-absent-dist, which is not "
                                     "installed: pip install 'voxpulse-otel[agent]'")


def test_a_missing_distribution_that_is_installed_is_a_broken_import() -> None:
    """ModuleNotFoundError for a known distribution's module that is in fact installed (a module
    shadowing it, a broken install) is not a missing extra."""
    assert registry.missing_distribution(ModuleNotFoundError("x", name="rich")) is None
    assert registry.missing_distribution(ModuleNotFoundError("x", name="livekit")) is None
    assert registry.missing_distribution(ImportError("cannot import name")) is None


def test_the_optional_modules_are_the_extras_distributions() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {req.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower()
                for reqs in data["project"]["optional-dependencies"].values() for req in reqs}
    assert set(registry.OPTIONAL_MODULES.values()) <= declared
