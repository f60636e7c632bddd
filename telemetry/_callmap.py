"""Which call each trace belongs to, for spans that start outside the call's scope.

A LiveKit worker's call is one trace rooted at LiveKit's ``job_entrypoint``, which starts before
the agent's code runs; ``room_connect`` and ``wait_for_participant`` end before the call's id is
known (a SIP caller's call id arrives with the participant), and ``job_shutdown`` and its
children run after the call scope closed. The call scope registers its trace here when it opens;
the span pipeline stamps ``call_id`` from here on spans of that trace that lack it, and holds
the spans of an *expected* trace (a job root was seen) until the call registers, so that no span
of a call is exported without its ``call_id``.

Thread-safe (spans end on any thread) and bounded (the oldest traces are forgotten first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

__all__ = ["CALLS", "CallMap"]

_MAX_TRACES: Final = 4096


class CallMap:
    def __init__(self, max_traces: int = _MAX_TRACES) -> None:
        self._max = max_traces
        self._calls: OrderedDict[int, str] = OrderedDict()
        self._expected: OrderedDict[int, float] = OrderedDict()
        self._lock = threading.Lock()

    def register(self, trace_id: int, call_id: str) -> None:
        """The trace ``trace_id`` is the call ``call_id`` (from now on, and for spans held)."""
        if not trace_id:
            return
        with self._lock:
            self._calls[trace_id] = call_id
            self._calls.move_to_end(trace_id)
            self._expected.pop(trace_id, None)
            while len(self._calls) > self._max:
                self._calls.popitem(last=False)

    def expect(self, trace_id: int, at: float) -> None:
        """The trace will become a call (its spans are held until :meth:`register`)."""
        if not trace_id:
            return
        with self._lock:
            if trace_id in self._calls:
                return
            self._expected[trace_id] = at
            while len(self._expected) > self._max:
                self._expected.popitem(last=False)

    def clear(self) -> None:
        """Forgets everything (a test capture starts over with trace ids 1, 2, 3, ...)."""
        with self._lock:
            self._calls.clear()
            self._expected.clear()

    def forget_expected(self, trace_id: int) -> None:
        with self._lock:
            self._expected.pop(trace_id, None)

    def call_id(self, trace_id: int) -> str | None:
        return self._calls.get(trace_id)

    def expected_since(self, trace_id: int) -> float | None:
        """When the trace was marked expected, if it is still waiting for its call."""
        return self._expected.get(trace_id)


CALLS: Final = CallMap()
