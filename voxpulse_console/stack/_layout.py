"""The stack's state folder: where each file of a running stack lives, spelled once.

    <state>/                 ``voxpulse stack --state-dir``, else $VOXPULSE_STACK_DIR, else $VOXPULSE_STATE_DIR/stack
      env                    LiveKit's URL, key and secret (mode 0600)
      topology.json          the scale-out topology's processing collectors (absent: the single collector)
      trace-store            where Jaeger keeps the spans: "cassandra" (absent: Badger, on the local disk)
      run/<name>.pid         the component's process: "<pid> <start time> <binary>"
      run/<name>.keeper      its keeper's process (the restarts: voxpulse_console.stack._keeper)
      logs/<name>.log        the component's output (and its keeper's restarts)
      textfile/              node_exporter's textfile folder: the keepers' restart counts
      <name>/                the component's own state (data, queues); otelcol/ring.yaml: the ring
      services.env           DATABASE_URL, REDIS_URL of PostgreSQL and Redis (``voxpulse stack services``, mode 0600)
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_STATE_DIR", "component_dir", "env_file", "keeper_pidfile", "logfile", "pidfile", "ring_file",
           "state_path", "textfile_dir", "topology_file", "trace_store_file"]

DEFAULT_STATE_DIR = Path(".voxpulse/stack")


def state_path(state_dir: Path | str | None) -> Path:
    """``state_dir``, else ``$VOXPULSE_STACK_DIR``, else ``stack/`` in ``$VOXPULSE_STATE_DIR`` (the state
    folder scripts/services.sh and the Makefile use; default ``.voxpulse``). Relative to the current
    directory."""
    if state_dir is not None:
        p = Path(state_dir)
    elif os.environ.get("VOXPULSE_STACK_DIR"):
        p = Path(os.environ["VOXPULSE_STACK_DIR"])
    elif os.environ.get("VOXPULSE_STATE_DIR"):
        p = Path(os.environ["VOXPULSE_STATE_DIR"]) / "stack"
    else:
        p = DEFAULT_STATE_DIR
    return p if p.is_absolute() else Path.cwd() / p


def component_dir(state: Path, name: str) -> Path:
    return state / name


def pidfile(state: Path, name: str) -> Path:
    return state / "run" / f"{name}.pid"


def keeper_pidfile(state: Path, name: str) -> Path:
    return state / "run" / f"{name}.keeper"


def logfile(state: Path, name: str) -> Path:
    return state / "logs" / f"{name}.log"


def env_file(state: Path) -> Path:
    return state / "env"


def topology_file(state: Path) -> Path:
    return state / "topology.json"


def trace_store_file(state: Path) -> Path:
    return state / "trace-store"


def ring_file(state: Path) -> Path:
    """The load-balancing collector's second config: its backends (written by the ring)."""
    return component_dir(state, "otelcol") / "ring.yaml"


def textfile_dir(state: Path) -> Path:
    """node_exporter's ``--collector.textfile.directory``: ``*.prom`` files the keepers write."""
    return state / "textfile"
