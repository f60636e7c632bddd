"""VoxPulse as a LiveKit plugin, for one thing only: LiveKit's forkserver preloads the package a
registered plugin names (``telemetry.livekit._preload``), so a job process starts with VoxPulse loaded.

:func:`register` runs on ``import telemetry.livekit``: at once where livekit-agents is imported, else
when the process imports it (never importing it itself). LiveKit registers plugins on the main thread
only, and reads them when the worker starts: an agent that imports ``telemetry.livekit`` at the top of
its module, as the docs show, is registered in time; otherwise nothing changes but the saving.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from telemetry._instrumentation import _WhenImported

__all__ = ["PRELOAD", "register"]

PRELOAD: Final = "telemetry.livekit._preload"


def register() -> None:
    """Registers VoxPulse's LiveKit plugin, now or once livekit-agents is imported (idempotent)."""
    _REGISTRATION.give(None)


def _register(_: None) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # LiveKit refuses a plugin from another thread; the worker runs on the main one
    from livekit.agents import Plugin

    from telemetry import __version__

    if any(p.package == PRELOAD for p in Plugin.registered_plugins):
        return
    plugin = type("VoxPulsePlugin", (Plugin,), {})("voxpulse", __version__, PRELOAD, logging.getLogger("voxpulse"))
    Plugin.register_plugin(plugin)


_REGISTRATION: Final[_WhenImported[None]] = _WhenImported("livekit.agents", _register, "livekit.plugin")
