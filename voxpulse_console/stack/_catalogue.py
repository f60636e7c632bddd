"""The catalogue of the stack's components: what each process is, how it starts, when it is ready.

One :class:`Component` per process: its binary's names (found in the build cache, this Python's bin
folder, then ``PATH``: :func:`find_binary`), its argv and environment, its readiness URL and ports.
:data:`COMPONENTS` is the single-collector stack in start order, :data:`OPTIONAL` what starts only when
configured (the web console); the scale-out topology's components are :mod:`._topology`'s. LiveKit's
keys live in the stack's env file (:func:`livekit_env`); ``up(bind=...)``'s rules are :func:`bind_env`'s.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from voxpulse_console import settings
from voxpulse_console._paths import config_dir
from voxpulse_console.alert_receiver import DEFAULT_LISTEN as RECEIVER_LISTEN
from voxpulse_console.alert_receiver import ConfigError, render_alertmanager_config, write_alertmanager_config
from voxpulse_console.stack import _exporters as exporters
from voxpulse_console.stack import _media as media
from voxpulse_console.stack._layout import env_file, state_path, textfile_dir
from voxpulse_console.ui.config import DEFAULT_LISTEN as UI_LISTEN

__all__ = ["CASSANDRA", "COMPONENTS", "LIVEKIT_COMPONENTS", "LOOPBACK", "OPTIONAL", "TRACE_STORES", "Component",
           "StackError", "binaries", "bind_env", "cache_dir", "ensure_built", "find_binary", "livekit_env",
           "on_cassandra", "tool_names"]

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
    in_media: bool = False  # runs inside the media namespace (._media)
    locate: Callable[[], Path | None] | None = None  # where the binary is, when not by name on the usual paths
    stop_signal: str = "TERM"  # what asks it to stop (PostgreSQL: INT, its fast shutdown)
    after_ready: Callable[[Path], None] | None = None  # (stack state dir) -> None, once it answers; StackError
    # (the process's environment, up(bind=...)'s included) -> what follows from it, set last
    env_from_stack: Callable[[Mapping[str, str]], dict[str, str]] | None = None
    ready_check: Callable[[], bool] | None = None  # instead of ready_url (PostgreSQL: pg_isready)
    waits_for: tuple[str, ...] = ()  # components started in the same `up` that must be ready first


def _otelcol_argv(binary: Path, _state: Path) -> list[str]:
    return [str(binary), f"--config={config_dir() / 'otel-collector' / 'config.yaml'}"]


def otelcol_env(state: Path) -> dict[str, str]:
    # the trace export queue on disk: kept across restarts, like the component's other state
    return {"VOXPULSE_COLLECTOR_QUEUE_DIR": str(state / "queue")}


def _jaeger_argv(binary: Path, _state: Path) -> list[str]:
    return [str(binary), f"--config=file:{config_dir() / 'jaeger' / 'jaeger.yaml'}"]


def _jaeger_env(state: Path) -> dict[str, str]:
    return {"VOXPULSE_JAEGER_DATA": str(state / "data")}


#: where Jaeger keeps the spans: Badger on the local disk (jaeger/jaeger.yaml), or Apache Cassandra,
#: the store that scales out (jaeger/jaeger-cassandra.yaml over it, and a node of the stack's own)
TRACE_STORES = ("badger", "cassandra")
CQL_PORT = 9042


def _jaeger_cassandra_argv(binary: Path, _state: Path) -> list[str]:
    return [*_jaeger_argv(binary, _state), f"--config=file:{config_dir() / 'jaeger' / 'jaeger-cassandra.yaml'}"]


def _cassandra_argv(binary: Path, cstate: Path) -> list[str]:
    return [str(binary), str(cstate), str(config_dir() / "cassandra")]


def _cassandra_prepare(state: Path) -> None:
    """The node's cassandra.yaml in its state folder (cassandra/cassandra.yaml, ${STATE} filled in)."""
    cstate = state / "cassandra"
    cstate.mkdir(parents=True, exist_ok=True)
    template = (config_dir() / "cassandra" / "cassandra.yaml").read_text(encoding="utf-8")
    (cstate / "cassandra.yaml").write_text(template.replace("${STATE}", str(cstate)), encoding="utf-8")


def _cql_ready() -> bool:
    """Cassandra opens its CQL port once it serves clients."""
    import socket

    try:
        with socket.create_connection((LOOPBACK, CQL_PORT), timeout=0.5):
            return True
    except OSError:
        return False


CASSANDRA = Component(
    "cassandra",
    ("voxpulse-cassandra",),
    f"tcp://127.0.0.1:{CQL_PORT}",
    (CQL_PORT, 7000),
    _cassandra_argv,
    description="Apache Cassandra, one node (Jaeger's span store with --trace-store cassandra; cassandra/)",
    stop_timeout_s=30.0,
    prepare=_cassandra_prepare,
    ready_check=_cql_ready,
)


def on_cassandra(components: Mapping[str, Component]) -> dict[str, Component]:
    """``components`` with Jaeger's spans in Cassandra: the node first, then Jaeger once it answers."""
    out: dict[str, Component] = {}
    for name, comp in components.items():
        if name == "jaeger":
            out[CASSANDRA.name] = CASSANDRA
            comp = replace(comp, argv=_jaeger_cassandra_argv, waits_for=(CASSANDRA.name,),
                           description="Jaeger v2 (traces in Cassandra, search by call_id)")
        out[name] = comp
    return out


def prometheus_argv(binary: Path, state: Path) -> list[str]:
    return [
        str(binary),
        f"--config.file={config_dir() / 'prometheus' / 'prometheus.yml'}",
        f"--storage.tsdb.path={state / 'data'}",
        "--storage.tsdb.retention.time=15d",
        "--web.listen-address=127.0.0.1:9090",
        "--enable-feature=exemplar-storage",
        "--web.enable-lifecycle",
    ]


def alertmanager_config(state: Path) -> Path:
    """$VOXPULSE_ALERTMANAGER_CONFIG (a config rendered elsewhere), else prometheus/alertmanager.yml
    rendered into the state dir (mode 0600) from the environment: integrations whose secrets are
    not set are left out, so a local stack records alerts in alerts_history only."""
    rendered = settings.text(settings.ALERTMANAGER_CONFIG)
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


INSIGHTS_LISTEN = settings.DEFAULT_INSIGHTS_LISTEN


def _insights_argv(binary: Path, _state: Path) -> list[str]:
    return [str(binary), "insights-receiver"]  # on $VOXPULSE_INSIGHTS_LISTEN (up(bind=...) sets it), else 9097


def insights_env(cstate: Path) -> dict[str, str]:
    """The insights receiver's environment: the stack's state folder (the LiveKit key its tokens are
    checked against, made now if LiveKit has not started yet) and ``insights/`` in it for the
    recordings and transcripts, unless the operator set ``VOXPULSE_INSIGHTS_DIR``. Audio stays as the
    operator set ``VOXPULSE_INSIGHTS_AUDIO`` (off by default)."""
    state = cstate.parent
    livekit_env(state, create=True)
    env = {"VOXPULSE_STACK_DIR": str(state)}
    if not settings.text(settings.INSIGHTS_DIR):
        env[settings.INSIGHTS_DIR.name] = str(state / "insights")
    return env


#: the collector's OTLP/HTTP port (otel-collector/config.yaml and lb.yaml: on VOXPULSE_COLLECTOR_BIND)
COLLECTOR_OTLP_HTTP_PORT = 4318


def collector_otlp_http(env: Mapping[str, str]) -> str:
    """The stack's collector's OTLP/HTTP base URL as a process of this machine reaches it: on
    ``VOXPULSE_COLLECTOR_BIND`` (``up(bind=...)`` sets it; the collector's configs listen there),
    the loopback when unset or a wildcard (``0.0.0.0``, ``::`` listen on the loopback too)."""
    host = (env.get("VOXPULSE_COLLECTOR_BIND") or "").strip().strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = LOOPBACK
    return (f"http://[{host}]:{COLLECTOR_OTLP_HTTP_PORT}" if ":" in host
            else f"http://{host}:{COLLECTOR_OTLP_HTTP_PORT}")


def insights_forward_env(env: Mapping[str, str]) -> dict[str, str]:
    """Where the stack's insights receiver forwards traces and metrics (and sends its own metrics):
    the stack's collector where it listens (:func:`collector_otlp_http`), over OTLP/HTTP, whatever
    ``OTEL_EXPORTER_OTLP_*`` the shell that ran ``stack up`` holds (those are for agents)."""
    base = collector_otlp_http(env)
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": base, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{base}/v1/traces",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{base}/v1/metrics"}


def _alertmanager_argv(binary: Path, state: Path) -> list[str]:
    return [
        str(binary),
        f"--config.file={alertmanager_config(state)}",
        f"--storage.path={state / 'data'}",
        "--web.listen-address=127.0.0.1:9093",
        "--cluster.listen-address=",  # no HA gossip: one instance
    ]


# ---------------------------------------------------------------------------------------------
# LiveKit: keys in the stack's env file; its media in the media namespace (._media)

LIVEKIT_URL = "ws://127.0.0.1:7880"
_LIVEKIT_ENV_KEYS = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
#: the components that exist only for our LiveKit server (left out by ``up(without_livekit=True)``)
LIVEKIT_COMPONENTS = ("media", "livekit")


def _media_argv(_binary: Path, cstate: Path) -> list[str]:
    return [sys.executable, "-m", "voxpulse_console.stack._media", "serve", "--dir", str(cstate)]


def _media_unavailable(_env: Mapping[str, str]) -> str | None:
    return media.supported()


def _readenv_file(path: Path) -> dict[str, str]:
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
    path = env_file(state_path(state_dir))
    env = _readenv_file(path)
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


def _node_exporter_argv(binary: Path, cstate: Path) -> list[str]:
    return exporters.node_exporter_argv(binary, cstate, textfile=textfile_dir(cstate.parent))


# Start order: the trace store (Jaeger) before the collector that exports to it (and the insights
# receiver forwards to); the alerts receiver before Alertmanager before Prometheus; LiveKit last.
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
            otelcol_env,
            "OpenTelemetry Collector (OTLP in, span metrics, redaction, trace queue on disk)",
        ),
        Component(
            "node-exporter",
            exporters.NODE_BINARIES,
            f"http://{exporters.NODE_LISTEN}/",
            (exporters.port(exporters.NODE_LISTEN),),
            _node_exporter_argv,
            description="node_exporter (host CPU, memory, disk, network; voxpulse_console/stack/_exporters.py)",
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
            "insights-receiver",
            ("voxpulse",),
            f"http://{INSIGHTS_LISTEN}/healthz",
            (int(INSIGHTS_LISTEN.rpartition(":")[2]),),
            _insights_argv,
            insights_env,
            "LiveKit Agents' observability upload (LIVEKIT_OBSERVABILITY_URL) -> traces and metrics to the "
            "collector, tags, verdicts, transcripts (and audio, when enabled) per call (voxpulse insights-receiver)",
            stop_timeout_s=5.0,
            env_from_stack=insights_forward_env,
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
            prometheus_argv,
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


def bind_env(bind: str, env: Mapping[str, str], allow_plain_http: bool) -> dict[str, str]:
    """What ``up(bind=...)`` changes: the collector's OTLP ports, the insights receiver and the console
    listen on ``bind``
    (Prometheus, Jaeger, Alertmanager and the databases stay on the loopback: they have no login; the
    insights receiver checks each upload's token).
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
            f"--bind {bind}: the console's login, the collector's OTLP and the insights receiver would be open "
            "to your network over plain HTTP; give the console TLS (VOXPULSE_UI_TLS_CERT and VOXPULSE_UI_TLS_KEY), "
            "or keep the stack on the loopback behind a TLS proxy, or say so explicitly: --allow-plain-http "
            "(VOXPULSE_ALLOW_PLAIN_HTTP=1)"
        )
    # HOST:PORT split at the last colon (ui.config), so an IPv6 address goes in without brackets
    return {"VOXPULSE_COLLECTOR_BIND": bind, "VOXPULSE_UI_LISTEN": f"{bind}:{UI_LISTEN.rpartition(':')[2]}",
            settings.INSIGHTS_LISTEN.name: f"{bind}:{INSIGHTS_LISTEN.rpartition(':')[2]}"}


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


# ---------------------------------------------------------------------------------------------
# binaries

def cache_dir() -> Path:
    return Path(settings.text(settings.CACHE_DIR) or Path.home() / ".cache" / "voxpulse")


def find_binary(names: Iterable[str]) -> Path | None:
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
    "s3server": ("voxpulse-s3",),
    "cassandra": ("voxpulse-cassandra",),
}


def tool_names(tool: str) -> tuple[str, ...]:
    """The binary names of one of the stack's tools (``"promtool"``, ``"docker-compose"``, ...)."""
    return _TOOLS[tool]


def binaries() -> dict[str, Path | None]:
    """Where each tool is: $VOXPULSE_CACHE_DIR/bin, ~/.cache/voxpulse/bin, then PATH (None: missing)."""
    return {tool: find_binary(names) for tool, names in _TOOLS.items()}


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
    if debian and (any(find_binary(_TOOLS[t]) is None for t in stack_tools) or speech):
        runs.append([str(script), "--only=debian"])
    for argv in runs:
        proc = subprocess.run(argv, cwd=config_dir(), check=False)
        if proc.returncode != 0:
            raise StackError(f"{' '.join(argv)} failed with exit code {proc.returncode}")
    return binaries()

