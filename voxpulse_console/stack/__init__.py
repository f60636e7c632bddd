"""Run the VoxPulse backend stack natively: OTel Collector, Jaeger, Prometheus, Alertmanager, the
exporters and the LiveKit server (and the web console, ``ui``, when its users are configured).

Each component is a background process in its own session (it outlives the CLI that started it)
with the repository's own config file; its state, log and pid live in the stack's state folder
(``.voxpulse/stack`` by default; the layout in :mod:`._layout`). ``up()`` waits on each component's
readiness endpoint; it is idempotent (what already runs is left alone).

Everything listens on the host's loopback, where the user's browser and agents reach it. Only our
LiveKit server runs in the media namespace (component ``media``, made without root by :mod:`._media`:
libwebrtc offers no loopback candidates, so the callers and the demo's agent reach it over 198.18.0.1
there); its ports 7880 and 6789 are published on the host's loopback. ``voxpulse stack up
--without-livekit`` is the stack for agents on a LiveKit server of the user's own. Inside a media
namespace of one's own (no way out, 198.18.0.1 on an interface) LiveKit runs right there, with no
``media`` component. The server's API key and secret are generated once per install into the stack's
env file (mode 0600; ``voxpulse stack env`` prints it, :func:`livekit_env` reads it).

Binaries come from ``scripts/build-backends.sh`` (cached in ``$VOXPULSE_CACHE_DIR/bin``, default
``~/.cache/voxpulse/bin``) or from ``PATH`` (Debian's prometheus, prometheus-alertmanager).

    from voxpulse_console import stack
    stack.up()                      # {'jaeger': 'started', 'otelcol': 'started', ...}
    stack.status()                  # [ComponentStatus(...), ...]
    stack.kill("otelcol"); stack.start("otelcol")   # fault tests
    stack.down()

The private modules, one job each: ``_catalogue`` (the components and their binaries), ``_supervisor``
(processes: spawn, pidfiles, readiness, stop, status, logs), ``_topology`` (the scale-out topology and
its ring), ``_media`` (the media namespace), ``_exporters`` (node_exporter, blackbox exporter),
``_compose`` (Docker Compose), ``_cli`` (``voxpulse stack ...``), ``_layout`` (the state folder).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voxpulse_console.stack._catalogue import (
        CASSANDRA,
        COMPONENTS,
        LIVEKIT_COMPONENTS,
        OPTIONAL,
        TRACE_STORES,
        Component,
        StackError,
        binaries,
        cache_dir,
        ensure_built,
        find_binary,
        livekit_env,
    )
    from voxpulse_console.stack._cli import main, register_cli
    from voxpulse_console.stack._compose import compose_command, docker_available
    from voxpulse_console.stack._layout import DEFAULT_STATE_DIR
    from voxpulse_console.stack._layout import state_path as state_dir
    from voxpulse_console.stack._media import MEDIA_ADDRESS, MediaError, MediaNamespace
    from voxpulse_console.stack._media import supported as media_supported
    from voxpulse_console.stack._supervisor import (
        ComponentStatus,
        components,
        down,
        in_media_namespace,
        kill,
        logs,
        media_namespace,
        pid,
        port_busy,
        ready,
        restart,
        start,
        status,
        stop,
        up,
    )
    from voxpulse_console.stack._topology import LISTEN as RING_LISTEN
    from voxpulse_console.stack._topology import MAX_COLLECTORS, ProcessingPorts, processing_ports
    from voxpulse_console.stack._trace_store import trace_store

# Loaded on first use (PEP 562), so that ``python -m voxpulse_console.stack._keeper`` and ``._media`` (run by
# a bare Python, without the venv's packages) import only what they need. name -> (module, attribute).
_LAZY: dict[str, tuple[str, str]] = {
    "state_dir": ("_layout", "state_path"),
    "binaries": ("_catalogue", "binaries"),
    "cache_dir": ("_catalogue", "cache_dir"),
    "Component": ("_catalogue", "Component"),
    "COMPONENTS": ("_catalogue", "COMPONENTS"),
    "CASSANDRA": ("_catalogue", "CASSANDRA"),
    "TRACE_STORES": ("_catalogue", "TRACE_STORES"),
    "trace_store": ("_trace_store", "trace_store"),
    "components": ("_supervisor", "components"),
    "ComponentStatus": ("_supervisor", "ComponentStatus"),
    "compose_command": ("_compose", "compose_command"),
    "DEFAULT_STATE_DIR": ("_layout", "DEFAULT_STATE_DIR"),
    "docker_available": ("_compose", "docker_available"),
    "down": ("_supervisor", "down"),
    "ensure_built": ("_catalogue", "ensure_built"),
    "find_binary": ("_catalogue", "find_binary"),
    "in_media_namespace": ("_supervisor", "in_media_namespace"),
    "kill": ("_supervisor", "kill"),
    "LIVEKIT_COMPONENTS": ("_catalogue", "LIVEKIT_COMPONENTS"),
    "livekit_env": ("_catalogue", "livekit_env"),
    "logs": ("_supervisor", "logs"),
    "main": ("_cli", "main"),
    "MAX_COLLECTORS": ("_topology", "MAX_COLLECTORS"),
    "MEDIA_ADDRESS": ("_media", "MEDIA_ADDRESS"),
    "media_namespace": ("_supervisor", "media_namespace"),
    "media_supported": ("_media", "supported"),
    "MediaError": ("_media", "MediaError"),
    "MediaNamespace": ("_media", "MediaNamespace"),
    "OPTIONAL": ("_catalogue", "OPTIONAL"),
    "pid": ("_supervisor", "pid"),
    "port_busy": ("_supervisor", "port_busy"),
    "processing_ports": ("_topology", "processing_ports"),
    "ProcessingPorts": ("_topology", "ProcessingPorts"),
    "ready": ("_supervisor", "ready"),
    "register_cli": ("_cli", "register_cli"),
    "restart": ("_supervisor", "restart"),
    "RING_LISTEN": ("_topology", "LISTEN"),
    "StackError": ("_catalogue", "StackError"),
    "start": ("_supervisor", "start"),
    "status": ("_supervisor", "status"),
    "stop": ("_supervisor", "stop"),
    "up": ("_supervisor", "up"),
}


def __getattr__(name: str) -> object:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "CASSANDRA",
    "COMPONENTS",
    "DEFAULT_STATE_DIR",
    "LIVEKIT_COMPONENTS",
    "MAX_COLLECTORS",
    "MEDIA_ADDRESS",
    "OPTIONAL",
    "RING_LISTEN",
    "TRACE_STORES",
    "Component",
    "ComponentStatus",
    "MediaError",
    "MediaNamespace",
    "ProcessingPorts",
    "StackError",
    "binaries",
    "cache_dir",
    "components",
    "compose_command",
    "docker_available",
    "down",
    "ensure_built",
    "find_binary",
    "in_media_namespace",
    "kill",
    "livekit_env",
    "logs",
    "main",
    "media_namespace",
    "media_supported",
    "pid",
    "port_busy",
    "processing_ports",
    "ready",
    "register_cli",
    "restart",
    "start",
    "state_dir",
    "status",
    "stop",
    "trace_store",
    "up",
]
