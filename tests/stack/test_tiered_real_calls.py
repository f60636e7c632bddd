"""Real calls through the scale-out topology with 10 % tail sampling: a load-balancing collector, two
processing collectors, Jaeger. A call that a rule keeps (a transfer to an operator) is stored whole,
every span the agent's job processes exported; no call is ever stored in part.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from agent.realcalls import OtlpRecorder
from tests.realcalls.conftest import (
    LiveKit,
    RunningWorker,
    failed_calls,
    jobs_done,
    livekit_stack,
    place,
    require_media,
    running_worker,
)
from tests.support import wait_for
from tests.support.tier import TierSettled
from voxpulse_console import stack

pytestmark = [pytest.mark.stack, pytest.mark.slow]

JAEGER = "http://127.0.0.1:16686"
PERCENT = "10"


def _stored(trace_id: str) -> set[str]:
    r = httpx.get(f"{JAEGER}/api/traces/{trace_id}", timeout=10)
    if r.status_code == 404:
        return set()
    r.raise_for_status()
    return {str(s["spanID"]).rjust(16, "0") for t in r.json().get("data") or [] for s in t["spans"]}


@dataclass
class Tiered:
    lk: LiveKit
    recorder: OtlpRecorder
    worker: RunningWorker


@pytest.fixture(scope="module")
def tiered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiered]:
    require_media()
    state = tmp_path_factory.mktemp("tiered-real")
    busy = [n for n, c in stack.components(state_dir=state).items() if not c.in_media and any(
        stack.port_busy(p) for p in c.ports)]
    assert not busy, f"another stack holds the ports of {busy}"
    env = {"VOXPULSE_TRACE_SAMPLING_PERCENT": PERCENT, "VOXPULSE_TRACE_DECISION_AFTER_ROOT": "2s",
           "VOXPULSE_TRACE_DECISION_WAIT": "60s"}
    with livekit_stack(state, None, env=env, collectors=2) as lk:
        assert stack.pid("otelcol-2", state_dir=state) is not None
        with OtlpRecorder(forward_to="http://127.0.0.1:4318") as rec, running_worker(
            lk, rec.endpoint, None, state / "worker.log", VOXPULSE_TRACE_SAMPLING_PERCENT=PERCENT,
        ) as w:
            yield Tiered(lk, rec, w)


def test_a_kept_real_call_is_stored_whole_and_none_in_part(tiered: Tiered) -> None:
    results = place(tiered.worker, tiered.lk, ["ask_operator", "order_status", "order_status"], concurrency=3,
                    arrival_s=0.5)
    failed = failed_calls(results, tiered.worker, tiered.lk)
    assert not failed, failed
    assert jobs_done(tiered.recorder, [r.room_sid for r in results]), tiered.worker.worker.tail(40)
    exported: dict[str, set[str]] = {}
    for r in results:
        roots = [s for s in tiered.recorder.roots("job_entrypoint") if s.attributes.get("lk.room_sid") == r.room_sid]
        assert len(roots) == 1
        exported[r.scenario + ":" + r.room_sid] = {s.span_id for s in tiered.recorder.traces()[roots[0].trace_id]}
        exported[r.scenario + ":" + r.room_sid].add(roots[0].trace_id)  # remembered with the spans
    transfer = next(k for k in exported if k.startswith("ask_operator:"))

    def trace_id(key: str) -> str:
        return next(x for x in exported[key] if len(x) == 32)

    def spans(key: str) -> set[str]:
        return {x for x in exported[key] if len(x) == 16}

    # the transfer is kept by rule: every span, once its decision is made (2 s after its root)
    stored = wait_for(lambda: (got := _stored(trace_id(transfer))) >= spans(transfer) and got,
                      "the transferred call's whole trace in Jaeger", 120)
    assert stored == spans(transfer), sorted(stored ^ spans(transfer))
    # the others: whole or not at all (10 % of the rest by trace id), never a part -- once every
    # collector has decided and sent what it held
    wait_for(TierSettled(2), "every collector to decide every trace and Jaeger to store what was kept", 120)
    ring = httpx.get(f"http://{stack.RING_LISTEN}/ring", timeout=5).json()
    for key in exported:
        got = _stored(trace_id(key))
        assert got in (set(), spans(key)), (key, len(got), len(spans(key)), ring)
