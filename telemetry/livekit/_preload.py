"""Imported by LiveKit's forkserver, once per worker: VoxPulse's modules loaded there are inherited by
every job process forked from it (copy-on-write) instead of being loaded by each.

LiveKit's worker (Linux) starts its job processes from a forkserver that first imports the package of
every registered plugin; ``telemetry.livekit`` registers one naming this module (``_plugin``). What it
loads is :func:`telemetry._setup.preload`'s: the OTel SDK's exporters, the metrics relay's client, the
call history and its instrumentors where a database is configured -- about 0.15-0.2 s of CPU a job
process no longer spends (a process per call: per call).

The forkserver runs it before any fork, so it starts nothing (no thread, no socket), and it never
raises: the forkserver survives only an ImportError, and a setting it cannot read is reported by
``configure()`` in the job process, where it is read again.
"""

from __future__ import annotations

import contextlib

with contextlib.suppress(Exception):
    from telemetry._setup import preload

    preload()
