"""A CPU profile of every Python process the real-call benchmark's agent worker starts.

bench/bench_realcalls.py puts this folder first on the worker's PYTHONPATH and names an output folder
in ``VOXPULSE_BENCH_STACKS``; Python imports ``sitecustomize`` at start-up, in the worker and in each
process it spawns, and a forked child (LiveKit's job processes come from its forkserver) starts its
own sampler. Without ``VOXPULSE_BENCH_STACKS`` nothing happens.

Every 20 ms a daemon thread reads each thread's CPU time (``/proc/self/task/<tid>/stat``, in clock
ticks) and, for each thread that used CPU since the last look, counts its current Python stack with
that many ticks: a CPU profile by stack, where a thread waiting (the event loop in ``select``) counts
nothing. The counts go to ``<folder>/<pid>.txt`` (``stack count`` per line, frames root first, ``;``
between them: py-spy's raw format) every 2 s and at exit. A sampling profiler costs the process some
CPU of its own: the benchmark profiles a run of its own, not the one it measures telemetry's share on.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections import Counter
from types import FrameType

_EVERY_S = 0.02
_WRITE_EVERY_S = 2.0


def _ticks(native_id: int) -> int | None:
    try:
        with open(f"/proc/self/task/{native_id}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime


def _stack(frame: FrameType | None) -> str:
    names = []
    while frame is not None:
        code = frame.f_code
        names.append(f"{code.co_name} ({code.co_filename})")
        frame = frame.f_back
    return ";".join(reversed(names))


class _Sampler:
    def __init__(self, folder: str) -> None:
        self.pid = os.getpid()
        self.path = os.path.join(folder, f"{self.pid}.txt")
        self.counts: Counter[str] = Counter()
        self.seen: dict[int, int] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="bench-stack-sampler", daemon=True)
        self.thread.start()
        atexit.register(self.write)

    def _run(self) -> None:
        me = threading.get_ident()
        last_write = time.monotonic()
        while True:
            time.sleep(_EVERY_S)
            frames = sys._current_frames()
            with self.lock:
                for t in threading.enumerate():
                    if t.ident is None or t.ident == me or t.native_id is None:
                        continue
                    now = _ticks(t.native_id)
                    if now is None:
                        continue
                    used = now - self.seen.get(t.native_id, now)
                    self.seen[t.native_id] = now
                    if used > 0 and t.ident in frames:
                        self.counts[_stack(frames[t.ident])] += used
            if time.monotonic() - last_write >= _WRITE_EVERY_S:
                self.write()
                last_write = time.monotonic()

    def write(self) -> None:
        if os.getpid() != self.pid:  # a forked child's copy (and its atexit): the child has its own
            return
        with self.lock:
            text = "".join(f"{stack} {n}\n" for stack, n in self.counts.items())
        tmp = f"{self.path}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except OSError:
            pass


def _start() -> None:
    folder = os.environ.get("VOXPULSE_BENCH_STACKS")
    if folder and os.path.isdir(folder):
        _Sampler(folder)


os.register_at_fork(after_in_child=_start)
_start()
