"""The stack's process supervisor: start, wait for, stop, kill and report the components.

Each component runs under its keeper (:mod:`._keeper`: a small process in its own session that
outlives the CLI, owns the component and restarts it with back-off when it exits unasked), with the
repository's own config file, its state under ``state_dir/<name>/``, its log in
``state_dir/logs/<name>.log``, its pid in ``state_dir/run/<name>.pid`` and its keeper's in
``state_dir/run/<name>.keeper`` (:mod:`._layout`). ``up()`` waits on each component's readiness
endpoint; it is idempotent (what already runs is left alone). ``stop()`` asks the keeper, which stops
the component for good; ``kill()`` kills the component itself, a crash its keeper answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from voxpulse_console.stack import _media as media
from voxpulse_console.stack._catalogue import (
    COMPONENTS,
    LIVEKIT_COMPONENTS,
    LOOPBACK,
    OPTIONAL,
    Component,
    StackError,
    bind_env,
    find_binary,
    on_cassandra,
)
from voxpulse_console.stack._compose import compose, docker_available
from voxpulse_console.stack._keeper import read_restarts, textfile
from voxpulse_console.stack._layout import (
    component_dir,
    keeper_pidfile,
    logfile,
    pidfile,
    state_path,
    topology_file,
    trace_store_file,
)
from voxpulse_console.stack._services import SERVICES
from voxpulse_console.stack._services import components as service_components
from voxpulse_console.stack._topology import MAX_COLLECTORS, read_topology, tiered, write_topology
from voxpulse_console.stack._trace_store import choose_trace_store, read_trace_store

__all__ = ["ComponentStatus", "component_names", "components", "down", "in_media_namespace", "kill", "logs",
           "media_namespace", "pid", "port_busy", "ready", "restart", "start", "status", "stop", "up"]

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
    restarts: int = 0  # by its keeper, since it was started



def _components(state: Path | None) -> dict[str, Component]:
    """The stack's own components for the topology and the trace store in ``state`` (None: the
    single collector, Badger)."""
    n = 0 if state is None else read_topology(state)
    comps = COMPONENTS if n == 0 else tiered(n)
    return on_cassandra(comps) if state is not None and read_trace_store(state) == "cassandra" else comps


def _all(state: Path | None) -> dict[str, Component]:
    """Everything a state folder can run: the stack, its optional components, PostgreSQL and Redis."""
    return {**_components(state), **OPTIONAL, **service_components()}


def _binary(comp: Component) -> Path | None:
    return comp.locate() if comp.locate is not None else find_binary(comp.binary_names)


def components(*, state_dir: Path | str | None = None) -> dict[str, Component]:
    """The components of the stack in ``state_dir``, in start order (:data:`COMPONENTS` for the
    single collector; the scale-out topology after ``up(collectors=N)``), without the optional ones."""
    return _components(state_path(state_dir))

def in_media_namespace() -> bool:
    """True inside a network namespace with no way out that holds the media address (a namespace of
    the user's own): LiveKit then runs here, with no ``media`` component."""
    return media.in_media_namespace()


def media_namespace(state_dir: Path | str | None = None) -> media.MediaNamespace:
    """The media namespace of the stack in ``state_dir`` (its ``media`` component)."""
    return media.MediaNamespace(component_dir(state_path(state_dir), "media"))


def _choose_topology(state: Path, collectors: int | None) -> None:
    current = read_topology(state)
    wanted = current if collectors is None else collectors
    if not 0 <= wanted <= MAX_COLLECTORS:
        raise StackError(f"--collectors {wanted}: 1 to {MAX_COLLECTORS} processing collectors (0: one collector)")
    if wanted == current:
        return
    running = [n for n in _components(state) if _running(state, n)]
    if running:
        what = f"{current} processing collectors" if current else "one collector"
        raise StackError(f"the stack in {state} runs with {what}: `voxpulse stack down` first ({', '.join(running)})")
    write_topology(state, wanted)



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
    """The component's own process (None while it is down, e.g. while its keeper waits to restart it)."""
    return _pid_in(pidfile(state, name))


def _keeper_pid(state: Path, name: str) -> int | None:
    return _pid_in(keeper_pidfile(state, name))


def _running(state: Path, name: str) -> bool:
    """Its keeper runs (the component runs, or is about to be restarted), or the component itself does."""
    return _keeper_pid(state, name) is not None or _read_pid(state, name) is not None


def _pid_in(path: Path) -> int | None:
    try:
        fields = path.read_text().split()
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


def port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def ready(url: str, timeout: float = 1.0) -> bool:
    """``url`` answers 200; a ``tcp://HOST:PORT`` URL (PostgreSQL, Redis): it accepts a connection."""
    if url.startswith("tcp://"):
        host, _, port = url.removeprefix("tcp://").rpartition(":")
        with socket.socket() as s:
            s.settimeout(timeout)
            return s.connect_ex((host, int(port))) == 0
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


def process_env(comp: Component, cstate: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    """A component's environment: this process's, the component's own (``comp.env``), ``up()``'s
    (``env``: ``bind_env`` and the caller's), then what follows from all of them (``comp.env_from_stack``:
    the insights receiver's collector address under ``up(bind=...)``)."""
    full_env = {**os.environ, **comp.env(cstate), **(env or {})}
    if comp.env_from_stack is not None:
        full_env.update(comp.env_from_stack(full_env))
    return full_env


def _spawn(comp: Component, state: Path, env: Mapping[str, str] | None) -> int:
    binary = _binary(comp)
    if binary is None:
        raise StackError(
            f"{comp.name}: binary not found ({' or '.join(comp.binary_names)}); "
            "run scripts/build-backends.sh or `voxpulse stack build`"
        )
    if comp.prepare is not None:
        comp.prepare(state)
    host_ports = () if comp.in_media else comp.ports  # an in_media component's ports are the namespace's
    busy = [p for p in host_ports if port_busy(p)]
    deadline = time.monotonic() + 5  # a process that was just killed may still be closing its sockets
    while busy and time.monotonic() < deadline:
        time.sleep(0.1)
        busy = [p for p in host_ports if port_busy(p)]
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
    full_env = process_env(comp, cstate, env)
    argv = comp.argv(binary, cstate)
    keeper = [sys.executable, "-m", "voxpulse_console.stack._keeper", "--state-dir", str(state), "--name", comp.name,
              "--stop-timeout", f"{comp.stop_timeout_s:g}", "--stop-signal", comp.stop_signal]
    if comp.in_media:
        try:
            media_namespace(state).argv()  # running (the keeper enters it afresh on each start)
        except media.MediaError as exc:
            raise StackError(f"{comp.name}: {exc}") from exc
        keeper += ["--media-dir", str(media_namespace(state).dir)]
    textfile(state, comp.name).unlink(missing_ok=True)  # a new keeper counts from 0
    log = logfile(state, comp.name)
    with log.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            [*keeper, "--", *argv],
            cwd=cstate,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    keeper_pidfile(state, comp.name).write_text(f"{proc.pid} {_start_time(proc.pid)} {binary}\n", encoding="utf-8")
    return proc.pid


#: the components that listen on ``up(bind=...)``'s address (the rest stay on the loopback)
_BOUND = ("otelcol", "insights-receiver", "ui")


def _wait_ready(names: Sequence[str], state: Path, wait_s: float, bind: str | None = None,
                ui_tls: bool = False, started: Sequence[str] = ()) -> None:
    """Wait until each of ``names`` answers its readiness URL; one of ``started`` that exits during
    start-up (its keeper restarts it) is an error, with its log's tail."""
    deadline = time.monotonic() + wait_s
    pending = list(names)
    comps = _all(state)
    while pending:
        for name in list(pending):
            comp = comps[name]
            if not _running(state, name) or (name in started and read_restarts(state, name) > 0):
                raise StackError(
                    f"{name} exited during start-up; log tail:\n{_tail(logfile(state, name), 30)}"
                )
            url = comp.ready_url
            if bind and name in _BOUND and bind not in ("0.0.0.0", "::"):
                url = url.replace(LOOPBACK, f"[{bind}]" if ":" in bind else bind, 1)
            if ui_tls and name == "ui":
                url = url.replace("http://", "https://", 1)
            if comp.ready_check() if comp.ready_check is not None else ready(url):
                pending.remove(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            details = "\n".join(f"--- {n} ---\n{_tail(logfile(state, n), 20)}" for n in pending)
            raise StackError(f"not ready after {wait_s:.0f}s: {', '.join(pending)}\n{details}")
        time.sleep(0.25)


def component_names(
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
    if "otelcol" in wanted and state is not None and read_topology(state):
        # the load-balancing collector alone would route every span nowhere: its tier comes with it
        wanted += [n for n in everything if (n.startswith("otelcol-") or n == "collector-ring") and n not in wanted]
    unknown = [n for n in wanted if n not in everything]
    if unknown:
        raise StackError(f"unknown component(s) {unknown}; known: {list(everything)}")
    return [n for n in everything if n in wanted]  # keep start order




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
    trace_store: str | None = None,
) -> dict[str, str]:
    """Start the components that are not running and wait until each is ready.

    Everything listens on the host's loopback; our LiveKit server runs in the media namespace
    (component ``media``, no root needed: :mod:`voxpulse_console.stack._media`), its signal port 7880 and
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

    ``trace_store="cassandra"`` keeps Jaeger's spans in Apache Cassandra (a node of the stack's own,
    component ``cassandra``, started first) instead of Badger on the local disk (``"badger"``);
    ``None`` keeps the current choice (``down()`` of the whole stack forgets it; the data of both stay
    in the state folder).
    """
    if use_docker:
        if not docker_available():
            raise StackError("use_docker=True but no Docker engine answers `docker info`")
        compose("up", "-d", "--wait")
        return {"docker-compose": "started"}
    state = state_path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    _choose_topology(state, collectors)
    choose_trace_store(state, trace_store, lambda: [n for n in _components(state) if _running(state, n)])
    everything = _all(state)
    result: dict[str, str] = {}
    started: list[str] = []
    merged = {**os.environ, **(env or {})}
    bound = bind_env(bind or merged.get("VOXPULSE_STACK_BIND") or LOOPBACK, merged, allow_plain_http)
    if bound:
        env = {**(env or {}), **bound}
        merged.update(bound)
    names = component_names(components, env, state, without_livekit=without_livekit)
    # what cannot start here is said before anything starts
    for name in names:
        why = None if _running(state, name) else everything[name].unavailable(merged)
        if why is not None and not (name == "media" and media.in_media_namespace()):
            raise StackError(f"{name}: {why}")
    bind_host = bound.get("VOXPULSE_COLLECTOR_BIND")
    try:
        for name in names:
            if name == "media" and media.in_media_namespace():
                continue  # already in a media namespace of the user's own: LiveKit runs right here
            if _running(state, name):
                result[name] = "running"
                continue
            if everything[name].in_media and "media" in started:
                _wait_ready(["media"], state, wait_s)  # its namespace first
            first = [n for n in everything[name].waits_for if n in started]
            if first:  # what it connects to at start (Jaeger: Cassandra) answers first
                _wait_ready(first, state, wait_s, started=started)
            _spawn(everything[name], state, env)
            started.append(name)
            result[name] = "started"
        _wait_ready([n for n in result], state, wait_s, bind_host, bool(merged.get("VOXPULSE_UI_TLS_CERT")),
                    started)
        for name in started:
            hook = everything[name].after_ready
            if hook is not None:
                hook(state)
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
    state = state_path(state_dir)
    component_names([name], state=state)
    keeper, pid = _keeper_pid(state, name), _read_pid(state, name)
    timeout = _all(state)[name].stop_timeout_s if timeout_s is None else timeout_s
    if keeper is not None:  # the keeper stops the component (SIGTERM, SIGKILL after its timeout) and exits
        _stop_pid(keeper, timeout + 5)
    if pid is not None and _alive(pid):  # no keeper (it was killed): the component itself
        _stop_pid(pid, timeout)
    for path in (keeper_pidfile(state, name), pidfile(state, name), textfile(state, name)):
        path.unlink(missing_ok=True)
    return keeper is not None or pid is not None


def kill(name: str, *, state_dir: Path | str | None = None, sig: int = signal.SIGKILL,
         keep_down: bool = False) -> bool:
    """Kill one component's process group abruptly, not its keeper: a crash (fault tests), which the
    keeper answers by restarting it after its back-off. ``keep_down`` SIGKILLs the keeper first: a
    crash that stays down until :func:`start` (a lost machine; :func:`stop` is the clean way down).
    Returns once the process is gone; False if it was not running."""
    state = state_path(state_dir)
    component_names([name], state=state)
    pid = _read_pid(state, name)
    keeper = _keeper_pid(state, name)
    if keep_down and keeper is not None:
        _signal_group(keeper, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(keeper):
            time.sleep(0.01)
        keeper = None
    if pid is None:
        return False
    _signal_group(pid, sig)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if keeper is None and not _alive(pid):
        for path in (keeper_pidfile(state, name), pidfile(state, name), textfile(state, name)):
            path.unlink(missing_ok=True)
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
        compose("down")
        return ["docker-compose"]
    state = state_path(state_dir)
    stopped = []
    names = [n for n in _all(state) if n not in SERVICES] if components is None else component_names(components,
                                                                                                          state=state)
    for name in reversed(names):
        if stop(name, state_dir=state_dir, timeout_s=timeout_s):
            stopped.append(name)
    if components is None:  # the whole stack: the next `up` starts the topology it is asked for
        topology_file(state).unlink(missing_ok=True)
        trace_store_file(state).unlink(missing_ok=True)
    return stopped


def pid(name: str, *, state_dir: Path | str | None = None) -> int | None:
    """The running component's process id (None when it is not running, or its pid was recycled)."""
    return _read_pid(state_path(state_dir), name)


def status(*, state_dir: Path | str | None = None) -> list[ComponentStatus]:
    state = state_path(state_dir)
    out = []
    for name, comp in _all(state).items():
        pid, running = _read_pid(state, name), _running(state, name)
        if name in OPTIONAL and not running and comp.unavailable(os.environ) is not None:
            continue  # an optional component that is neither running nor configured
        if name in SERVICES and not running:
            continue  # PostgreSQL and Redis: `voxpulse stack services start`
        out.append(
            ComponentStatus(
                name=name,
                running=running,
                ready=pid is not None and (comp.ready_check() if comp.ready_check is not None
                                           else ready(comp.ready_url, timeout=0.5)),
                pid=pid,
                url=comp.ready_url,
                log=logfile(state, name),
                binary=_binary(comp),
                restarts=read_restarts(state, name),
            )
        )
    return out


def logs(name: str, lines: int = 50, *, state_dir: Path | str | None = None) -> str:
    """The last ``lines`` lines of a component's log."""
    state = state_path(state_dir)
    component_names([name], state=state)
    return _tail(logfile(state, name), lines)
