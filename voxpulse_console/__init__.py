"""The VoxPulse operator console: the ``voxpulse`` command.

It runs the native backend stack (:mod:`voxpulse_console.stack`), receives Alertmanager's
notifications into PostgreSQL (:mod:`voxpulse_console.alert_receiver`) and reads calls back from
the trace store, Prometheus and the call history (:mod:`voxpulse_console.cli`).

It is an application, not a library: agent developers import :mod:`telemetry`; operators run
``voxpulse``. Installed with the ``console`` extra.
"""
