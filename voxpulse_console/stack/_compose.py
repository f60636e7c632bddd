"""Docker Compose: the same stack as containers (``voxpulse stack up --docker``; docker-compose.yml)."""

from __future__ import annotations

import shutil
import subprocess

from voxpulse_console._paths import config_dir
from voxpulse_console.stack._catalogue import StackError, find_binary, tool_names

__all__ = ["compose", "compose_command", "docker_available"]


def compose_command() -> list[str] | None:
    """How to run Docker Compose here: the Docker CLI plugin (``docker compose``), else the standalone
    binary scripts/build-backends.sh builds (``--only=compose``); None when there is neither."""
    candidates: list[list[str]] = [["docker", "compose"]] if shutil.which("docker") else []
    standalone = find_binary(tool_names("docker-compose"))
    if standalone is not None:
        candidates.append([str(standalone)])
    for cmd in candidates:
        try:
            if subprocess.run([*cmd, "version"], capture_output=True, timeout=30, check=False).returncode == 0:
                return cmd
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


def docker_available() -> bool:
    """True when a Docker engine answers (`docker info`) and Docker Compose exists."""
    if shutil.which("docker") is None:
        return False
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return info.returncode == 0 and compose_command() is not None


def compose(*args: str) -> None:
    cmd = compose_command()
    if cmd is None:
        raise StackError("no Docker Compose: run scripts/build-backends.sh --only=compose")
    argv = [*cmd, "-f", str(config_dir() / "docker-compose.yml"), *args]
    proc = subprocess.run(argv, cwd=config_dir(), check=False)
    if proc.returncode != 0:
        raise StackError(f"{' '.join(argv)} failed with exit code {proc.returncode}")

