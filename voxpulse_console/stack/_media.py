"""The media namespace: where our LiveKit server, the demo's agent worker and the speaking callers
run, while everything else of the stack (collector, Jaeger, Prometheus, Alertmanager, the console,
PostgreSQL, Redis) listens on the host's loopback, where the user's browser and agents reach it.

Why a namespace at all: libwebrtc (the LiveKit rtc SDK of the agent and the callers) never offers
loopback ICE candidates, so media between processes of one machine would flow over the machine's own
interface address. In a network namespace with ``lo`` and one veth end holding ``198.18.0.1/32`` (a
benchmarking range, no route out) the candidate pair is ``127.0.0.1 <-> 198.18.0.1``, inside it.

No root: the namespace is a user namespace plus a network namespace (``unshare --user
--map-root-user --net``), which an unprivileged user may create where the kernel allows it
(:func:`supported` says why not otherwise). One process, ``python -m voxpulse_console.stack._media serve
--dir DIR``, holds it (the stack runs it as the component ``media``):

* the **host side** (the process itself) listens on the host's loopback for the ports it publishes
  from the namespace (LiveKit's signal port 7880 and metrics port 6789, so Prometheus, the tests and
  the user's tools reach our LiveKit server) and on ``DIR/host.sock``, where each connection names a
  port of the host's loopback to be joined to;
* the **namespace side** (its child, started through ``unshare``) listens inside the namespace on the
  ports it exposes from the host (OTLP 4317/4318, PostgreSQL 5432, Redis 6379 by default, more on
  request: :meth:`MediaNamespace.expose`) and joins each connection to ``DIR/host.sock``; it serves
  ``DIR/ns.sock`` for the host side's published ports, and ``DIR/control.sock`` for requests.

Every byte stays on a loopback, in a socket file, or inside the namespace: nothing is sent to another
address of the machine. Commands run inside with :meth:`MediaNamespace.argv` (``nsenter`` into the
holder's namespaces, keeping the caller's credentials)::

    ns = MediaNamespace(Path(".voxpulse/stack/media"))
    subprocess.run([*ns.argv(), "python", "-m", "agent.caller", ...])
    ns.expose([8123])          # a host loopback port the namespace must reach (a test's recorder)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "DEFAULT_EXPOSE",
    "DEFAULT_PUBLISH",
    "HEALTH_PORT",
    "MEDIA_ADDRESS",
    "MediaError",
    "MediaNamespace",
    "loopback_ports",
    "port_owner",
    "supported",
]

MEDIA_ADDRESS = "198.18.0.1"
_IF, _PEER = "lkv0", "lkv1"
#: host loopback ports reachable from inside: OTLP gRPC/HTTP, PostgreSQL, Redis
DEFAULT_EXPOSE: tuple[int, ...] = (4317, 4318, 5432, 6379)
#: namespace ports published on the host's loopback: LiveKit's signal/API and its metrics
DEFAULT_PUBLISH: tuple[int, ...] = (7880, 6789)
#: the host side's readiness endpoint (HTTP, 127.0.0.1)
HEALTH_PORT = 13160
_REMEDY = (
    "unprivileged user namespaces are needed for the media namespace (LiveKit's media stays inside it); "
    "enable them (as root: sysctl -w user.max_user_namespaces=15000, and on Debian/Ubuntu kernels "
    "kernel.unprivileged_userns_clone=1; AppArmor: kernel.apparmor_restrict_unprivileged_userns=0), or run "
    "the stack without our LiveKit server (`voxpulse stack up --without-livekit`) against your own"
)


class MediaError(RuntimeError):
    """The media namespace cannot be made or entered here (with what to do about it)."""


# ---------------------------------------------------------------------------------------------
# who holds a port, and whether namespaces can be made


def port_owner(port: int) -> str | None:
    """"<command> (pid N)" of the process listening on 127.0.0.1/0.0.0.0:``port`` (TCP), when this
    user may see it; None when nobody listens or it cannot be told."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"{cmd[:120]} (pid {proc.name})"
    return "a process of another user"


def supported() -> str | None:
    """None when this user can make the media namespace here, else why not (with the remedy)."""
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian packages util-linux, iproute2)"
    try:
        if int(Path("/proc/sys/user/max_user_namespaces").read_text()) == 0:
            return f"user.max_user_namespaces is 0: {_REMEDY}"
    except (OSError, ValueError):
        pass
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "true"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`unshare --user --net` failed ({probe.stderr.strip() or probe.returncode}): {_REMEDY}"
    return None


_URL_PORT = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\]):(\d{1,5})(?![\d])")


def loopback_ports(env: Mapping[str, str]) -> list[int]:
    """The loopback ports the URLs in ``env``'s values name (``http://127.0.0.1:4318``,
    ``postgresql://u:p@127.0.0.1:5432/db``, ...): what a process started inside must reach."""
    ports = {int(m.group(1)) for v in env.values() for m in _URL_PORT.finditer(v)}
    return sorted(p for p in ports if 0 < p < 65536)


# ---------------------------------------------------------------------------------------------
# the handle


class MediaNamespace:
    """A media namespace held by ``python -m voxpulse_console.stack._media serve --dir DIR`` (the stack's
    component ``media``)."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory).resolve()

    @property
    def pid(self) -> int | None:
        """The namespace side's pid (its namespaces are what :meth:`argv` enters), None when down."""
        try:
            fields = (self.dir / "ns.pid").read_text().split()
            pid, started = int(fields[0]), fields[1]
        except (OSError, ValueError, IndexError):
            return None
        try:
            now = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        except (OSError, IndexError):
            return None
        return pid if now == started else None

    def argv(self) -> list[str]:
        """The prefix that runs a command inside (``nsenter``); [] when this process already is in a
        media namespace (a network namespace of the user's own with 198.18.0.1 and no way out)."""
        if in_media_namespace():
            return []
        pid = self.pid
        if pid is None:
            raise MediaError(f"the media namespace in {self.dir} is not running (`voxpulse stack up livekit`)")
        return ["nsenter", f"--target={pid}", "--user", "--net", "--preserve-credentials", "--"]

    def expose(self, ports: Iterable[int]) -> None:
        """Make these host loopback ports reachable at the same port on the namespace's loopback
        (idempotent; the publish ports are the namespace's own and are skipped)."""
        wanted = [p for p in ports if p not in DEFAULT_PUBLISH]
        if not wanted or in_media_namespace():
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            try:
                s.connect(str(self.dir / "control.sock"))
                s.sendall(("expose " + ",".join(map(str, wanted)) + "\n").encode())
                answer = s.makefile("r").readline().strip()
            except OSError as exc:
                raise MediaError(f"the media namespace in {self.dir} does not answer: {exc}") from exc
        if answer != "ok":
            raise MediaError(f"media namespace: {answer}")

    def prepare(self, env: Mapping[str, str]) -> list[str]:
        """Expose every loopback port ``env``'s URLs name and return :meth:`argv`: what a process
        started inside with ``env`` needs."""
        prefix = self.argv()
        self.expose(loopback_ports(env))
        return prefix


def in_media_namespace() -> bool:
    """True inside a network namespace with no way out that holds the media address."""
    if _has_way_out():
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((MEDIA_ADDRESS, 0))
        except OSError:
            return False
    return True


def _has_way_out() -> bool:
    """True when this network namespace has a default route over an interface other than lo."""
    try:
        v4 = Path("/proc/net/route").read_text().splitlines()[1:]
        v6 = Path("/proc/net/ipv6_route").read_text().splitlines()
    except OSError:
        return True
    for line in v4:
        f = line.split()
        if len(f) > 7 and f[1] == "00000000" and f[7] == "00000000":
            return True
    for line in v6:
        f = line.split()
        if len(f) > 9 and f[0] == "0" * 32 and f[1] == "00" and f[9] != "lo":
            return True
    return False


# ---------------------------------------------------------------------------------------------
# the relays (both sides)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _join(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    try:
        await asyncio.gather(_pipe(a[0], b[1]), _pipe(b[0], a[1]))
    finally:
        for w in (a[1], b[1]):
            w.close()


async def _tcp_to_unix(path: Path, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        far = await asyncio.open_unix_connection(str(path))
    except OSError:
        writer.close()
        return
    far[1].write(f"{port}\n".encode())
    await _join((reader, writer), far)


async def _unix_to_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A connection on a socket file: its first line names the loopback port to join it to."""
    try:
        line = await asyncio.wait_for(reader.readline(), 5)
        port = int(line)
        if not 0 < port < 65536:
            raise ValueError(port)
        far = await asyncio.open_connection("127.0.0.1", port)
    except (TimeoutError, OSError, ValueError):
        writer.close()
        return
    await _join((reader, writer), far)


def _listen_tcp(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    s.setblocking(False)
    return s


def _listen_unix(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    os.chmod(path, 0o600)
    s.listen(128)
    s.setblocking(False)
    return s


def _start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


# ---- the namespace side ----------------------------------------------------------------------


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _setup_links() -> None:
    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    if _has_way_out():
        raise MediaError("refusing to add the media interface to a network namespace with a way out")
    ip("link", "set", "lo", "up")
    ip("link", "add", _IF, "type", "veth", "peer", "name", _PEER)
    ip("addr", "add", f"{MEDIA_ADDRESS}/32", "dev", _IF)
    ip("link", "set", _IF, "up")
    ip("link", "set", _PEER, "up")


async def _inside(directory: Path, expose: Sequence[int]) -> None:
    _setup_links()
    loop = asyncio.get_running_loop()
    host_sock = directory / "host.sock"
    servers: dict[int, asyncio.AbstractServer] = {}

    async def expose_port(port: int) -> str:
        if port in servers or port in DEFAULT_PUBLISH:
            return "ok"
        try:
            sock = _listen_tcp(port)
        except OSError as exc:
            return f"cannot listen on 127.0.0.1:{port} inside the namespace: {exc.strerror}"
        servers[port] = await asyncio.start_server(functools.partial(_tcp_to_unix, host_sock, port), sock=sock)
        return "ok"

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            verb, _, arg = (await asyncio.wait_for(reader.readline(), 5)).decode().strip().partition(" ")
            if verb != "expose":
                answer = f"unknown request {verb!r}"
            else:
                answers = [await expose_port(int(p)) for p in arg.split(",") if p]
                answer = next((a for a in answers if a != "ok"), "ok")
        except (TimeoutError, ValueError, OSError) as exc:
            answer = f"bad request: {exc}"
        writer.write(f"{answer}\n".encode())
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    for port in expose:
        answer = await expose_port(port)
        if answer != "ok":
            print(f"[media] {answer}", file=sys.stderr, flush=True)
    await asyncio.start_unix_server(_unix_to_tcp, sock=_listen_unix(directory / "ns.sock"))
    await asyncio.start_unix_server(control, sock=_listen_unix(directory / "control.sock"))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("ready", flush=True)  # the host side waits for this line
    await stop.wait()


# ---- the host side ---------------------------------------------------------------------------


async def _health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                     b"Connection: close\r\n\r\nok\n")
        await writer.drain()
    writer.close()


async def _serve(directory: Path, expose: Sequence[int], publish: Sequence[int], health_port: int) -> int:
    taken: list[str] = []
    listeners: dict[int, socket.socket] = {}
    for port in (*publish, health_port):
        try:
            listeners[port] = _listen_tcp(port)
        except OSError:
            taken.append(f"127.0.0.1:{port} is taken by {port_owner(port) or 'another process'}")
    if taken:
        for s in listeners.values():
            s.close()
        print("[media] error: " + "; ".join(taken), file=sys.stderr, flush=True)
        return 1
    ns_sock = directory / "ns.sock"
    await asyncio.start_unix_server(_unix_to_tcp, sock=_listen_unix(directory / "host.sock"))
    for port in publish:
        await asyncio.start_server(functools.partial(_tcp_to_unix, ns_sock, port), sock=listeners[port])
    argv = ["unshare", "--user", "--map-root-user", "--net", "--", sys.executable, "-m",
            "voxpulse_console.stack._media", "_inside", "--dir", str(directory), "--expose", ",".join(map(str, expose))]
    child = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                 stdin=asyncio.subprocess.DEVNULL)
    assert child.stdout is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 30)
    except TimeoutError:
        line = b""
    if line.strip() != b"ready":
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        print(f"[media] error: the namespace side did not start (exit {child.returncode}): {_REMEDY}",
              file=sys.stderr, flush=True)
        return 1
    (directory / "ns.pid").write_text(f"{child.pid} {_start_time(child.pid)}\n", encoding="utf-8")
    await asyncio.start_server(_health, sock=listeners[health_port])
    print(f"[media] namespace ready (pid {child.pid}, {MEDIA_ADDRESS}); exposed {list(expose)}, "
          f"published {list(publish)} on 127.0.0.1", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    ended = asyncio.ensure_future(child.wait())
    await asyncio.wait([ended, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    if not ended.done():
        with contextlib.suppress(ProcessLookupError):
            child.terminate()
        try:
            await asyncio.wait_for(ended, 5)
        except TimeoutError:
            child.kill()
            await ended
        code = 0
    else:
        print(f"[media] the namespace side exited ({child.returncode})", file=sys.stderr, flush=True)
        code = 1
    for name in ("ns.pid", "host.sock", "ns.sock", "control.sock"):
        (directory / name).unlink(missing_ok=True)
    return code


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxpulse_console.stack._media",
                                     description="hold the media network namespace (the stack's `media`)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("serve", help="make the namespace and relay ports across it until SIGTERM")
    sp.add_argument("--dir", required=True, type=Path, help="its socket files and pid file")
    sp.add_argument("--expose", type=_ports, default=list(DEFAULT_EXPOSE), help="host ports reachable inside")
    sp.add_argument("--publish", type=_ports, default=list(DEFAULT_PUBLISH), help="namespace ports on the host")
    sp.add_argument("--health-port", type=int, default=HEALTH_PORT)
    sp = sub.add_parser("_inside")  # the namespace side, started by serve through unshare
    sp.add_argument("--dir", required=True, type=Path)
    sp.add_argument("--expose", type=_ports, default=[])
    sp = sub.add_parser("check", help="exit 0 when this user can make the namespace here, else say why")
    args = parser.parse_args(argv)
    if args.cmd == "check":
        why = supported()
        print(why or "ok: unprivileged user and network namespaces work here")
        return 1 if why else 0
    if args.cmd == "_inside":
        _die_with_parent()
        try:
            asyncio.run(_inside(args.dir.resolve(), args.expose))
        except (MediaError, subprocess.CalledProcessError) as exc:
            detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else str(exc)
            print(f"[media] error inside the namespace: {detail}", file=sys.stderr, flush=True)
            return 1
        return 0
    directory = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    return asyncio.run(_serve(directory, args.expose, args.publish, args.health_port))


if __name__ == "__main__":
    raise SystemExit(main())
