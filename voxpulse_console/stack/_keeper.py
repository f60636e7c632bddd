"""The keeper: one small process per component that owns it and restarts it when it exits unasked.

    python -m voxpulse_console.stack._keeper --state-dir .voxpulse/stack --name otelcol \\
        --stop-timeout 20 -- /path/to/otelcol --config=...

Why a keeper per component rather than one supervisor daemon per state folder: ``voxpulse stack up``
must return to the shell and every component must outlive it, so something other than the CLI has to
be the component's parent to see it exit (``waitpid``, no polling of pids that may be recycled). One
keeper per component keeps that something as small as the job: it is stdlib only, knows one command,
and its failure takes down one component's restarts, not the whole stack's; ``up``/``stop`` of one
component stay what they were (start or signal one process), with no daemon protocol to add, version
and keep alive. The cost is one idle Python process (~15 MB resident, measured) per component.

What it does:

* starts the command in a session of its own (so that ``stack.kill(name)`` can SIGKILL the
  component's whole process group without touching the keeper), its output appended to the
  component's log, and writes the component's pidfile (``run/<name>.pid``, :mod:`._layout`);
* when the component exits without being asked to (a crash, ``kill -9``, an out-of-memory kill), says
  so in the log and starts it again after a back-off: 1 s, doubling up to 30 s, back to 1 s once a run
  lasted 60 s. Each restart is counted;
* on SIGTERM (``stack.stop``/``down``) stops the component (``--stop-signal``, SIGTERM by default,
  to its group; SIGKILL after ``--stop-timeout``), removes its pidfile and metrics file and exits: a
  stop is never undone;
* keeps ``textfile/<name>.prom`` in the stack's state folder current, which the stack's node_exporter
  reads (``--collector.textfile.directory``): :data:`RESTARTS` (counter) and :data:`UP` (gauge), both
  labelled ``component``. Prometheus alerts on them (prometheus/rules/alerts-infra.yml:
  ``StackComponentRestarting``, ``StackComponentDown``).

A component in the media namespace (``--media-dir``) is entered afresh on each start (``nsenter`` into
the namespace holder's current pid), so it follows a restarted ``media`` component.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from voxpulse_console.stack._layout import logfile, pidfile, textfile_dir

__all__ = ["RESTARTS", "UP", "Backoff", "main", "read_restarts", "textfile"]

#: restarts of the component by its keeper (a counter; it starts at 0 with each ``stack up``)
RESTARTS = "voxpulse_stack_component_restarts_total"
#: 1 while the component's process runs, 0 while its keeper waits to restart it
UP = "voxpulse_stack_component_up"


@dataclass(slots=True)
class Backoff:
    """The wait before restart n: ``initial_s`` doubling up to ``max_s``; back to ``initial_s`` after a
    run of at least ``reset_after_s``."""

    initial_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0
    _next: float = 0.0

    def after_exit(self, ran_s: float) -> float:
        """The wait before the next start, given how long the run that just ended lasted."""
        if self._next == 0.0 or ran_s >= self.reset_after_s:
            self._next = self.initial_s
        wait = self._next
        self._next = min(self._next * 2, self.max_s)
        return wait


def textfile(state: Path, name: str) -> Path:
    """The component's metrics file in node_exporter's textfile folder."""
    return textfile_dir(state) / f"{name}.prom"


def read_restarts(state: Path, name: str) -> int:
    """The component's restart count from its metrics file (0 when it has none)."""
    try:
        text = textfile(state, name).read_text(encoding="utf-8")
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(RESTARTS + "{"):
            with contextlib.suppress(ValueError):
                return int(float(line.rsplit(" ", 1)[1]))
    return 0


def _write_metrics(state: Path, name: str, restarts: int, up: bool) -> None:
    path = textfile(state, name)
    label = '{component="' + name + '"}'
    text = (
        f"# HELP {RESTARTS} Restarts of the stack's component by its keeper after it exited unasked.\n"
        f"# TYPE {RESTARTS} counter\n"
        f"{RESTARTS}{label} {restarts}\n"
        f"# HELP {UP} 1 while the stack's component runs, 0 while its keeper waits to restart it.\n"
        f"# TYPE {UP} gauge\n"
        f"{UP}{label} {1 if up else 0}\n"
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")  # node_exporter reads *.prom only
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:  # a full disk must not stop the restarts
        _say(state, name, f"cannot write {path}: {exc}")


def _say(state: Path, name: str, message: str) -> None:
    """A line in the component's log (where its own output goes too), else on stderr."""
    line = f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} keeper: {message}\n"
    try:
        with logfile(state, name).open("a", encoding="utf-8") as f:
            f.write(line)
    except OSError:
        print(line, end="", file=sys.stderr, flush=True)


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Keeper:
    def __init__(self, state: Path, name: str, command: Sequence[str], *, stop_timeout_s: float,
                 stop_signal: int = signal.SIGTERM, media_dir: Path | None = None,
                 backoff: Backoff | None = None) -> None:
        self.state = state
        self.name = name
        self.command = list(command)
        self.stop_timeout_s = stop_timeout_s
        self.stop_signal = stop_signal
        self.media_dir = media_dir
        self.backoff = backoff or Backoff()
        self.stopping = threading.Event()
        self.restarts = 0

    def _argv(self) -> list[str]:
        if self.media_dir is None:
            return self.command
        from voxpulse_console.stack._media import MediaNamespace  # stdlib only, like this module

        return [*MediaNamespace(self.media_dir).argv(), *self.command]

    def _spawn(self) -> subprocess.Popen[bytes]:
        with logfile(self.state, self.name).open("ab") as out:
            proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        pidfile(self.state, self.name).write_text(f"{proc.pid} {_start_time(proc.pid)} {self.command[0]}\n",
                                                  encoding="utf-8")
        return proc

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        _signal_group(proc.pid, self.stop_signal)
        try:
            proc.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)  # what it left behind in its group

    def run(self) -> int:
        _write_metrics(self.state, self.name, 0, False)
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    proc = self._spawn()
                except Exception as exc:  # a missing binary, the media namespace gone: retried like a crash
                    _say(self.state, self.name, f"{self.name} did not start: {exc}")
                    proc = None
                if proc is not None:
                    _write_metrics(self.state, self.name, self.restarts, True)
                    while proc.poll() is None and not self.stopping.wait(0.1):
                        pass
                    if self.stopping.is_set():
                        self._terminate(proc)
                        break
                    pidfile(self.state, self.name).unlink(missing_ok=True)
                    _say(self.state, self.name,
                         f"{self.name} (pid {proc.pid}) exited unasked with status {proc.returncode}")
                _write_metrics(self.state, self.name, self.restarts, False)
                wait = self.backoff.after_exit(time.monotonic() - started)
                _say(self.state, self.name, f"restarting {self.name} in {wait:g}s (restart {self.restarts + 1})")
                if self.stopping.wait(wait):
                    break
                self.restarts += 1
        finally:
            pidfile(self.state, self.name).unlink(missing_ok=True)
            textfile(self.state, self.name).unlink(missing_ok=True)
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m voxpulse_console.stack._keeper", description=__doc__.split("\n")[0])
    p.add_argument("--state-dir", required=True, type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--stop-timeout", type=float, default=20.0, help="SIGTERM, then SIGKILL after this long")
    p.add_argument("--stop-signal", default="TERM", help="what asks the component to stop (TERM, INT, ...)")
    p.add_argument("--media-dir", type=Path, default=None, help="run the command inside this media namespace")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command")
    keeper = Keeper(args.state_dir, args.name, command, stop_timeout_s=args.stop_timeout,
                    stop_signal=getattr(signal, f"SIG{args.stop_signal}"), media_dir=args.media_dir)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: keeper.stopping.set())
    return keeper.run()


if __name__ == "__main__":
    raise SystemExit(main())
