"""The scale-out topology: its components, the processing collectors' ports, and the ring that routes
around dead ones.

``voxpulse stack up --collectors N`` runs a load-balancing collector (otel-collector/lb.yaml) on
the agents' ports and N processing collectors (otel-collector/processing.yaml) on the ports of
:func:`processing_ports`. The load-balancing exporter's static resolver never drops a backend by
itself; the ``collector-ring`` component does what a Kubernetes headless Service does for the DNS
and k8s resolvers: it probes each processing collector's health endpoint every second and, when
the set that answers changes, rewrites the ring file (a second ``--config`` of the load-balancing
collector that replaces its ``hostnames``) and sends that collector SIGHUP, which reloads it.

A refused connection removes a collector at once (the process is gone); a slow answer removes it
after three in a row (a saturated collector is not dead); two good answers in a row bring it back.
The ring never becomes empty: with no collector answering, the last non-empty ring stays.

It serves, on 127.0.0.1:13150: ``/healthz``, ``/ring`` (JSON: the ring and every collector's
state) and ``/metrics`` (``voxpulse_ring_backend_up{collector}``, ``voxpulse_ring_changes_total``).

    python -m voxpulse_console.stack._topology --state-dir .voxpulse/stack --collectors 3

The topology of a state folder is its ``topology.json`` (:func:`read_topology`); :func:`tiered` gives the
components that replace the single collector (and Prometheus with the processing collectors as targets).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from voxpulse_console._paths import config_dir
from voxpulse_console.stack._catalogue import COMPONENTS, Component, otelcol_env, prometheus_argv
from voxpulse_console.stack._layout import pidfile, ring_file, topology_file

__all__ = [
    "LISTEN",
    "MAX_COLLECTORS",
    "Backend",
    "ProcessingPorts",
    "Ring",
    "main",
    "processing_ports",
    "read_ring_file",
    "read_topology",
    "tiered",
    "tiered_prometheus_argv",
    "write_ring_file",
    "write_topology",
]

MAX_COLLECTORS = 9
LISTEN = "127.0.0.1:13150"


@dataclass(frozen=True, slots=True)
class ProcessingPorts:
    """Loopback ports of processing collector ``k`` (1-based), all distinct from the rest of the stack."""

    k: int
    otlp: int  # OTLP gRPC from the load-balancing collector
    metrics: int  # Prometheus exporter: span metrics
    telemetry: int  # the collector's own metrics
    health: int

    @property
    def name(self) -> str:
        return f"p{self.k}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.otlp}"

    def env(self) -> dict[str, str]:
        """The environment otel-collector/processing.yaml reads for these ports."""
        return {
            "VOXPULSE_COLLECTOR_NAME": self.name,
            "VOXPULSE_PROCESSING_OTLP_PORT": str(self.otlp),
            "VOXPULSE_PROCESSING_METRICS_PORT": str(self.metrics),
            "VOXPULSE_PROCESSING_TELEMETRY_PORT": str(self.telemetry),
            "VOXPULSE_PROCESSING_HEALTH_PORT": str(self.health),
        }


def processing_ports(k: int) -> ProcessingPorts:
    """OTLP 4340+k, span metrics 8890+k, own metrics 8870+k, health 13140+k (k = 1..9)."""
    if not 1 <= k <= MAX_COLLECTORS:
        raise ValueError(f"processing collector {k}: 1 to {MAX_COLLECTORS}")
    return ProcessingPorts(k, 4340 + k, 8890 + k, 8870 + k, 13140 + k)


def write_ring_file(path: Path, endpoints: Sequence[str]) -> None:
    """The second config file of the load-balancing collector: its backends (atomic replace)."""
    lines = [
        "# Written by voxpulse_console.stack._topology: the processing collectors that answer.",
        "exporters:",
        "  load_balancing:",
        "    resolver:",
        "      static:",
        f"        hostnames: [{', '.join(endpoints)}]",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(path)


def read_ring_file(path: Path) -> list[str]:
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("hostnames:"):
            inner = line.split(":", 1)[1].strip().strip("[]")
            return [h.strip() for h in inner.split(",") if h.strip()]
    return []


@dataclass(slots=True)
class Backend:
    ports: ProcessingPorts
    up: bool = True
    fails: int = 0
    oks: int = 0

    @property
    def name(self) -> str:
        return self.ports.name


def _probe(url: str, timeout_s: float) -> str:
    """"ok", "refused" (nothing listens: the process is gone) or "slow" (timeout, error status)."""
    try:
        r = httpx.get(url, timeout=timeout_s)
    except httpx.ConnectError:
        return "refused"
    except httpx.HTTPError:
        return "slow"
    return "ok" if r.status_code == 200 else "slow"


class Ring:
    """The membership loop. ``reload`` is called with the new ring after the ring file changed."""

    def __init__(
        self,
        backends: Sequence[ProcessingPorts],
        ring_file: Path,
        reload: Callable[[list[str]], None],
        *,
        probe: Callable[[str, float], str] = _probe,
        timeout_s: float = 1.0,
        slow_limit: int = 3,
        recover_after: int = 2,
    ) -> None:
        self.backends = [Backend(p) for p in backends]
        self.ring_file = ring_file
        self.reload = reload
        self.probe = probe
        self.timeout_s = timeout_s
        self.slow_limit = slow_limit
        self.recover_after = recover_after
        self.changes = 0
        self.ring = [b.ports.endpoint for b in self.backends]
        self.lock = threading.Lock()

    def step(self) -> bool:
        """One round of probes; True when the ring changed (file rewritten, reload called)."""
        for b in self.backends:
            result = self.probe(f"http://127.0.0.1:{b.ports.health}/", self.timeout_s)
            if result == "ok":
                b.fails, b.oks = 0, b.oks + 1
                if not b.up and b.oks >= self.recover_after:
                    b.up = True
            else:
                b.oks, b.fails = 0, b.fails + 1
                if b.up and (result == "refused" or b.fails >= self.slow_limit):
                    b.up = False
        wanted = [b.ports.endpoint for b in self.backends if b.up]
        if not wanted or wanted == self.ring:
            return False
        with self.lock:
            self.ring = wanted
            self.changes += 1
        write_ring_file(self.ring_file, wanted)
        self.reload(wanted)
        return True

    def status(self) -> dict[str, object]:
        with self.lock:
            return {
                "ring": list(self.ring),
                "changes": self.changes,
                "collectors": {b.name: {"endpoint": b.ports.endpoint, "up": b.up} for b in self.backends},
            }

    def metrics(self) -> str:
        st = self.status()
        out = [
            "# HELP voxpulse_ring_backend_up 1 while the processing collector is in the load-balancing ring.",
            "# TYPE voxpulse_ring_backend_up gauge",
        ]
        collectors = st["collectors"]
        assert isinstance(collectors, dict)
        for name, c in collectors.items():
            out.append(f'voxpulse_ring_backend_up{{collector="{name}"}} {1 if c["up"] else 0}')
        out += [
            "# HELP voxpulse_ring_changes_total Times the ring changed (the load-balancing collector reloaded).",
            "# TYPE voxpulse_ring_changes_total counter",
            f"voxpulse_ring_changes_total {st['changes']}",
            "",
        ]
        return "\n".join(out)


def _serve(ring: Ring, listen: str) -> ThreadingHTTPServer:
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                body, ctype = b"ok\n", "text/plain"
            elif self.path == "/ring":
                body, ctype = json.dumps(ring.status()).encode(), "application/json"
            elif self.path == "/metrics":
                body, ctype = ring.metrics().encode(), "text/plain; version=0.0.4"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="collector-ring-http", daemon=True).start()
    return server


def _lb_pid(state: Path) -> int | None:
    """The load-balancing collector's pid from its pidfile (its keeper rewrites it on each restart)."""
    try:
        return int(pidfile(state, "otelcol").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------------------------------------
# the topology of a state folder and its components


def read_topology(state: Path) -> int:
    """Processing collectors of the stack in ``state`` (0: the single collector)."""
    try:
        n = int(json.loads(topology_file(state).read_text(encoding="utf-8"))["collectors"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return n if 0 <= n <= MAX_COLLECTORS else 0


def write_topology(state: Path, n: int) -> None:
    """Record ``n`` processing collectors (0: forget the topology) and, for n > 0, start the ring with all."""
    if n:
        topology_file(state).write_text(json.dumps({"collectors": n}) + "\n", encoding="utf-8")
        # the ring starts with every processing collector; the collector-ring maintains it from then on
        write_ring_file(ring_file(state), [processing_ports(k).endpoint for k in range(1, n + 1)])
    else:
        topology_file(state).unlink(missing_ok=True)


def _processing(k: int) -> Component:
    ports = processing_ports(k)

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
    lb = config_dir() / "otel-collector" / "lb.yaml"
    return [str(binary), f"--config={lb}", f"--config={ring_file(cstate.parent)}"]


def _ring(n: int) -> Component:
    def argv(_binary: Path, cstate: Path) -> list[str]:
        return [sys.executable, "-m", "voxpulse_console.stack._topology",
                "--state-dir", str(cstate.parent), "--collectors", str(n)]

    return Component(
        "collector-ring", (Path(sys.executable).name,), f"http://{LISTEN}/healthz",
        (int(LISTEN.rpartition(":")[2]),), argv,
        description="keeps the load-balancing collector's ring equal to the processing collectors that answer",
        stop_timeout_s=5.0,
    )


def tiered_prometheus_argv(n: int) -> Callable[[Path, Path], list[str]]:
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
        ports = [processing_ports(k) for k in range(1, n + 1)]
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
        return [str(binary), f"--config.file={rendered}", *prometheus_argv(binary, cstate)[2:]]

    return argv


def tiered(n: int) -> dict[str, Component]:
    out: dict[str, Component] = {}
    for name, comp in COMPONENTS.items():
        if name == "otelcol":
            for k in range(1, n + 1):
                out[f"otelcol-{k}"] = _processing(k)
            out[name] = Component(
                name, comp.binary_names, comp.ready_url, comp.ports, _lb_argv,
                lambda state: {"VOXPULSE_COLLECTOR_NAME": "lb", **otelcol_env(state)},  # its trace queue on disk
                f"load-balancing collector (OTLP in, traces by trace id to {n} processing collectors, SDK metrics)",
            )
            out["collector-ring"] = _ring(n)
        elif name == "prometheus":
            out[name] = Component(name, comp.binary_names, comp.ready_url, comp.ports, tiered_prometheus_argv(n),
                                  comp.env, comp.description)
        else:
            out[name] = comp
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m voxpulse_console.stack._topology", description=__doc__.split("\n")[0])
    p.add_argument("--state-dir", required=True, type=Path, help="the stack's state dir")
    p.add_argument("--collectors", required=True, type=int, help=f"processing collectors 1..N (N <= {MAX_COLLECTORS})")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between probe rounds")
    p.add_argument("--listen", default=LISTEN)
    args = p.parse_args(argv)
    state: Path = args.state_dir
    ring_path = ring_file(state)

    def reload(endpoints: list[str]) -> None:
        pid = _lb_pid(state)
        print(f"{time.strftime('%H:%M:%S')} ring -> {endpoints}; SIGHUP load-balancing collector pid {pid}", flush=True)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    ring = Ring([processing_ports(k) for k in range(1, args.collectors + 1)], ring_path, reload)
    if ring_path.exists():
        ring.ring = read_ring_file(ring_path)
    server = _serve(ring, args.listen)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"collector-ring: {args.collectors} processing collectors, ring file {ring_path}", flush=True)
    while not stop.is_set():
        started = time.monotonic()
        try:
            ring.step()
        except OSError as exc:  # a full disk must not end the membership loop
            print(f"collector-ring: {exc}", file=sys.stderr, flush=True)
        stop.wait(max(0.0, args.interval - (time.monotonic() - started)))
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
