"""Real calls end to end: the agent worker as a process, and a recorder of what it exports.

Used by ``voxpulse demo``, the real-call tests and the benchmarks. The worker and the callers run
inside the stack's media namespace (``voxpulse_console.stack._media``, passed as ``media=``) next to its
LiveKit server; what they export reaches the stack on the host's loopback through it.

    with OtlpRecorder(forward_to="http://127.0.0.1:4318") as rec, Worker(env=...) as worker:
        results = asyncio.run(run_calls([...], url=..., api_key=..., api_secret=...))
        rec.wait_for(lambda r: len(r.roots()) == len(results), timeout=30)

* :class:`Worker` -- ``python -m agent start`` with the local pipeline (``VOXPULSE_PROVIDERS=local``)
  as a child process: waits until it registered with the server, stops it with SIGTERM to the
  worker alone (calls in progress drain) and reports what its log said.
* :class:`OtlpRecorder` -- an OTLP/HTTP endpoint that keeps every request the agent's exporters
  send (decoded: spans with their attributes, metric points with their exemplars) and forwards
  it unchanged to the real collector, so the stack sees exactly what it would have seen. It
  answers what the agent *exported*: before the collector's own redaction, which is a second line
  of defence and must not hide a leak of the agent's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


class MediaNamespace(Protocol):
    """Where the worker and the callers run: the stack's media namespace
    (``voxpulse_console.stack.media_namespace()``): ``prepare(env)`` makes the loopback ports ``env``
    names reachable inside and returns the command prefix that enters it."""

    def prepare(self, env: Mapping[str, str]) -> list[str]: ...

__all__ = [
    "ExportedMetricPoint", "ExportedSpan", "OtlpRecorder", "StoreThread", "Worker", "WorkerError", "call",
]

ROOT = Path(__file__).resolve().parents[1]


class WorkerError(RuntimeError):
    """The worker did not register with the LiveKit server, or exited early."""


# ------------------------------------------------------------------------------------------------
# the worker process
# ------------------------------------------------------------------------------------------------
class Worker:
    """``python -m agent start`` as a child process (in its own process group)."""

    def __init__(self, env: Mapping[str, str], *, log_path: Path, register_timeout_s: float = 60.0,
                 media: MediaNamespace | None = None, argv: list[str] | None = None) -> None:
        self.env = {**os.environ, "VOXPULSE_PROVIDERS": "local", "VOXPULSE_WORKER_PORT": "0", **env}
        self.media = media  # where it runs (the stack's media namespace), None: right here
        # the worker's command: the example agent by default, or any LiveKit worker (a user's agent.py start)
        self.argv = argv or [sys.executable, "-m", "agent", "start"]
        self.log_path = log_path
        self.register_timeout_s = register_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # the log may hold earlier runs (it is appended to): this one starts here

    def start(self) -> Worker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        inside = self.media.prepare(self.env) if self.media is not None else []
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(
                [*inside, *self.argv], cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + self.register_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WorkerError(f"the worker exited with {self.proc.returncode}:\n{self.tail(40)}")
            records = self.records()
            failed = [r for r in records if _message(r) == "error initializing process"]
            if failed:
                self.stop()
                raise WorkerError(f"a job process failed its set-up:\n{failed[0].get('exception', failed[0])}")
            if any(_message(r) == "registered worker" for r in records):
                return self
            time.sleep(0.2)
        raise WorkerError(f"the worker did not register within {self.register_timeout_s:.0f}s:\n{self.tail(40)}")

    def records(self) -> list[dict[str, Any]]:
        """This run's JSON log lines (the worker's own and its job processes')."""
        out: list[dict[str, Any]] = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def log_text(self) -> str:
        """This run's log (from where it started in the file)."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def tail(self, n: int) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def job_log(self, room: str, n: int = 60) -> str:
        """The last ``n`` log records of the job that served ``room``: the worker's lines naming the
        room and every line of the job process that ran it, in order (what a failed call's report
        shows of the agent's side)."""
        records = self.records()
        pids = {r.get("pid") for r in records if r.get("room") == room and r.get("job_id")}
        worker = {r.get("pid") for r in records if _message(r) == "registered worker"}
        mine = [r for r in records if r.get("room") == room or (r.get("pid") in pids - worker)]
        return "\n".join(
            f"{r.get('timestamp', '')} pid={r.get('pid')} {r.get('level', '')} {str(_message(r))[:300]}"
            for r in mine[-n:]
        ) or f"(no log record names room {room!r})"

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM to the worker alone, as an orchestrator stops it: LiveKit's CLI drains (the calls
        in progress end and each job process flushes its spans at exit), then closes its processes.
        What it leaves in its process group (the metrics relay, LiveKit's forkserver) gets SIGTERM
        once it is gone; SIGKILL to the group after ``timeout_s``.

        Never SIGTERM to the group while the worker drains: the job processes ignore it, but the
        forkserver they were forked from does not, and with it gone LiveKit reads every job process
        as exited (code 255) and kills the calls in progress before their last spans are sent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc is not None else None
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            return proc.wait(10)
        _end_group(proc.pid, timeout_s=10.0)
        return code

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> bool:
    """``sig`` to process group ``pgid`` (0: none, only the check); False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _end_group(pgid: int, timeout_s: float) -> None:
    """SIGTERM to what is left of process group ``pgid`` (the relay's last export), then SIGKILL
    to whatever is still there after ``timeout_s``."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _signal_group(pgid, 0):
            return
        time.sleep(0.1)
    _signal_group(pgid, signal.SIGKILL)


def _message(record: Mapping[str, Any]) -> Any:
    return record.get("event", record.get("message"))


def call(
    spec: list[dict[str, Any]], *, livekit: Mapping[str, str], agent_name: str, concurrency: int = 5,
    arrival_s: float = 0.7, timeout_s: float = 600.0, on_start: Callable[[int], None] | None = None,
    media: MediaNamespace | None = None,
) -> list[Any]:
    """Places the calls of ``spec`` (``[{"scenario": ..., "room": ..., "attributes": ...}]``) from
    a caller process of their own (``python -m agent.caller --spec``), in the media namespace
    ``media`` (None: right here): the callers' WebRTC stack stays out of the calling process, and
    their CPU is theirs (``on_start`` gets its pid). Returns ``CallerResult``s."""
    from .caller import from_dict

    env = {**os.environ, **livekit}
    inside = media.prepare(livekit) if media is not None else []
    proc = subprocess.Popen(
        [*inside, sys.executable, "-m", "agent.caller", "--spec", "--agent-name", agent_name,
         "--concurrency", str(concurrency), "--arrival", str(arrival_s)],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    if on_start is not None:
        on_start(proc.pid)
    try:
        out, err = proc.communicate(json.dumps(spec), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    results = [from_dict(json.loads(line)) for line in out.splitlines() if line.startswith("{")]
    if len(results) != len(spec):
        raise RuntimeError(f"the callers exited with {proc.returncode}:\n{err[-3000:]}")
    return results


class StoreThread:
    """The fake store API (``agent.sim.fake_shop``) served from a thread of its own, for a worker in
    another process: ``with StoreThread() as url: ...``."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._ready = threading.Event()
        self._stop: Any = None
        self._loop: Any = None
        self.url = ""
        self._thread = threading.Thread(target=self._run, name="fake-store", daemon=True)

    def _run(self) -> None:
        import asyncio

        from .sim.fake_shop import FakeStore

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with FakeStore(**self._kwargs) as store:
                self.url = store.url
                self._ready.set()
                await self._stop.wait()

        asyncio.run(main())

    def __enter__(self) -> str:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("the fake store did not start")
        return self.url

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


# ------------------------------------------------------------------------------------------------
# the recorder
# ------------------------------------------------------------------------------------------------
def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass(frozen=True)
class ExportedSpan:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_message: str
    resource: dict[str, Any]
    scope: str

    @property
    def call_id(self) -> str | None:
        value = self.attributes.get("call_id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ExportedMetricPoint:
    name: str
    attributes: dict[str, Any]
    exemplars: list[dict[str, Any]]  # filtered attributes plus trace_id / span_id
    resource: dict[str, Any]
    scope: str


@dataclass
class _Store:
    spans: list[ExportedSpan] = field(default_factory=list)
    points: list[ExportedMetricPoint] = field(default_factory=list)
    requests: int = 0
    forward_errors: int = 0


class OtlpRecorder:
    """An OTLP/HTTP endpoint on 127.0.0.1 that records and forwards (see the module docstring)."""

    def __init__(self, *, forward_to: str | None = None, port: int = 0) -> None:
        self.forward_to = forward_to.rstrip("/") if forward_to else None
        self.errors: list[str] = []
        self._store = _Store()
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    recorder._record(self.path, body)
                except Exception as exc:  # a request the recorder cannot read is a finding, not a crash
                    with recorder._lock:
                        recorder.errors.append(f"{self.path}: {type(exc).__name__}: {exc}")
                status, payload = recorder._forward(self.path, body, self.headers.get("Content-Type", ""))
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-recorder", daemon=True)

    @property
    def endpoint(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> OtlpRecorder:
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- recording --------------------------------------------------------------------------------
    def _record(self, path: str, body: bytes) -> None:
        spans: list[ExportedSpan] = []
        points: list[ExportedMetricPoint] = []
        if path.endswith("/v1/traces"):
            req = ExportTraceServiceRequest.FromString(body)
            for rs in req.resource_spans:
                res = _attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        spans.append(ExportedSpan(
                            trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex() or None, name=s.name,
                            start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
                            attributes=_attrs(s.attributes),
                            events=[(e.name, _attrs(e.attributes)) for e in s.events],
                            status_message=s.status.message, resource=res, scope=ss.scope.name,
                        ))
        elif path.endswith("/v1/metrics"):
            mreq = ExportMetricsServiceRequest.FromString(body)
            for rm in mreq.resource_metrics:
                res = _attrs(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        data = getattr(m, kind) if kind else None
                        for p in getattr(data, "data_points", []):
                            exemplars = [
                                {**_attrs(ex.filtered_attributes), "trace_id": ex.trace_id.hex(),
                                 "span_id": ex.span_id.hex()}
                                for ex in getattr(p, "exemplars", [])
                            ]
                            points.append(ExportedMetricPoint(m.name, _attrs(p.attributes), exemplars, res,
                                                              sm.scope.name))
        with self._lock:
            self._store.requests += 1
            self._store.spans.extend(spans)
            self._store.points.extend(points)

    def _forward(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        if self.forward_to is None:
            return 200, b""
        req = urllib.request.Request(self.forward_to + path, data=body, method="POST",
                                     headers={"Content-Type": content_type or "application/x-protobuf"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            with self._lock:
                self._store.forward_errors += 1
            return int(exc.code), b""
        except OSError:
            with self._lock:
                self._store.forward_errors += 1
            return 503, b""

    # -- reading ----------------------------------------------------------------------------------
    def spans(self) -> list[ExportedSpan]:
        with self._lock:
            return list(self._store.spans)

    def points(self) -> list[ExportedMetricPoint]:
        with self._lock:
            return list(self._store.points)

    def traces(self) -> dict[str, list[ExportedSpan]]:
        out: dict[str, list[ExportedSpan]] = {}
        for s in self.spans():
            out.setdefault(s.trace_id, []).append(s)
        return out

    def roots(self, name: str | None = None) -> list[ExportedSpan]:
        return [s for s in self.spans() if s.parent_id is None and (name is None or s.name == name)]

    def series(self, scopes: tuple[str, ...] | None = None) -> dict[str, set[frozenset[tuple[str, str]]]]:
        """Distinct label sets per metric name (what would become Prometheus series)."""
        out: dict[str, set[frozenset[tuple[str, str]]]] = {}
        for p in self.points():
            if scopes is not None and p.scope not in scopes:
                continue
            out.setdefault(p.name, set()).add(frozenset((k, str(v)) for k, v in p.attributes.items()))
        return out

    def wait_for(self, pred: Callable[[OtlpRecorder], bool], timeout: float, every: float = 0.2) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self):
                return True
            time.sleep(every)
        return pred(self)

    def strings(self) -> Iterator[tuple[str, str]]:
        """(where, text) for every string that left the agent: span names, attribute keys and
        values, events, status messages, resources; metric names, labels and exemplars."""
        for s in self.spans():
            yield f"span {s.name}", s.name
            yield f"span {s.name} status", s.status_message
            for k, v in s.attributes.items():
                yield from _walk(f"span {s.name}.{k}", k, v)
            for name, attrs in s.events:
                yield f"span {s.name} event", name
                for k, v in attrs.items():
                    yield from _walk(f"span {s.name} event {name}.{k}", k, v)
            for k, v in s.resource.items():
                yield from _walk(f"resource.{k}", k, v)
        for p in self.points():
            yield f"metric {p.name}", p.name
            for k, v in p.attributes.items():
                yield from _walk(f"metric {p.name}.{k}", k, v)
            for ex in p.exemplars:
                for k, v in ex.items():
                    yield from _walk(f"metric {p.name} exemplar.{k}", k, v)


def _walk(where: str, key: str, value: Any) -> Iterator[tuple[str, str]]:
    yield where + " (key)", key
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, list):
        for v in value:
            yield from _walk(where, key, v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(f"{where}.{k}", k, v)
