"""node_exporter and the blackbox exporter (voxpulse_console/stack/_exporters.py), and an alert that leaves the box.

* the two components: loopback only, started before Prometheus, node_exporter with only the
  collectors the alerts read; the blackbox config passes the exporter's own check; every
  ``targets/blackbox-*.yml`` names a module of ``blackbox.yml`` through prometheus.yml's relabelling,
  and the stack's probes are exactly its components' readiness URLs;
* live, through ``voxpulse_console.stack``: both exporters start as components and answer with the
  series HostCpuHigh/HostMemoryHigh/HostDiskHigh and ProbeFailed read;
* live, end to end: the real node_exporter -> the real Prometheus evaluating the repository's
  HostMemoryHigh and TargetDown (threshold and ``for`` shortened, nothing else) -> the real
  Alertmanager with prometheus/alertmanager.yml rendered from the environment -> a webhook server in
  this test on loopback standing in for the generic webhook, Slack and Telegram; the chat messages
  link to the console's alerts page.

Ports: the components use their fixed ones (skipped when another stack holds them; run it inside a
network namespace of its own, ``scripts/netns.sh exec``); the end-to-end test picks free ones.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import ROOT, closed_port, free_port, unavailable, wait_for
from voxpulse_console import stack
from voxpulse_console.alert_receiver import render_alertmanager_config, write_alertmanager_config
from voxpulse_console.stack import _exporters as exporters

PROM = ROOT / "prometheus"
TARGETS = PROM / "targets"
CONSOLE_ALERTS = "http://127.0.0.1:8090/alerts"  # the console's default address, its alerts page


def _exporter(names: tuple[str, ...]) -> Path:
    found = stack.find_binary(names)
    if found is None:
        unavailable("STACK", f"{names[0]} not installed (bash scripts/debian.sh install stack)")
    return found


# ------------------------------------------------------------------------------------- configs


def test_the_exporters_are_components_on_loopback_before_prometheus() -> None:
    names = list(stack.COMPONENTS)
    assert names.index("node-exporter") < names.index("prometheus")
    assert names.index("blackbox-exporter") < names.index("prometheus")
    node, blackbox = stack.COMPONENTS["node-exporter"], stack.COMPONENTS["blackbox-exporter"]
    assert node.ports == (9100,) and blackbox.ports == (9115,)
    node_argv = node.argv(Path("/usr/bin/prometheus-node-exporter"), Path("/tmp/state"))
    assert "--web.listen-address=127.0.0.1:9100" in node_argv
    assert "--collector.disable-defaults" in node_argv
    assert sorted(a for a in node_argv if a.startswith("--collector.") and a != "--collector.disable-defaults") == \
        sorted(f"--collector.{c}" for c in ("cpu", "meminfo", "filesystem", "netdev", "loadavg", "textfile",
                                            "textfile.directory=/tmp/textfile"))
    # the textfile collector reads the stack's own folder (its keepers' restart counts), never Debian's default
    assert [a for a in node_argv if "textfile" in a] == ["--collector.textfile",
                                                         "--collector.textfile.directory=/tmp/textfile"]
    bb_argv = blackbox.argv(Path("/usr/bin/prometheus-blackbox-exporter"), Path("/tmp/state"))
    assert bb_argv[1:] == [f"--config.file={PROM / 'blackbox.yml'}", "--web.listen-address=127.0.0.1:9115"]


def test_blackbox_config_passes_the_exporters_check() -> None:
    binary = _exporter(exporters.BLACKBOX_BINARIES)
    proc = subprocess.run([str(binary), f"--config.file={exporters.blackbox_config()}", "--config.check"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _blackbox_job() -> dict[str, Any]:
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    job: dict[str, Any] = next(j for j in cfg["scrape_configs"] if j["job_name"] == "blackbox")
    return job


def _module_of(path: Path) -> str | None:
    """The module prometheus.yml's relabelling derives from a target file's path (None: no match)."""
    rule = next(r for r in _blackbox_job()["relabel_configs"] if r.get("target_label") == "__param_module")
    m = re.fullmatch(rule["regex"], str(path))  # Prometheus anchors its regexes
    return None if m is None else m.expand(rule.get("replacement", "$1").replace("$", "\\"))


def test_every_probe_file_names_a_module() -> None:
    modules = set(yaml.safe_load((PROM / "blackbox.yml").read_text())["modules"])
    files = sorted(TARGETS.glob("blackbox-*.yml"))
    assert {f.name for f in files} >= {"blackbox-http.yml", "blackbox-http-stack.yml",
                                       "blackbox-http-trace-store.yml", "blackbox-http-console.yml"}
    for f in files:
        assert _module_of(f) in modules, f.name
    assert _module_of(TARGETS / "blackbox-http-trace-store.yml") == "http"
    # compose's alternatives of the trace store's probe are not picked up by the job's glob
    assert not [f for f in TARGETS.glob("trace-store-probe-*.yml") if f.match("blackbox-*.yml")]


def _probes(*names: str) -> set[str]:
    out: set[str] = set()
    for name in names:
        for group in yaml.safe_load((TARGETS / name).read_text()) or []:
            out |= set(group["targets"])
    return out


def test_the_stack_probes_its_own_endpoints() -> None:
    """The stack's probes are its components' readiness URLs (all but the exporters themselves, and
    the native stack's media namespace holder: LiveKit's own probe goes through it, and compose has none)."""
    probed = _probes("blackbox-http-stack.yml", "blackbox-http-trace-store.yml", "blackbox-http-console.yml")
    ready = {c.ready_url for n, c in {**stack.COMPONENTS, **stack.OPTIONAL}.items()
             if n not in ("node-exporter", "blackbox-exporter", "media")}
    assert probed == ready
    assert {"http://127.0.0.1:13133/", "http://127.0.0.1:13134/status", "http://127.0.0.1:9090/-/ready",
            "http://127.0.0.1:9093/-/ready", "http://127.0.0.1:8090/healthz", "http://127.0.0.1:7880/"} <= probed
    assert _probes("trace-store-probe-tempo.yml") == {"http://127.0.0.1:3200/ready"}  # TempoNotReady's


def test_node_job_scrapes_the_stacks_node_exporter() -> None:
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    node = next(j for j in cfg["scrape_configs"] if j["job_name"] == "node")
    assert node["file_sd_configs"][0]["files"] == ["targets/node.yml"]
    assert exporters.NODE_LISTEN in _probes("node.yml")
    assert _blackbox_job()["relabel_configs"][4]["replacement"] == exporters.BLACKBOX_LISTEN


# ------------------------------------------------------------------------ the components, live


def _metrics(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            out.setdefault(name, []).append(line)
    return out


@pytest.fixture(scope="module")
def exporters_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    _exporter(exporters.NODE_BINARIES)
    _exporter(exporters.BLACKBOX_BINARIES)
    names = ["node-exporter", "blackbox-exporter"]
    busy = [p for n in names for p in stack.COMPONENTS[n].ports if stack.port_busy(p)]
    if busy:
        unavailable("STACK", f"ports {busy} are taken by another stack (run inside scripts/netns.sh exec)")
    state = tmp_path_factory.mktemp("exporters")
    try:
        assert stack.up(names, state_dir=state, wait_s=30) == dict.fromkeys(names, "started")
        yield state
    finally:
        stack.down(state_dir=state)
        assert not [r.name for r in stack.status(state_dir=state) if r.running]


@pytest.mark.stack
def test_node_exporter_serves_what_the_host_alerts_read(exporters_up: Path) -> None:
    text = httpx.get(f"http://{exporters.NODE_LISTEN}/metrics", timeout=10).text
    m = _metrics(text)
    for name in ("node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes",
                 "node_filesystem_avail_bytes", "node_filesystem_size_bytes", "node_load1",
                 "node_network_receive_bytes_total"):
        assert name in m, name
    collectors = {re.search(r'collector="([^"]+)"', line).group(1)  # type: ignore[union-attr]
                  for line in m["node_scrape_collector_success"]}
    # the host's collectors, and the textfile collector on the stack's folder (the keepers' restart counts)
    assert collectors == {*exporters.NODE_COLLECTORS, "textfile"}
    assert all(line.endswith(" 1") for line in m["node_scrape_collector_success"])
    assert m["node_textfile_scrape_error"] == ["node_textfile_scrape_error 0"]
    assert any('mode="idle"' in line for line in m["node_cpu_seconds_total"])


@pytest.mark.stack
def test_blackbox_exporter_probes_with_the_repositorys_modules(exporters_up: Path) -> None:
    probe = f"http://{exporters.BLACKBOX_LISTEN}/probe"
    ok = _metrics(httpx.get(probe, params={"module": "http", "target": f"http://{exporters.NODE_LISTEN}/"},
                            timeout=10).text)
    assert ok["probe_success"] == ["probe_success 1"]
    with closed_port() as port:
        down = _metrics(httpx.get(probe, params={"module": "http", "target": f"http://127.0.0.1:{port}/"},
                                  timeout=10).text)
    assert down["probe_success"] == ["probe_success 0"]
    tcp = _metrics(httpx.get(probe, params={"module": "tcp", "target": exporters.NODE_LISTEN}, timeout=10).text)
    assert tcp["probe_success"] == ["probe_success 1"]


# ------------------------------------------------------------------ an alert leaves the box, live


class _Sink:
    """A webhook server on loopback: records every POST (path, JSON body) and answers like the real
    receivers would (Telegram's Bot API wants a message back)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    sink.posts.append((self.path, json.loads(body or b"null")))
                reply: dict[str, Any] = {"ok": True}
                if "/bot" in self.path:
                    reply["result"] = {"message_id": 1, "date": 0, "chat": {"id": -100, "type": "group"}}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def at(self, prefix: str) -> list[Any]:
        with self.lock:
            return [body for path, body in self.posts if path.startswith(prefix)]


class _Proc:
    """A child process whose log is drained (and kept) by a thread; ``address()`` waits for the
    exporter-toolkit's 'Listening on' line and returns the address it bound."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log: list[str] = []
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)

    def address(self) -> str:
        def bound() -> str | None:
            if self.proc.poll() is not None:
                pytest.fail("exited:\n" + "".join(self.log), pytrace=False)
            found = [m.group(1) for line in list(self.log)
                     if (m := re.search(r'msg="Listening on" address=(\S+)', line))]
            return found[0] if found else None

        return wait_for(bound, "the 'Listening on' log line", 30, 0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.thread.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _fast_rules(out: Path) -> None:
    """alerts-infra.yml's HostMemoryHigh (threshold 85 % -> 0 %) and TargetDown, both firing at once
    (``for: 0s``); expressions, labels and annotations otherwise the repository's."""
    rules = yaml.safe_load((PROM / "rules" / "alerts-infra.yml").read_text())
    kept = []
    for rule in rules["groups"][0]["rules"]:
        if rule["alert"] == "HostMemoryHigh":
            assert rule["expr"].rstrip().endswith("> 85"), rule["expr"]
            rule["expr"] = rule["expr"].rstrip().removesuffix("> 85") + "> 0"
        elif rule["alert"] != "TargetDown":
            continue
        rule["for"] = "0s"
        kept.append(rule)
    assert len(kept) == 2
    out.write_text(yaml.safe_dump({"groups": [{"name": "fast-infra", "rules": kept}]}), encoding="utf-8")


@pytest.mark.stack
@pytest.mark.slow
def test_a_fired_alert_reaches_the_webhooks_with_a_console_link(tmp_path: Path) -> None:
    prometheus = stack.find_binary(("prometheus",))
    alertmanager = stack.find_binary(("alertmanager", "prometheus-alertmanager"))
    if prometheus is None or alertmanager is None:
        unavailable("STACK", "prometheus / alertmanager not installed (bash scripts/debian.sh install stack)")
    sink = _Sink()
    sink.thread.start()
    procs: list[_Proc] = []
    try:
        node = _Proc(exporters.node_exporter_argv(_exporter(exporters.NODE_BINARIES), tmp_path,
                                                  listen="127.0.0.1:0"))
        procs.append(node)
        env = {
            "ALERTS_RECEIVER_URL": f"{sink.url}/history",
            "ALERT_WEBHOOK_URL": f"{sink.url}/hook",
            "SLACK_WEBHOOK_URL": f"{sink.url}/slack",
            "TELEGRAM_BOT_TOKEN": "123456:test-only",
            "TELEGRAM_CHAT_ID": "-100",
            "TELEGRAM_API_URL": f"{sink.url}/telegram",
        }
        text = render_alertmanager_config((PROM / "alertmanager.yml").read_text(), env, allow_missing=True)
        write_alertmanager_config(tmp_path / "alertmanager.yml", text, PROM)
        am = _Proc([str(alertmanager), f"--config.file={tmp_path / 'alertmanager.yml'}",
                    f"--storage.path={tmp_path / 'am'}", "--web.listen-address=127.0.0.1:0",
                    "--cluster.listen-address="])
        procs.append(am)
        node_addr, am_addr = node.address(), am.address()

        _fast_rules(tmp_path / "rules.yml")
        with closed_port() as down_port:
            prom_cfg = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp_path / "rules.yml")],
                "alerting": {"alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": [am_addr]}]}]},
                "scrape_configs": [
                    {"job_name": "node", "static_configs": [{"targets": [node_addr]}]},
                    {"job_name": "voxpulse-agent", "static_configs": [{"targets": [f"127.0.0.1:{down_port}"]}]},
                ],
            }
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_cfg), encoding="utf-8")
            procs.append(_Proc([str(prometheus), f"--config.file={tmp_path / 'prometheus.yml'}",
                                f"--storage.tsdb.path={tmp_path / 'prom'}",
                                f"--web.listen-address=127.0.0.1:{free_port()}"]))

            def alerts(prefix: str) -> dict[str, dict[str, Any]]:
                return {a["labels"]["alertname"]: a for body in sink.at(prefix) for a in body["alerts"]}

            # the generic webhook: Alertmanager's JSON, every alert (group_wait 10 s)
            hook = wait_for(lambda: (a := alerts("/hook")).keys() >= {"HostMemoryHigh", "TargetDown"} and a,
                            "both alerts at the generic webhook", 60)
            # Telegram (critical, group_wait 10 s) and Slack (warnings, group_wait 30 s)
            telegram = wait_for(lambda: sink.at("/telegram/"), "TargetDown on Telegram", 60)
            slack = wait_for(lambda: sink.at("/slack"), "HostMemoryHigh on Slack", 60)

        memory = hook["HostMemoryHigh"]
        assert memory["status"] == "firing"
        assert memory["labels"] | {"instance": node_addr} == memory["labels"]
        assert memory["labels"]["severity"] == "warning" and memory["labels"]["service"] == "infrastructure"
        assert re.fullmatch(rf"Memory usage on {re.escape(node_addr)} is \d+ % \(> 85 %\)",
                            memory["annotations"]["summary"])
        assert memory["annotations"]["runbook_url"] == "prometheus/runbooks.md#hostmemoryhigh"
        assert hook["TargetDown"]["labels"]["severity"] == "critical"
        assert hook["TargetDown"]["labels"]["instance"] == f"127.0.0.1:{down_port}"
        assert sink.at("/history"), "every alert also goes to the alerts-history webhook"

        (attachment,) = slack[0]["attachments"]
        assert "HostMemoryHigh" in attachment["title"]
        assert attachment["title_link"] == CONSOLE_ALERTS
        assert "Memory usage on" in attachment["text"]
        message = telegram[0]
        assert str(message["chat_id"]) == "-100" and message["parse_mode"] == "HTML"
        assert "TargetDown" in message["text"] and f'href="{CONSOLE_ALERTS}"' in message["text"]
    finally:
        for p in reversed(procs):
            p.stop()
        sink.server.shutdown()
        sink.server.server_close()
