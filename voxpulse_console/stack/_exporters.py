"""The host and availability exporters of the native stack: node_exporter and the blackbox exporter.

They feed the infrastructure alerts (``prometheus/rules/alerts-infra.yml``): CPU, memory and disk
of the host from node_exporter (Prometheus job ``node``, ``prometheus/targets/node.yml``), and the
availability probes of the stack's own endpoints from the blackbox exporter (job ``blackbox``,
``prometheus/targets/blackbox-<module>[-<name>].yml``, modules in ``prometheus/blackbox.yml``).
Both listen on loopback only. The binaries are Debian's (``prometheus-node-exporter``,
``prometheus-blackbox-exporter``; ``scripts/debian.sh``, group ``stack``) or upstream's
(``node_exporter``, ``blackbox_exporter``) on ``PATH`` or in the build cache.

node_exporter runs with the collectors the alerts and dashboards read and no others: no systemd, no
hardware inventory, and the textfile collector only on the stack's own folder (``<state>/textfile``:
the keepers' restart counts, :mod:`._keeper`; never Debian's default, a root-owned folder)::

    from voxpulse_console import exporters
    exporters.node_exporter_argv(Path("/usr/bin/prometheus-node-exporter"), state)
    # ['/usr/bin/prometheus-node-exporter', '--web.listen-address=127.0.0.1:9100',
    #  '--collector.disable-defaults', '--collector.cpu', ...]

``voxpulse_console.stack`` holds the two components (``node-exporter``, ``blackbox-exporter``);
docker-compose.yml runs the official images of the same release lines with the same flags.
"""

from __future__ import annotations

from pathlib import Path

from voxpulse_console._paths import config_dir

__all__ = [
    "BLACKBOX_BINARIES",
    "BLACKBOX_LISTEN",
    "NODE_BINARIES",
    "NODE_COLLECTORS",
    "NODE_LISTEN",
    "blackbox_config",
    "blackbox_exporter_argv",
    "node_exporter_argv",
    "port",
]

NODE_LISTEN = "127.0.0.1:9100"
BLACKBOX_LISTEN = "127.0.0.1:9115"

#: Debian's names first, then upstream's release binaries.
NODE_BINARIES = ("prometheus-node-exporter", "node_exporter")
BLACKBOX_BINARIES = ("prometheus-blackbox-exporter", "blackbox_exporter")

#: What the alerts and dashboards read: CPU (HostCpuHigh), memory (HostMemoryHigh), file systems
#: (HostDiskHigh), network traffic and load (the infrastructure panels). Every other collector is off.
NODE_COLLECTORS = ("cpu", "meminfo", "filesystem", "netdev", "loadavg")


def port(listen: str) -> int:
    """``"127.0.0.1:9100"`` -> ``9100``."""
    return int(listen.rpartition(":")[2])


def node_exporter_argv(binary: Path, _state: Path, *, listen: str = NODE_LISTEN,
                       textfile: Path | None = None) -> list[str]:
    """node_exporter on ``listen`` with :data:`NODE_COLLECTORS` only, and the textfile collector on
    ``textfile`` when given (the native stack's keepers write their restart counts there)."""
    textfiles = [] if textfile is None else ["--collector.textfile", f"--collector.textfile.directory={textfile}"]
    return [
        str(binary),
        f"--web.listen-address={listen}",
        "--collector.disable-defaults",
        *(f"--collector.{name}" for name in NODE_COLLECTORS),
        *textfiles,
    ]


def blackbox_config() -> Path:
    """The blackbox exporter's modules: ``prometheus/blackbox.yml`` of the config directory."""
    return config_dir() / "prometheus" / "blackbox.yml"


def blackbox_exporter_argv(binary: Path, _state: Path, *, listen: str = BLACKBOX_LISTEN) -> list[str]:
    """The blackbox exporter on ``listen`` with ``prometheus/blackbox.yml``."""
    return [str(binary), f"--config.file={blackbox_config()}", f"--web.listen-address={listen}"]
