"""The media namespace (voxpulse_console.stack._media) as an unprivileged user would make it: no root, the
namespace's own loopback and media address, host loopback ports reachable from inside, the
namespace's ports published on the host's loopback, clear refusals.

As root (CI) the namespace is made by the unprivileged account ``nobody`` (``setpriv``) with Debian's
own Python (the module is standard library only); as any other user, by that user.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT as REPO
from tests.support import free_port, unavailable, wait_for
from voxpulse_console.stack import _media as media

NOBODY = 65534


def _as_user(argv: list[str]) -> list[str]:
    """``argv`` run by an unprivileged account: ``nobody`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *argv]


def _python() -> str:
    """A Python the unprivileged account can run: Debian's when we are root (the venv's may live in
    root's home), else ours."""
    if os.geteuid() != 0:
        return sys.executable
    for candidate in ("/usr/bin/python3", shutil.which("python3") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    unavailable("STACK", "no system python3 for the unprivileged account")
    raise AssertionError  # unreachable


@dataclass
class Held:
    ns: media.MediaNamespace
    proc: subprocess.Popen[str]
    publish: int
    health: int
    log: Path


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the host"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def host_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def held(host_server: int) -> Iterator[Held]:
    why = media.supported()
    if why:
        unavailable("STACK", why)
    # not under pytest's tmp_path (mode 0700, root's): the unprivileged account makes its folder here
    base = Path(tempfile.mkdtemp(prefix="vp-media-"))
    base.chmod(0o777)
    directory, log = base / "ns", base / "media.log"
    publish, health = free_port(), free_port()
    argv = _as_user([_python(), "-m", "voxpulse_console.stack._media", "serve", "--dir", str(directory),
                     "--expose", str(host_server), "--publish", str(publish), "--health-port", str(health)])
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    ns = media.MediaNamespace(directory)
    try:
        wait_for(lambda: proc.poll() is None and ns.pid is not None and _get(f"http://127.0.0.1:{health}/"),
                 f"the media namespace to be ready ({log})", 30, every_s=0.1)
        yield Held(ns, proc, publish, health, log)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(base, ignore_errors=True)


def _get(url: str) -> bool:
    return httpx.get(url, timeout=1).status_code == 200


def _inside(held: Held, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_as_user([*held.ns.argv(), *argv]), capture_output=True, text=True, timeout=30,
                          check=False)


def test_made_by_an_unprivileged_account(held: Held) -> None:
    owner = os.stat(held.ns.dir).st_uid
    assert owner == (NOBODY if os.geteuid() == 0 else os.geteuid())
    out = _inside(held, "ip", "-o", "-4", "addr")
    assert out.returncode == 0, out.stderr
    assert f"{media.MEDIA_ADDRESS}/32" in out.stdout and "127.0.0.1/8" in out.stdout, out.stdout
    routes = _inside(held, "ip", "route", "show", "default")
    assert routes.returncode == 0 and routes.stdout.strip() == "", routes.stdout  # no way out


def test_a_host_port_is_reached_from_inside(held: Held, host_server: int) -> None:
    code = (f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{host_server}/', "
            "timeout=5).read().decode())")
    out = _inside(held, _python(), "-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello from the host"


def test_a_port_exposed_later_is_reached_from_inside(held: Held) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = int(server.server_address[1])
    try:
        code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=5).status)"
        before = _inside(held, _python(), "-c", code)
        assert before.returncode != 0  # not exposed yet: nothing listens there inside
        if os.geteuid() == 0:
            # the control socket is the unprivileged owner's (mode 0600): expose as that account
            expose = subprocess.run(_as_user([_python(), "-c", (
                "from voxpulse_console.stack import MediaNamespace as M; "
                f"M({str(held.ns.dir)!r}).expose([{port}])")]), cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True, text=True, timeout=30, check=False)
            assert expose.returncode == 0, expose.stderr
        else:
            held.ns.expose([port])
        after = _inside(held, _python(), "-c", code)
        assert after.returncode == 0 and after.stdout.strip() == "200", after.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_a_namespace_port_is_published_on_the_host(held: Held) -> None:
    code = ("import http.server as h; h.ThreadingHTTPServer(('127.0.0.1', "
            f"{held.publish}), h.SimpleHTTPRequestHandler).serve_forever()")
    inside = subprocess.Popen(_as_user([*held.ns.argv(), _python(), "-c", code]), cwd="/",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{held.publish}/"), "the published port to answer", 20, every_s=0.1)
    finally:
        os.killpg(inside.pid, 9)
        inside.wait(10)


def test_a_taken_port_is_named_with_its_process(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        owner = media.port_owner(port)
        assert owner is not None and f"(pid {os.getpid()})" in owner, owner
        proc = subprocess.run([sys.executable, "-m", "voxpulse_console.stack._media", "serve",
                               "--dir", str(tmp_path / "m"), "--publish", str(port), "--health-port", str(free_port())],
                              cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert f"127.0.0.1:{port} is taken by" in proc.stderr and f"(pid {os.getpid()})" in proc.stderr, proc.stderr
    assert not (tmp_path / "m" / "ns.pid").exists()  # nothing half-started


def test_entering_a_namespace_that_is_not_running_says_so(tmp_path: Path) -> None:
    ns = media.MediaNamespace(tmp_path / "gone")
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "ns.pid").write_text("999999 12345\n")  # a stale pid file of a crashed run
    assert ns.pid is None
    if media.in_media_namespace():
        pytest.skip("this process already is in a media namespace: argv() is [] here")
    with pytest.raises(media.MediaError, match="not running"):
        ns.argv()


def test_loopback_ports_of_an_environment() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "DATABASE_URL":
           "postgresql://u:p@127.0.0.1:5433/db", "REDIS_URL": "redis://localhost:6380/0",
           "STORE_API_URL": "http://127.0.0.1:41234/api", "ELSEWHERE": "http://10.0.0.5:80", "N": "127.0.0.1:99999"}
    assert media.loopback_ports(env) == [4318, 5433, 6380, 41234]


def test_stopping_the_holder_cleans_up(held: Held) -> None:
    # last in the module: the fixture's process is stopped here and its files must go with it
    pid = held.ns.pid
    assert pid is not None
    held.proc.terminate()
    held.proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
    assert held.ns.pid is None
    assert not any((held.ns.dir / n).exists() for n in ("ns.pid", "host.sock", "ns.sock", "control.sock"))


def test_stack_exec_runs_a_command_inside(tmp_path: Path) -> None:
    """`voxpulse stack exec -- CMD` (an agent of the user's, next to the stack's LiveKit server)."""
    if media.supported():
        unavailable("STACK", str(media.supported()))
    state = tmp_path / "stack"
    out_of_stack = subprocess.run([sys.executable, "-m", "voxpulse_console", "stack", "exec", "--state-dir",
                                   str(state), "--", "true"], cwd=REPO, capture_output=True, text=True, timeout=60,
                                  check=False)
    assert out_of_stack.returncode == 1 and "not running" in out_of_stack.stderr, out_of_stack.stderr
    from voxpulse_console import stack

    stack.up(["media"], state_dir=state, wait_s=30)
    try:
        inside = subprocess.run([sys.executable, "-m", "voxpulse_console", "stack", "exec", "--state-dir",
                                 str(state), "--", "ip", "-o", "-4", "addr"], cwd=REPO, capture_output=True,
                                text=True, timeout=60, check=False)
        assert inside.returncode == 0, inside.stderr
        assert f"{media.MEDIA_ADDRESS}/32" in inside.stdout
    finally:
        stack.down(["media"], state_dir=state)
