"""Where the console finds the stack's configuration files at run time.

The configs (``otel-collector/``, ``jaeger/``, ``prometheus/``, ``tempo/``, ``docker-compose.yml``, ...) live at the
top of the VoxPulse source tree, where docker compose reads them too. The console reads them from an
explicit config directory, ``$VOXPULSE_CONFIG_DIR`` (the container image sets it), else from the
source checkout it runs from, else from the checkout that holds the current directory. Nothing is
looked up relative to the installed package alone, so a wheel install without a config directory
fails with a message that says what to set.
"""

from __future__ import annotations

from pathlib import Path

from voxpulse_console import settings

__all__ = ["ConfigDirError", "config_dir"]

#: A file every config directory has.
MARKER = Path("otel-collector") / "config.yaml"


class ConfigDirError(RuntimeError):
    """No config directory: ``$VOXPULSE_CONFIG_DIR`` unset and no source checkout found."""


def config_dir() -> Path:
    """The config directory (see the module docstring); raises :class:`ConfigDirError` when none."""
    explicit = settings.text(settings.CONFIG_DIR)
    if explicit:
        path = Path(explicit).expanduser().resolve()
        if not (path / MARKER).is_file():
            raise ConfigDirError(f"{settings.CONFIG_DIR.name}={explicit} does not hold {MARKER}")
        return path
    here = Path(__file__).resolve().parents[1]
    cwd = Path.cwd().resolve()
    for candidate in (here, cwd, *cwd.parents):
        if (candidate / MARKER).is_file():
            return candidate
    raise ConfigDirError(
        f"no VoxPulse config directory: set VOXPULSE_CONFIG_DIR to a folder holding {MARKER} "
        "(the top of the VoxPulse source tree), or run from inside one"
    )
