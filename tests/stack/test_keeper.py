"""The keeper (voxpulse_console/stack/_keeper.py) with a real process under it: a crash is answered by a
restart after the back-off, counted in the textfile node_exporter reads; a stop is never undone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import wait_for
from voxpulse_console.stack import _keeper, _layout


def test_the_back_off_doubles_to_its_cap_and_resets_after_a_long_run() -> None:
    b = _keeper.Backoff()
    assert [b.after_exit(0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.after_exit(60.0) == 1  # it stayed up a minute: back to the first wait
    assert b.after_exit(0.1) == 2


def _pid(state: Path, name: str) -> int | None:
    try:
        return int(_layout.pidfile(state, name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_crash_is_restarted_and_counted_and_a_stop_is_final(tmp_path: Path) -> None:
    state, name = tmp_path, "sleeper"
    (state / "run").mkdir()
    (state / "logs").mkdir()
    keeper = subprocess.Popen(
        [sys.executable, "-m", "voxpulse_console.stack._keeper", "--state-dir", str(state), "--name", name,
         "--stop-timeout", "5", "--", "sleep", "600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        first = wait_for(lambda: _pid(state, name), "the component started", 20, 0.05)
        metrics = _keeper.textfile(state, name)
        wait_for(lambda: f'{_keeper.UP}{{component="{name}"}} 1' in metrics.read_text(), "up=1", 10, 0.05)
        assert _keeper.read_restarts(state, name) == 0

        os.killpg(first, signal.SIGKILL)  # a crash: the component's group, not its keeper
        t_kill = time.monotonic()
        second = wait_for(lambda: (p := _pid(state, name)) != first and p, "the component restarted", 10, 0.02)
        assert 1.0 <= time.monotonic() - t_kill < 3.0  # after the first back-off
        assert _keeper.read_restarts(state, name) == 1
        assert keeper.poll() is None and not _gone(second)
        log = _layout.logfile(state, name).read_text()
        assert "exited unasked" in log and "restarting sleeper in 1s (restart 1)" in log

        keeper.send_signal(signal.SIGTERM)  # stack.stop(): the keeper stops the component and exits
        assert keeper.wait(timeout=10) == 0
        assert _gone(second)
        assert not _layout.pidfile(state, name).exists() and not metrics.exists()
    finally:
        if keeper.poll() is None:
            os.killpg(keeper.pid, signal.SIGKILL)
            keeper.wait()
        pid = _pid(state, name)
        if pid is not None and not _gone(pid):
            os.killpg(pid, signal.SIGKILL)
