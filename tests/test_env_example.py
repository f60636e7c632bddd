"""Every environment variable the code reads is listed in .env.example, with no value that looks secret."""

from __future__ import annotations

import re
from pathlib import Path

from telemetry._env import EnvVar

ROOT = Path(__file__).resolve().parents[1]
IGNORED = {"COLUMNS", "CI", "HOME", "PATH"}


def _read_in_code() -> set[str]:
    names: set[str] = set()
    pattern = re.compile(
        r"""os\.environ(?:\.get)?[(\[]\s*["']([A-Z][A-Z0-9_]+)["']|getenv\(\s*["']([A-Z][A-Z0-9_]+)["']"""
    )
    for path in [*ROOT.glob("telemetry/**/*.py"), *ROOT.glob("agent/**/*.py"), *ROOT.glob("voxpulse_console/**/*.py")]:
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            names.add(m.group(1) or m.group(2))
    names |= {n for v in _tables() for n in v.names}
    return names - IGNORED


def _tables() -> list[EnvVar]:
    """The library's table and the tables built with its EnvVar (the console's, the example agent's)."""
    from agent import settings as agent_settings
    from telemetry import _env
    from voxpulse_console import settings as console_settings

    return [*_env.ENV_VARS, *console_settings.ENV_VARS, *agent_settings.ENV_VARS]


def test_every_variable_is_in_env_example() -> None:
    listed = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
              if "=" in line and not line.lstrip().startswith("#")}
    missing = sorted(_read_in_code() - listed)
    assert not missing, f"add to .env.example: {missing}"


def test_no_secret_values_in_env_example() -> None:
    secret = {n for v in _tables() if v.secret for n in v.names}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if key in secret:  # a table's credential-holding variable: no user info in a URL either
            assert "@" not in value, f"{key} must carry no credentials in .env.example"
        if any(word in key for word in ("PASSWORD", "SECRET", "TOKEN", "API_KEY")):
            assert value == "", f"{key} must be empty in .env.example"
