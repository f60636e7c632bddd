"""Run the VoxPulse backend stack natively: OTel Collector, Jaeger, Prometheus, Alertmanager and
the LiveKit server (and the web console, ``ui``, when its users are configured).

Each component is a background process started in its own session (it outlives the CLI that
started it) with the repository's own config file, its state under ``state_dir/<name>/``, its
log in ``state_dir/logs/<name>.log`` and its pid in ``state_dir/run/<name>.pid``. ``up()`` waits
on each component's readiness endpoint; it is idempotent (what already runs is left alone).

Everything listens on the host's loopback, where the user's browser and agents reach it. Only our
LiveKit server runs in the media namespace (component ``media``, made without root by
:mod:`voxpulse_console.media`: libwebrtc offers no loopback candidates, so the callers and the demo's
agent reach it over 198.18.0.1 there); its ports 7880 and 6789 are published on the host's loopback.
``voxpulse stack up --without-livekit`` is the stack for agents on a LiveKit server of the user's own.
Inside a media namespace of one's own (no way out, 198.18.0.1 on an interface) LiveKit runs right there, with no
``media`` component. The server's API key and secret are generated once per install into the stack's
env file, ``state_dir/env`` (mode 0600; ``voxpulse stack env`` prints it, :func:`livekit_env` reads it).

Binaries come from ``scripts/build-backends.sh`` (cached in ``$VOXPULSE_CACHE_DIR/bin``, default
``~/.cache/voxpulse/bin``) or from ``PATH`` (Debian's prometheus, prometheus-alertmanager).

Standard library plus httpx only (rich is used for the CLI table when it is installed).

    from voxpulse_console import stack
    stack.up()                      # {'jaeger': 'started', 'otelcol': 'started', ...}
    stack.status()                  # [ComponentStatus(...), ...]
    stack.kill("otelcol"); stack.start("otelcol")   # fault tests
    stack.down()

CLI (wired into ``voxpulse`` by :func:`register_cli`, or ``python -m voxpulse_console.stack``):
``stack up|down|status|logs|env|exec|build|restart``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from voxpulse_console import collector_ring, exporters, media
from voxpulse_console._paths import config_dir
from voxpulse_console.alert_receiver import DEFAULT_LISTEN as RECEIVER_LISTEN
from voxpulse_console.alert_receiver import ConfigError, render_alertmanager_config, write_alertmanager_config
from voxpulse_console.ui.config import DEFAULT_LISTEN as UI_LISTEN

__all__ = [
    "COMPONENTS",
    "DEFAULT_STATE_DIR",
    "MAX_COLLECTORS",
    "OPTIONAL",
    "Component",
    "ComponentStatus",
    "StackError",
    "binaries",
    "cache_dir",
    "components",
    "compose_command",
    "docker_available",
    "down",
    "ensure_built",
    "in_media_namespace",
    "kill",
    "livekit_env",
    "logs",
    "main",
    "media_namespace",
    "pid",
    "register_cli",
    "restart",
    "start",
    "status",
    "stop",
    "up",
]

DEFAULT_STATE_DIR = Path(".voxpulse/stack")


class StackError(RuntimeError):
    """A component could not be started, did not become ready, or a binary is missing."""


@dataclass(frozen=True, slots=True)
class Component:
    """One process of the stack: how to find its binary, start it and tell that it is ready."""

    name: str
    binary_names: tuple[str, ...]
    ready_url: str
    ports: tuple[int, ...]
    argv: Callable[[Path, Path], list[str]]  # (binary, component state dir) -> argv
    env: Callable[[Path], dict[str, str]] = field(default=lambda _state: {})
    description: str = ""
    stop_timeout_s: float = 20.0  # SIGTERM, then SIGKILL after this long
    # why the component cannot start in this environment (None: it can); optional components only
    unavailable: Callable[[Mapping[str, str]], str | None] = field(default=lambda _env: None)
    prepare: Callable[[Path], None] | None = None  # (stack state dir) -> None; raises StackError
    in_media: bool = False  # runs inside the media namespace (voxpulse_console.media)


def _otelcol_argv(binary: Path, _state: Path) -> list[str]:
    return [str(binary), f"--config={config_dir() / 'otel-collector' / 'config.yaml'}"]


def _otelcol_env(state: Path) -> dict[str, str]:
    # the trace export queue on disk: kept across restarts, like the component's other state
    return {"VOXPULSE_COLLECTOR_QUEUE_DIR": str(state / "queue")}


def _jaeger_argv(binary: Path, _state: Path) -> list[str]:
    return [str(binary), f"--config=file:{config_dir() / 'jaeger' / 'jaeger.yaml'}"]


def _jaeger_env(state: Path) -> dict[str, str]:
    return {"VOXPULSE_JAEGER_DATA": str(state / "data")}


def _prometheus_argv(binary: Path, state: Path) -> list[str]:
    return [
        str(binary),
        f"--config.file={config_dir() / 'prometheus' / 'prometheus.yml'}",
        f"--storage.tsdb.path={state / 'data'}",
        "--storage.tsdb.retention.time=15d",
        "--web.listen-address=127.0.0.1:9090",
        "--enable-feature=exemplar-storage",
        "--web.enable-lifecycle",
    ]


def _alertmanager_config(state: Path) -> Path:
    """$VOXPULSE_ALERTMANAGER_CONFIG (a config rendered elsewhere), else prometheus/alertmanager.yml
    rendered into the state dir (mode 0600) from the environment: integrations whose secrets are
    not set are left out, so a local stack records alerts in alerts_history only."""
    rendered = os.environ.get("VOXPULSE_ALERTMANAGER_CONFIG")
    if rendered:
        return Path(rendered).resolve()
    template = config_dir() / "prometheus" / "alertmanager.yml"
    env = dict(os.environ)
    env.setdefault("ALERTS_RECEIVER_URL", f"http://{RECEIVER_LISTEN}/alerts")
    try:
        text = render_alertmanager_config(template.read_text(encoding="utf-8"), env, allow_missing=True)
    except ConfigError as exc:
        raise StackError(f"alertmanager: {exc}") from exc
    out = state / "alertmanager.yml"
    write_alertmanager_config(out, text, template.parent)
    return out


def _receiver_argv(binary: Path, _state: Path) -> list[str]:
    return [str(binary), "alerts-receiver", "--listen", RECEIVER_LISTEN]


def _alertmanager_argv(binary: Path, state: Path) -> list[str]:
    return [
        str(binary),
        f"--config.file={_alertmanager_config(state)}",
        f"--storage.path={state / 'data'}",
        "--web.listen-address=127.0.0.1:9093",
        "--cluster.listen-address=",  # no HA gossip: one instance
    ]


# ---------------------------------------------------------------------------------------------
# LiveKit: keys in the stack's env file; its media in the media namespace (voxpulse_console.media)

MEDIA_ADDRESS = media.MEDIA_ADDRESS
LIVEKIT_URL = "ws://127.0.0.1:7880"
_LIVEKIT_ENV_KEYS = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
#: the components that exist only for our LiveKit server (left out by ``up(without_livekit=True)``)
LIVEKIT_COMPONENTS = ("media", "livekit")


def in_media_namespace() -> bool:
    """True inside a network namespace with no way out that holds the media address (a namespace of
    the user's own): LiveKit then runs here, with no ``media`` component."""
    return media.in_media_namespace()


def media_namespace(state_dir: Path | str | None = None) -> media.MediaNamespace:
    """The media namespace of the stack in ``state_dir`` (its ``media`` component)."""
    return media.MediaNamespace(_state(state_dir) / "media")


def _media_argv(_binary: Path, cstate: Path) -> list[str]:
    return [sys.executable, "-m", "voxpulse_console.media", "serve", "--dir", str(cstate)]


def _media_unavailable(_env: Mapping[str, str]) -> str | None:
    return media.supported()


def _env_file(state: Path) -> Path:
    return state / "env"


def _read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def livekit_env(state_dir: Path | str | None = None, *, create: bool = False) -> dict[str, str]:
    """LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET of this install's LiveKit server.

    Read from the stack's env file; with ``create`` a key and a 40-character secret are generated
    when the file has none (once per install: they survive restarts). Empty when there is none.
    """
    path = _env_file(_state(state_dir))
    env = _read_env_file(path)
    if all(env.get(k) for k in _LIVEKIT_ENV_KEYS):
        return {k: env[k] for k in _LIVEKIT_ENV_KEYS}
    if not create:
        return {}
    env.update({
        "LIVEKIT_URL": LIVEKIT_URL,
        "LIVEKIT_API_KEY": "API" + secrets.token_hex(6),
        "LIVEKIT_API_SECRET": secrets.token_urlsafe(30),  # 40 characters; the server wants >= 32
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# generated by `voxpulse stack up`; source with: set -a; . <this file>; set +a"]
    lines += [f"{k}={v}" for k, v in env.items()]
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return {k: env[k] for k in _LIVEKIT_ENV_KEYS}


def _livekit_argv(binary: Path, _state: Path) -> list[str]:
    return [str(binary), f"--config={config_dir() / 'livekit' / 'livekit.yaml'}"]


def _livekit_env(cstate: Path) -> dict[str, str]:
    creds = livekit_env(cstate.parent, create=True)
    return {"LIVEKIT_KEYS": f"{creds['LIVEKIT_API_KEY']}: {creds['LIVEKIT_API_SECRET']}"}


# Start order: the trace store (Jaeger) before the collector that exports to it; the alerts
# receiver before Alertmanager before Prometheus; LiveKit last.
COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        Component(
            "jaeger",
            ("jaeger",),
            "http://127.0.0.1:13134/status",
            (4417, 4418, 16686, 16685, 13134, 14269),
            _jaeger_argv,
            _jaeger_env,
            "Jaeger v2 (traces on disk, search by call_id)",
        ),
        Component(
            "otelcol",
            ("otelcol", "voxpulse-otelcol"),
            "http://127.0.0.1:13133/",
            (4317, 4318, 8888, 8889, 13133),
            _otelcol_argv,
            _otelcol_env,
            "OpenTelemetry Collector (OTLP in, span metrics, redaction, trace queue on disk)",
        ),
        Component(
            "node-exporter",
            exporters.NODE_BINARIES,
            f"http://{exporters.NODE_LISTEN}/",
            (exporters.port(exporters.NODE_LISTEN),),
            exporters.node_exporter_argv,
            description="node_exporter (host CPU, memory, disk, network; voxpulse_console/exporters.py)",
            stop_timeout_s=5.0,
        ),
        Component(
            "blackbox-exporter",
            exporters.BLACKBOX_BINARIES,
            f"http://{exporters.BLACKBOX_LISTEN}/-/healthy",
            (exporters.port(exporters.BLACKBOX_LISTEN),),
            exporters.blackbox_exporter_argv,
            description="blackbox exporter (availability probes of the stack's endpoints, prometheus/blackbox.yml)",
            stop_timeout_s=5.0,
        ),
        Component(
            "alerts-receiver",
            ("voxpulse",),
            f"http://{RECEIVER_LISTEN}/healthz",
            (int(RECEIVER_LISTEN.rpartition(":")[2]),),
            _receiver_argv,
            description="Alertmanager webhook -> PostgreSQL alerts_history (voxpulse alerts-receiver)",
            stop_timeout_s=5.0,
        ),
        Component(
            "alertmanager",
            ("alertmanager", "prometheus-alertmanager"),
            "http://127.0.0.1:9093/-/ready",
            (9093,),
            _alertmanager_argv,
            description="Prometheus Alertmanager",
        ),
        Component(
            "prometheus",
            ("prometheus",),
            "http://127.0.0.1:9090/-/ready",
            (9090,),
            _prometheus_argv,
            description="Prometheus (exemplar storage, 15 d retention)",
        ),
        Component(
            "media",
            (Path(sys.executable).name,),
            f"http://127.0.0.1:{media.HEALTH_PORT}/",
            (*media.DEFAULT_PUBLISH, media.HEALTH_PORT),
            _media_argv,
            description="the media namespace without root (LiveKit's media inside; its ports 7880/6789 "
            "published on the host's loopback, the stack's OTLP, PostgreSQL and Redis reachable from inside)",
            stop_timeout_s=10.0,
            unavailable=_media_unavailable,
        ),
        Component(
            "livekit",
            ("livekit-server",),
            "http://127.0.0.1:7880/",
            (7880, 7881, 6789),  # in the media namespace; 7880 and 6789 published on the host by `media`
            _livekit_argv,
            _livekit_env,
            "LiveKit server (signal 7880, RTC TCP 7881, UDP 50000-50100, metrics 6789), in the media namespace",
            stop_timeout_s=10.0,
            in_media=True,
        ),
    )
}


def _ui_argv(binary: Path, _state: Path) -> list[str]:
    return [str(binary), "ui"]  # listens on $VOXPULSE_UI_LISTEN (up(bind=...) sets it), else 127.0.0.1:8090


LOOPBACK = "127.0.0.1"


def _bind_env(bind: str, env: Mapping[str, str], allow_plain_http: bool) -> dict[str, str]:
    """What ``up(bind=...)`` changes: the collector's OTLP ports and the console listen on ``bind``
    (Prometheus, Jaeger, Alertmanager and the databases stay on the loopback: they have no login).
    Refused for an address other than the loopback unless the console has TLS
    (``VOXPULSE_UI_TLS_CERT`` and ``VOXPULSE_UI_TLS_KEY``) or the operator says so (``allow_plain_http``,
    ``VOXPULSE_ALLOW_PLAIN_HTTP=1``)."""
    import ipaddress

    try:
        address = ipaddress.ip_address(bind)
    except ValueError as exc:
        raise StackError(f"--bind {bind!r}: an IP address of this machine (or 0.0.0.0)") from exc
    if address.is_loopback:
        return {}
    tls = bool(env.get("VOXPULSE_UI_TLS_CERT") and env.get("VOXPULSE_UI_TLS_KEY"))
    plain_ok = allow_plain_http or env.get("VOXPULSE_ALLOW_PLAIN_HTTP", "").lower() in ("1", "true", "yes")
    if not tls and not plain_ok:
        raise StackError(
            f"--bind {bind}: the console's login and the collector's OTLP would be open to your network over "
            "plain HTTP; give the console TLS (VOXPULSE_UI_TLS_CERT and VOXPULSE_UI_TLS_KEY), or keep the stack "
            "on the loopback behind a TLS proxy, or say so explicitly: --allow-plain-http "
            "(VOXPULSE_ALLOW_PLAIN_HTTP=1)"
        )
    # HOST:PORT split at the last colon (ui.config), so an IPv6 address goes in without brackets
    return {"VOXPULSE_COLLECTOR_BIND": bind, "VOXPULSE_UI_LISTEN": f"{bind}:{UI_LISTEN.rpartition(':')[2]}"}


def _ui_unavailable(env: Mapping[str, str]) -> str | None:
    if not env.get("VOXPULSE_UI_USERS"):
        return "no console users: set VOXPULSE_UI_USERS (voxpulse ui hash-password); `make demo` makes one"
    return None


# Started with the others when they can be (the web console needs its users in the environment);
# `stack up ui` names it explicitly.
OPTIONAL: dict[str, Component] = {
    "ui": Component(
        "ui",
        ("voxpulse",),
        f"http://{UI_LISTEN}/healthz",
        (int(UI_LISTEN.rpartition(":")[2]),),
        _ui_argv,
        description="the VoxPulse web console (voxpulse ui): calls, call timelines, latency, alerts",
        stop_timeout_s=5.0,
        unavailable=_ui_unavailable,
    ),
}
_ALL: dict[str, Component] = {**COMPONENTS, **OPTIONAL}


# ---------------------------------------------------------------------------------------------
# the scale-out topology (docs/scaling.md): load-balancing collector, N processing collectors, ring

MAX_COLLECTORS = collector_ring.MAX_COLLECTORS
_TOPOLOGY_FILE = "topology.json"


def _topology(state: Path) -> int:
    """Processing collectors of the stack in ``state`` (0: the single collector)."""
    try:
        n = int(json.loads((state / _TOPOLOGY_FILE).read_text(encoding="utf-8"))["collectors"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return n if 0 <= n <= MAX_COLLECTORS else 0


def _choose_topology(state: Path, collectors: int | None) -> None:
    current = _topology(state)
    wanted = current if collectors is None else collectors
    if not 0 <= wanted <= MAX_COLLECTORS:
        raise StackError(f"--collectors {wanted}: 1 to {MAX_COLLECTORS} processing collectors (0: one collector)")
    if wanted == current:
        return
    running = [n for n in _components(state) if _read_pid(state, n) is not None]
    if running:
        what = f"{current} processing collectors" if current else "one collector"
        raise StackError(f"the stack in {state} runs with {what}: `voxpulse stack down` first ({', '.join(running)})")
    if wanted:
        (state / _TOPOLOGY_FILE).write_text(json.dumps({"collectors": wanted}) + "\n", encoding="utf-8")
        # the ring starts with every processing collector; collector-ring maintains it from then on
        ports = [collector_ring.processing_ports(k) for k in range(1, wanted + 1)]
        collector_ring.write_ring_file(state / "otelcol" / "ring.yaml", [p.endpoint for p in ports])
    else:
        (state / _TOPOLOGY_FILE).unlink(missing_ok=True)


def _processing(k: int) -> Component:
    ports = collector_ring.processing_ports(k)

    def argv(binary: Path, _state: Path) -> list[str]:
        return [str(binary), f"--config={config_dir() / 'otel-collector' / 'processing.yaml'}"]

    def env(cstate: Path) -> dict[str, str]:
        return {**ports.env(), "VOXPULSE_COLLECTOR_QUEUE_DIR": str(cstate / "queue")}

    return Component(
        f"otelcol-{k}", ("otelcol", "voxpulse-otelcol"), f"http://127.0.0.1:{ports.health}/",
        (ports.otlp, ports.metrics, ports.telemetry, ports.health), argv, env,
        f"processing collector {k} (span metrics, tail sampling, redaction, export to the trace store)",
    )


def _lb_argv(binary: Path, cstate: Path) -> list[str]:
    ring = cstate / "ring.yaml"
    return [str(binary), f"--config={config_dir() / 'otel-collector' / 'lb.yaml'}", f"--config={ring}"]


def _ring(n: int) -> Component:
    def argv(_binary: Path, cstate: Path) -> list[str]:
        return [sys.executable, "-m", "voxpulse_console.collector_ring",
                "--state-dir", str(cstate.parent), "--collectors", str(n)]

    return Component(
        "collector-ring", (Path(sys.executable).name,), f"http://{collector_ring.LISTEN}/healthz",
        (int(collector_ring.LISTEN.rpartition(":")[2]),), argv,
        description="keeps the load-balancing collector's ring equal to the processing collectors that answer",
        stop_timeout_s=5.0,
    )


def _tiered_prometheus_argv(n: int) -> Callable[[Path, Path], list[str]]:
    """Prometheus with prometheus/prometheus.yml rendered into its state dir: the same config, with
    absolute paths, and the processing collectors as the targets of the otel-collector-spans and
    otel-collector-internal jobs (targets/otelcol-processing*.yml are empty in the repository)."""

    def argv(binary: Path, cstate: Path) -> list[str]:
        import yaml

        src = config_dir() / "prometheus"
        cfg = yaml.safe_load((src / "prometheus.yml").read_text(encoding="utf-8"))
        cfg["rule_files"] = [str(src / f) for f in cfg.get("rule_files", [])]
        targets = cstate / "targets"
        targets.mkdir(parents=True, exist_ok=True)
        ports = [collector_ring.processing_ports(k) for k in range(1, n + 1)]
        generated = {
            "otelcol-processing.yml": [
                {"targets": [f"127.0.0.1:{p.metrics}"], "labels": {"collector": p.name}} for p in ports
            ],
            "otelcol-processing-internal.yml": [
                {"targets": [f"127.0.0.1:{p.telemetry}"], "labels": {"collector": p.name}} for p in ports
            ],
        }
        for name, groups in generated.items():
            (targets / name).write_text(yaml.safe_dump(groups), encoding="utf-8")
        for job in cfg.get("scrape_configs", []):
            for sd in job.get("file_sd_configs", []):
                sd["files"] = [
                    str(targets / Path(f).name) if Path(f).name in generated else str(src / f)
                    for f in sd.get("files", [])
                ]
        rendered = cstate / "prometheus.yml"
        rendered.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        return [str(binary), f"--config.file={rendered}", *_prometheus_argv(binary, cstate)[2:]]

    return argv


def _tiered(n: int) -> dict[str, Component]:
    out: dict[str, Component] = {}
    for name, comp in COMPONENTS.items():
        if name == "otelcol":
            for k in range(1, n + 1):
                out[f"otelcol-{k}"] = _processing(k)
            out[name] = Component(
                name, comp.binary_names, comp.ready_url, comp.ports, _lb_argv,
                lambda state: {"VOXPULSE_COLLECTOR_NAME": "lb", **_otelcol_env(state)},  # its trace queue on disk
                f"load-balancing collector (OTLP in, traces by trace id to {n} processing collectors, SDK metrics)",
            )
            out["collector-ring"] = _ring(n)
        elif name == "prometheus":
            out[name] = Component(name, comp.binary_names, comp.ready_url, comp.ports, _tiered_prometheus_argv(n),
                                  comp.env, comp.description)
        else:
            out[name] = comp
    return out


def _components(state: Path | None) -> dict[str, Component]:
    """The stack's own components for the topology in ``state`` (None: the single collector)."""
    n = 0 if state is None else _topology(state)
    return COMPONENTS if n == 0 else _tiered(n)


def _all(state: Path | None) -> dict[str, Component]:
    return {**_components(state), **OPTIONAL}


def components(*, state_dir: Path | str | None = None) -> dict[str, Component]:
    """The components of the stack in ``state_dir``, in start order (:data:`COMPONENTS` for the
    single collector; the scale-out topology after ``up(collectors=N)``), without the optional ones."""
    return _components(_state(state_dir))

# Processes started by this Python process, so that they can be reaped (no zombies in tests).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    name: str
    running: bool
    ready: bool
    pid: int | None
    url: str
    log: Path
    binary: Path | None


# ---------------------------------------------------------------------------------------------
# binaries


def cache_dir() -> Path:
    return Path(os.environ.get("VOXPULSE_CACHE_DIR") or Path.home() / ".cache" / "voxpulse")


def _find(names: Iterable[str]) -> Path | None:
    # our cache, then this Python's bin dir (the venv's `voxpulse` without an activated venv), then PATH
    dirs = [cache_dir() / "bin", Path.home() / ".cache" / "voxpulse" / "bin", Path(sys.executable).parent]
    for name in names:
        for d in dirs:
            p = d / name
            if p.is_file() and os.access(p, os.X_OK):
                return p
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


_TOOLS: dict[str, tuple[str, ...]] = {
    "otelcol": ("otelcol", "voxpulse-otelcol"),
    "jaeger": ("jaeger",),
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "alertmanager": ("alertmanager", "prometheus-alertmanager"),
    "amtool": ("amtool",),
    "node-exporter": exporters.NODE_BINARIES,
    "blackbox-exporter": exporters.BLACKBOX_BINARIES,
    "livekit-server": ("livekit-server",),
    "dashboard-linter": ("dashboard-linter",),
    "docker-compose": ("docker-compose",),
    "telemetrygen": ("telemetrygen",),
}


def binaries() -> dict[str, Path | None]:
    """Where each tool is: $VOXPULSE_CACHE_DIR/bin, ~/.cache/voxpulse/bin, then PATH (None: missing)."""
    return {tool: _find(names) for tool, names in _TOOLS.items()}


def ensure_built(
    *, with_linter: bool = False, with_compose: bool = False, debian: bool = True
) -> dict[str, Path | None]:
    """Run scripts/build-backends.sh (seconds when everything is cached) and return :func:`binaries`.

    A first build takes minutes (collector and Jaeger from Go sources on 2 cores).
    """
    script = config_dir() / "scripts" / "build-backends.sh"
    runs: list[list[str]] = []
    for only in ("otelcol", "jaeger", "livekit"):
        runs.append([str(script), f"--only={only}"])
    if with_linter:
        runs.append([str(script), "--only=linter"])
    if with_compose:
        runs.append([str(script), "--only=compose"])
    speech = shutil.which("espeak-ng") is None or shutil.which("sox") is None
    stack_tools = ("prometheus", "alertmanager", "node-exporter", "blackbox-exporter")
    if debian and (any(_find(_TOOLS[t]) is None for t in stack_tools) or speech):
        runs.append([str(script), "--only=debian"])
    for argv in runs:
        proc = subprocess.run(argv, cwd=config_dir(), check=False)
        if proc.returncode != 0:
            raise StackError(f"{' '.join(argv)} failed with exit code {proc.returncode}")
    return binaries()


# ---------------------------------------------------------------------------------------------
# processes


def _state(state_dir: Path | str | None) -> Path:
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


def _pidfile(state: Path, name: str) -> Path:
    return state / "run" / f"{name}.pid"


def _logfile(state: Path, name: str) -> Path:
    return state / "logs" / f"{name}.log"


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        # our child: alive until waitpid reaps it, which happens only once every thread has exited
        # (a SIGKILLed leader shows as a zombie while its threads still hold the sockets)
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    if state == "Z" and not Path(f"/proc/{pid}/task").exists():
        return False
    return state != "Z" or len(list(Path(f"/proc/{pid}/task").iterdir())) > 1


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), "" if unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _read_pid(state: Path, name: str) -> int | None:
    try:
        fields = _pidfile(state, name).read_text().split()
        pid = int(fields[0])
    except (OSError, ValueError, IndexError):
        return None
    if not _alive(pid):
        return None
    # guard against a recycled pid: same start time as the process we started
    recorded = fields[1] if len(fields) > 1 else ""
    now = _start_time(pid)
    if recorded and now and recorded != now:
        return None
    return pid


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ready(url: str, timeout: float = 1.0) -> bool:
    try:
        # a readiness probe of our own process (the console's TLS may be self-signed): no verification
        return httpx.get(url, timeout=timeout, verify=not url.startswith("https://")).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _spawn(comp: Component, state: Path, env: Mapping[str, str] | None) -> int:
    binary = _find(comp.binary_names)
    if binary is None:
        raise StackError(
            f"{comp.name}: binary not found ({' or '.join(comp.binary_names)}); "
            "run scripts/build-backends.sh or `voxpulse stack build`"
        )
    if comp.prepare is not None:
        comp.prepare(state)
    host_ports = () if comp.in_media else comp.ports  # an in_media component's ports are the namespace's
    busy = [p for p in host_ports if _port_busy(p)]
    deadline = time.monotonic() + 5  # a process that was just killed may still be closing its sockets
    while busy and time.monotonic() < deadline:
        time.sleep(0.1)
        busy = [p for p in host_ports if _port_busy(p)]
    if busy:
        owners = "; ".join(f"{p}: {media.port_owner(p) or 'unknown process'}" for p in busy)
        raise StackError(
            f"{comp.name}: port(s) {busy} on 127.0.0.1 are taken by a process this stack did not start "
            f"({owners}; state dir {state}); stop it or use that stack's state dir"
        )
    cstate = state / comp.name
    cstate.mkdir(parents=True, exist_ok=True)
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "run").mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **comp.env(cstate), **(env or {})}
    argv = comp.argv(binary, cstate)
    if comp.in_media:
        try:
            argv = [*media_namespace(state).argv(), *argv]
        except media.MediaError as exc:
            raise StackError(f"{comp.name}: {exc}") from exc
    log = _logfile(state, comp.name)
    with log.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            cwd=cstate,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    _pidfile(state, comp.name).write_text(f"{proc.pid} {_start_time(proc.pid)} {binary}\n", encoding="utf-8")
    return proc.pid


#: the components that listen on ``up(bind=...)``'s address (the rest stay on the loopback)
_BOUND = ("otelcol", "ui")


def _wait_ready(names: Sequence[str], state: Path, wait_s: float, bind: str | None = None,
                ui_tls: bool = False) -> None:
    deadline = time.monotonic() + wait_s
    pending = list(names)
    comps = _all(state)
    while pending:
        for name in list(pending):
            comp = comps[name]
            pid = _read_pid(state, name)
            if pid is None:
                raise StackError(
                    f"{name} exited during start-up; log tail:\n{_tail(_logfile(state, name), 30)}"
                )
            url = comp.ready_url
            if bind and name in _BOUND and bind not in ("0.0.0.0", "::"):
                url = url.replace(LOOPBACK, f"[{bind}]" if ":" in bind else bind, 1)
            if ui_tls and name == "ui":
                url = url.replace("http://", "https://", 1)
            if _ready(url):
                pending.remove(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            details = "\n".join(f"--- {n} ---\n{_tail(_logfile(state, n), 20)}" for n in pending)
            raise StackError(f"not ready after {wait_s:.0f}s: {', '.join(pending)}\n{details}")
        time.sleep(0.25)


def _names(
    components: Iterable[str] | None, env: Mapping[str, str] | None = None, state: Path | None = None,
    *, without_livekit: bool = False,
) -> list[str]:
    """The components to act on, in start order. None: the stack (of the topology in ``state``; without
    our LiveKit server and its media namespace when ``without_livekit``), plus each optional component
    that can start in this environment (``env`` over ``os.environ``)."""
    everything = _all(state)
    if components is None:
        merged = {**os.environ, **(env or {})}
        own = [n for n in _components(state) if not (without_livekit and n in LIVEKIT_COMPONENTS)]
        return own + [n for n, c in OPTIONAL.items() if c.unavailable(merged) is None]
    wanted = list(components)
    if "livekit" in wanted and "media" not in wanted:
        wanted.append("media")  # LiveKit runs in the media namespace
    if "otelcol" in wanted and state is not None and _topology(state):
        # the load-balancing collector alone would route every span nowhere: its tier comes with it
        wanted += [n for n in everything if (n.startswith("otelcol-") or n == "collector-ring") and n not in wanted]
    unknown = [n for n in wanted if n not in everything]
    if unknown:
        raise StackError(f"unknown component(s) {unknown}; known: {list(everything)}")
    return [n for n in everything if n in wanted]  # keep start order


def compose_command() -> list[str] | None:
    """How to run Docker Compose here: the Docker CLI plugin (``docker compose``), else the standalone
    binary scripts/build-backends.sh builds (``--only=compose``); None when there is neither."""
    candidates: list[list[str]] = [["docker", "compose"]] if shutil.which("docker") else []
    standalone = _find(_TOOLS["docker-compose"])
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


def _compose(*args: str) -> None:
    cmd = compose_command()
    if cmd is None:
        raise StackError("no Docker Compose: run scripts/build-backends.sh --only=compose")
    argv = [*cmd, "-f", str(config_dir() / "docker-compose.yml"), *args]
    proc = subprocess.run(argv, cwd=config_dir(), check=False)
    if proc.returncode != 0:
        raise StackError(f"{' '.join(argv)} failed with exit code {proc.returncode}")


def up(
    components: Iterable[str] | None = None,
    *,
    state_dir: Path | str | None = None,
    wait_s: float = 60,
    env: Mapping[str, str] | None = None,
    use_docker: bool = False,
    collectors: int | None = None,
    without_livekit: bool = False,
    bind: str | None = None,
    allow_plain_http: bool = False,
) -> dict[str, str]:
    """Start the components that are not running and wait until each is ready.

    Everything listens on the host's loopback; our LiveKit server runs in the media namespace
    (component ``media``, no root needed: :mod:`voxpulse_console.media`), its signal port 7880 and
    metrics port 6789 published on the host's loopback. ``without_livekit=True`` leaves both out: the
    stack for agents on a LiveKit server of the user's own (LiveKit Cloud or self-hosted).

    ``bind`` (else ``$VOXPULSE_STACK_BIND``, else 127.0.0.1): where the console and the collector's OTLP
    ports listen, for browsers and agents on other machines; an address other than the loopback is
    refused unless the console has TLS or ``allow_plain_http`` (:func:`_bind_env`).

    Returns ``{name: "started" | "running"}``. ``env`` adds environment variables for the started
    processes (e.g. ``VOXPULSE_SPANMETRICS_FLUSH=1s``). With ``use_docker=True`` (and a Docker
    engine) runs ``docker compose up -d`` instead, for the whole compose file.

    ``collectors=N`` (1 to :data:`MAX_COLLECTORS`) runs the scale-out topology (docs/scaling.md): a
    load-balancing collector on the agents' ports (component ``otelcol``), N processing collectors
    (``otelcol-1`` ...) and the ``collector-ring``; ``collectors=0`` the single collector. ``None``
    keeps the current topology (``down()`` of the whole stack forgets it: the single collector
    again). A running stack changes topology only after ``down()``.
    """
    if use_docker:
        if not docker_available():
            raise StackError("use_docker=True but no Docker engine answers `docker info`")
        _compose("up", "-d", "--wait")
        return {"docker-compose": "started"}
    state = _state(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    _choose_topology(state, collectors)
    everything = _all(state)
    result: dict[str, str] = {}
    started: list[str] = []
    merged = {**os.environ, **(env or {})}
    bound = _bind_env(bind or merged.get("VOXPULSE_STACK_BIND") or LOOPBACK, merged, allow_plain_http)
    if bound:
        env = {**(env or {}), **bound}
        merged.update(bound)
    names = _names(components, env, state, without_livekit=without_livekit)
    # what cannot start here is said before anything starts
    for name in names:
        why = None if _read_pid(state, name) is not None else everything[name].unavailable(merged)
        if why is not None and not (name == "media" and media.in_media_namespace()):
            raise StackError(f"{name}: {why}")
    bind_host = bound.get("VOXPULSE_COLLECTOR_BIND")
    try:
        for name in names:
            if name == "media" and media.in_media_namespace():
                continue  # already in a media namespace of the user's own: LiveKit runs right here
            if _read_pid(state, name) is not None:
                result[name] = "running"
                continue
            if everything[name].in_media and "media" in started:
                _wait_ready(["media"], state, wait_s)  # its namespace first
            _spawn(everything[name], state, env)
            started.append(name)
            result[name] = "started"
        _wait_ready([n for n in result], state, wait_s, bind_host, bool(merged.get("VOXPULSE_UI_TLS_CERT")))
    except BaseException:
        # nothing half-started: what this call started is stopped again (what ran before is left)
        for name in reversed(started):
            with contextlib.suppress(Exception):
                stop(name, state_dir=state)
        raise
    return result


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the process leads its own session/group
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _stop_pid(pid: int, timeout_s: float) -> None:
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)


def stop(name: str, *, state_dir: Path | str | None = None, timeout_s: float | None = None) -> bool:
    """Stop one component cleanly: SIGTERM, then SIGKILL after ``timeout_s`` (default: the
    component's ``stop_timeout_s``). False if it was not running."""
    state = _state(state_dir)
    _names([name], state=state)
    pid = _read_pid(state, name)
    if pid is None:
        _pidfile(state, name).unlink(missing_ok=True)
        return False
    _stop_pid(pid, _all(state)[name].stop_timeout_s if timeout_s is None else timeout_s)
    _pidfile(state, name).unlink(missing_ok=True)
    return True


def kill(name: str, *, state_dir: Path | str | None = None, sig: int = signal.SIGKILL) -> bool:
    """Kill one component abruptly (fault tests: a collector crash). False if it was not running."""
    state = _state(state_dir)
    _names([name], state=state)
    pid = _read_pid(state, name)
    if pid is None:
        return False
    _signal_group(pid, sig)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if not _alive(pid):
        _pidfile(state, name).unlink(missing_ok=True)
    return True


def start(
    name: str,
    *,
    state_dir: Path | str | None = None,
    wait_s: float = 60,
    env: Mapping[str, str] | None = None,
) -> str:
    """Start one component (no-op when it runs) and wait until it is ready."""
    return up([name], state_dir=state_dir, wait_s=wait_s, env=env)[name]


def restart(
    name: str,
    *,
    state_dir: Path | str | None = None,
    wait_s: float = 60,
    env: Mapping[str, str] | None = None,
) -> str:
    stop(name, state_dir=state_dir)
    return start(name, state_dir=state_dir, wait_s=wait_s, env=env)


def down(
    components: Iterable[str] | None = None,
    *,
    state_dir: Path | str | None = None,
    timeout_s: float | None = None,
    use_docker: bool = False,
) -> list[str]:
    """Stop the components (reverse start order). Returns the names that were running."""
    if use_docker:
        _compose("down")
        return ["docker-compose"]
    state = _state(state_dir)
    stopped = []
    for name in reversed(list(_all(state)) if components is None else _names(components, state=state)):
        if stop(name, state_dir=state_dir, timeout_s=timeout_s):
            stopped.append(name)
    if components is None:  # the whole stack: the next `up` starts the topology it is asked for
        (state / _TOPOLOGY_FILE).unlink(missing_ok=True)
    return stopped


def pid(name: str, *, state_dir: Path | str | None = None) -> int | None:
    """The running component's process id (None when it is not running, or its pid was recycled)."""
    return _read_pid(_state(state_dir), name)


def status(*, state_dir: Path | str | None = None) -> list[ComponentStatus]:
    state = _state(state_dir)
    out = []
    for name, comp in _all(state).items():
        pid = _read_pid(state, name)
        if name in OPTIONAL and pid is None and comp.unavailable(os.environ) is not None:
            continue  # an optional component that is neither running nor configured
        out.append(
            ComponentStatus(
                name=name,
                running=pid is not None,
                ready=pid is not None and _ready(comp.ready_url, timeout=0.5),
                pid=pid,
                url=comp.ready_url,
                log=_logfile(state, name),
                binary=_find(comp.binary_names),
            )
        )
    return out


def logs(name: str, lines: int = 50, *, state_dir: Path | str | None = None) -> str:
    """The last ``lines`` lines of a component's log."""
    state = _state(state_dir)
    _names([name], state=state)
    return _tail(_logfile(state, name), lines)


# ---------------------------------------------------------------------------------------------
# CLI


def _print_status(rows: list[ComponentStatus]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency, but keep the module stdlib-only
        for r in rows:
            state = "ready" if r.ready else ("running" if r.running else "stopped")
            print(f"{r.name:13} {state:8} pid={r.pid or '-':<8} {r.url}  log={r.log}")
        return
    table = Table(title="VoxPulse stack")
    for col in ("component", "state", "pid", "ready endpoint", "binary", "log"):
        table.add_column(col, overflow="fold")
    for r in rows:
        state = "[green]ready" if r.ready else ("[yellow]running" if r.running else "[red]stopped")
        table.add_row(r.name, state, str(r.pid or "-"), r.url, str(r.binary or "missing"), str(r.log))
    Console().print(table)


def _cmd(args: argparse.Namespace) -> int:
    state_dir = args.state_dir
    comps = getattr(args, "components", None) or None
    try:
        if args.stack_cmd == "up":
            if args.docker:
                up(use_docker=True)
            else:
                if args.build:
                    ensure_built()
                env = {"VOXPULSE_SPANMETRICS_FLUSH": args.flush} if args.flush else {}
                if args.sampling_percent is not None:
                    env["VOXPULSE_TRACE_SAMPLING_PERCENT"] = f"{args.sampling_percent:g}"
                result = up(comps, state_dir=state_dir, wait_s=args.wait, env=env or None,
                            collectors=args.collectors, without_livekit=args.without_livekit,
                            bind=args.bind, allow_plain_http=args.allow_plain_http)
                for name, what in result.items():
                    print(f"{name}: {what}")
            _print_status(status(state_dir=state_dir))
        elif args.stack_cmd == "down":
            stopped = down(comps, state_dir=state_dir, use_docker=args.docker)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.stack_cmd == "status":
            rows = status(state_dir=state_dir)
            _print_status(rows)
            return 0 if all(r.ready for r in rows) else 3
        elif args.stack_cmd == "logs":
            for name in comps or _names(None, state=_state(state_dir)):
                print(f"==> {name} <==")
                print(logs(name, args.lines, state_dir=state_dir))
        elif args.stack_cmd == "restart":
            for name in comps or _names(None, state=_state(state_dir)):
                print(f"{name}: {restart(name, state_dir=state_dir, wait_s=args.wait)}")
        elif args.stack_cmd == "env":
            env = livekit_env(state_dir)
            if not env:
                print(f"no LiveKit keys yet in {_env_file(_state(state_dir))}: `voxpulse stack up` creates them",
                      file=sys.stderr)
                return 1
            for key, value in env.items():
                print(f"{key}={value}")
        elif args.stack_cmd == "exec":
            argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not argv:
                print("usage: voxpulse stack exec -- COMMAND [ARG...]", file=sys.stderr)
                return 2
            try:
                prefix = media_namespace(state_dir).prepare(os.environ)
            except media.MediaError as exc:
                raise StackError(str(exc)) from exc
            os.execvp((prefix or argv)[0], [*prefix, *argv])
        elif args.stack_cmd == "build":
            found = ensure_built(with_linter=args.with_linter, with_compose=args.with_compose)
            for tool, path in found.items():
                print(f"{tool:17} {path or 'missing'}")
        else:  # pragma: no cover - argparse enforces the choices
            return 2
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``stack up|down|status|logs|env|restart|build`` to a CLI's subparsers.

    The handler is set as ``func`` (``args.func(args) -> int`` exit code).
    """
    p = subparsers.add_parser(
        "stack", help="run the collector, Jaeger, Prometheus, Alertmanager and LiveKit natively")
    p.set_defaults(func=_cmd)
    sub = p.add_subparsers(dest="stack_cmd", required=True)

    def common(sp: argparse.ArgumentParser, *, components: bool = True) -> None:
        sp.add_argument(
            "--state-dir",
            default=None,
            help="state, logs, pid files (default $VOXPULSE_STACK_DIR, else $VOXPULSE_STATE_DIR/stack, "
            f"else {DEFAULT_STATE_DIR})",
        )
        if components:
            sp.add_argument(
                "components",
                nargs="*",
                metavar="COMPONENT",
                help=f"any of {', '.join(_ALL)} (default: all; ui when VOXPULSE_UI_USERS is set)",
            )

    sp = sub.add_parser("up", help="start what is not running and wait until ready")
    common(sp)
    sp.add_argument("--wait", type=float, default=60, help="seconds to wait for readiness")
    sp.add_argument("--build", action="store_true", help="run scripts/build-backends.sh first")
    sp.add_argument(
        "--flush", default=None, help="span metrics flush interval (default 20s; keep it above the 15 s scrape)"
    )
    sp.add_argument(
        "--docker", action="store_true", help="docker compose up -d instead (needs a Docker engine)"
    )
    sp.add_argument(
        "--without-livekit", action="store_true",
        help="no LiveKit server of ours and no media namespace: for agents on your own LiveKit server "
        "(LiveKit Cloud or self-hosted) exporting to this stack",
    )
    sp.add_argument(
        "--bind", default=None, metavar="ADDRESS",
        help="where the console and the collector's OTLP ports listen (default $VOXPULSE_STACK_BIND, else "
        "127.0.0.1); another address needs the console's TLS (VOXPULSE_UI_TLS_CERT/KEY) or --allow-plain-http",
    )
    sp.add_argument(
        "--allow-plain-http", action="store_true",
        help="let --bind open the console and OTLP to the network without TLS (VOXPULSE_ALLOW_PLAIN_HTTP=1)",
    )
    sp.add_argument(
        "--collectors", type=int, default=None, metavar="N",
        help=f"scale-out topology: a load-balancing collector and N processing collectors (1-{MAX_COLLECTORS}; "
        "0: one collector, the default); ports in docs/scaling.md",
    )
    sp.add_argument(
        "--sampling-percent", type=float, default=None, metavar="P",
        help="processing collectors keep P %% of the traces no rule keeps (VOXPULSE_TRACE_SAMPLING_PERCENT; "
        "set the same for the agents)",
    )


    sp = sub.add_parser("down", help="stop the stack (SIGTERM, then SIGKILL)")
    common(sp)
    sp.add_argument("--docker", action="store_true", help="docker compose down")

    sp = sub.add_parser("status", help="what runs and what is ready (exit 3 when not all ready)")
    common(sp, components=False)

    sp = sub.add_parser("logs", help="the last lines of each component's log")
    common(sp)
    sp.add_argument("-n", "--lines", type=int, default=40)

    sp = sub.add_parser("restart", help="stop and start components")
    common(sp)
    sp.add_argument("--wait", type=float, default=60)

    sp = sub.add_parser("env", help="print the stack's env file (LiveKit URL, API key and secret)")
    common(sp, components=False)

    sp = sub.add_parser(
        "exec", help="run a command in the media namespace, next to the stack's LiveKit server (an agent of "
        "yours); the loopback ports its environment names are reachable there")
    common(sp, components=False)
    sp.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")

    sp = sub.add_parser("build", help="build or reuse the binaries (scripts/build-backends.sh)")
    common(sp, components=False)
    sp.add_argument("--with-linter", action="store_true", help="also Grafana's dashboard-linter")
    sp.add_argument("--with-compose", action="store_true", help="also the docker compose CLI plugin")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxpulse_console.stack")
    subparsers = parser.add_subparsers(dest="cmd", required=True)
    register_cli(subparsers)
    args = parser.parse_args(["stack", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
