"""A LiveKit-shaped worker for tests/telemetry/test_relay_processes.py: ``python -m
tests.telemetry.relay_worker CALLS``.

Like LiveKit's default executor, the worker (this process) runs each call in a job process of its
own, started by a forkserver and named ``job_proc``, inheriting the environment; the job process
does what a stock agent's set-up function and entrypoint do: ``telemetry.configure()``, then one
call scope with a turn, and leaves (its metrics are flushed by the exit hook ``configure()``
installs, as in LiveKit, whose job processes end with ``os._exit``). It prints the name of the
relay socket that belongs to it, so the test can check that the relay went away with it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys


def job(index: int) -> None:
    import telemetry
    from telemetry import metrics

    telemetry.configure(service_name="relay-processes", setup_logs=False)

    async def one_call() -> None:
        async with telemetry.call(call_id=f"call-{index}", direction="inbound") as call:
            call.next_turn()
            metrics.record_time_to_first_word(0.8 + index / 100)
            metrics.record_time_to_first_chunk(telemetry.Stage.LLM, 0.3, provider="openai", model="gpt-4o-mini")
            call.set_outcome(telemetry.CallOutcome.RESOLVED_BY_BOT)

    asyncio.run(one_call())


def main() -> None:
    calls = int(sys.argv[1])
    from telemetry.relay import _socket_name

    name = _socket_name(os.getpid())
    print((name or b"").hex(), flush=True)
    ctx = multiprocessing.get_context("forkserver")
    procs = [ctx.Process(target=job, args=(i,), name="job_proc") for i in range(calls)]
    for p in procs:  # the calls overlap, as on a busy worker
        p.start()
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise SystemExit(f"job process exited with {p.exitcode}")


if __name__ == "__main__":
    main()
