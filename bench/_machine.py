"""The machine around a benchmark: CPU of a process, and how busy everything else kept the machine.

The project's machine is a shared 2-core VM. A benchmark measures its own processes' CPU and the
machine's busy time over the same window; the difference is other processes' load, and a window
where it passes :data:`BUSY_OTHER_CORES` is reported as measured on a busy machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["BUSY_OTHER_CORES", "Machine", "machine_busy_s", "proc_cpu_s"]

#: other processes' CPU (cores) above which a measurement is marked as taken on a busy machine
BUSY_OTHER_CORES = 0.25
_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int | None) -> float:
    """utime + stime of a process (all its threads), seconds; 0 for None or a process gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting on I/O) since boot."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals[:8]) - idle) / _TICK


class Machine:
    """The CPU the machine spent during a measure, split into this benchmark's processes (``pids()``,
    read at the start and at the end, plus this process) and everyone else's.

    ``cpu_s``: how to read one of those processes' CPU (default :func:`proc_cpu_s`; a benchmark
    whose processes fork children passes a reader of the whole tree)."""

    def __init__(self, pids: Callable[[], Iterable[int | None]],
                 cpu_s: Callable[[int | None], float] = proc_cpu_s) -> None:
        self._pids, self._cpu_s = pids, cpu_s
        self._t0 = time.time()
        self._busy0 = machine_busy_s()
        self._own0 = self._own()

    def _own(self) -> float:
        return sum(self._cpu_s(p) for p in self._pids()) + proc_cpu_s(os.getpid())

    def done(self) -> dict[str, Any]:
        wall = max(1e-6, time.time() - self._t0)
        busy = machine_busy_s() - self._busy0
        own = self._own() - self._own0
        others = max(0.0, busy - own) / wall
        load = Path("/proc/loadavg").read_text().split()[:3]
        return {"seconds": round(wall, 1), "cores": os.cpu_count(), "loadavg_1_5_15": [float(x) for x in load],
                "machine_busy_cores": round(busy / wall, 2), "this_bench_cores": round(own / wall, 2),
                "other_processes_cores": round(others, 2), "busy": others > BUSY_OTHER_CORES}
