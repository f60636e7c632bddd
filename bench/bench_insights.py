"""The insights receiver (LiveKit Agents' observability upload) and the call page's recording.

    python -m bench.bench_insights [--uploads 200] [--trace-rounds 60] [--concurrency 8] [--calls 10]
                                   [--loads 20] [--old-loads 5] [--recording-s 600] [--json PATH]

Needs PostgreSQL (``DATABASE_URL``: ``scripts/services.sh start``); the real calls need the stack's
LiveKit server and media namespace, the call page Debian's Chromium. Four measures:

* **Receiver throughput on one core**: ``voxpulse insights-receiver`` pinned to one CPU
  (``taskset -c 1``), audio kept (a temporary folder) and the call in PostgreSQL, traces forwarded to
  a loopback OTLP sink (bench/sink.py). The real call's requests (tests/fixtures/
  livekit_observability_v0_real) replayed from this process (pinned to another CPU), ``--concurrency``
  at a time, with a token minted as livekit-agents mints one: its recording upload ``--uploads`` times,
  each under a room id of its own (the header's, same length: each upload is a new call), then its
  trace requests ``--trace-rounds`` times. Reported: uploads/s, trace requests/s, spans/s, and the
  receiver's CPU seconds (utime + stime of its process) per upload and per 1000 spans.
* **Hang-up -> audio playable**: ``--calls`` real calls, one at a time, to the stock agent without
  VoxPulse (tests/realcalls/zero_code_agent.py, ``record=True``, ``LIVEKIT_OBSERVABILITY_URL`` at the
  receiver) through the stack's LiveKit server; per call the time from the caller's hang-up to the
  console's ``/api/calls/{id}`` showing the audio ``present`` with a url, polled every 100 ms.
  Target p95 <= 10 s.
* **Waveform first paint of a 10-minute call**: a stereo Ogg Opus recording of ``--recording-s`` s
  (the real call's audio repeated, or espeak-ng speech: ``--recording``) stored by the receiver's own
  store with the peaks the receiver keeps beside it (``waveform.json``); Chromium on the call page
  ``--loads`` times, each in a fresh context (an empty HTTP cache), from navigation start to
  ``[data-testid=waveform][data-decoded=true]`` in the DOM (a MutationObserver installed before the
  page's scripts, ``performance.now()``) and to the next frame after it. Target p95 <= 300 ms. Beside
  it, the same recording stored without peaks (a call kept before the receiver computed them: the
  page decodes the audio itself), ``--old-loads`` times; the receiver's CPU to compute the peaks once;
  and where the in-page decode's time goes: the fetch, ``decodeAudioData`` and the per-pixel peaks.
* **Storage per call-minute**: bytes of audio and chat history as stored, per minute of recording,
  of the committed real call and of the real calls above.

Figures taken while other processes used more than 0.25 cores are marked busy (as bench_freshness).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as dt
import gzip
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench._machine import BUSY_OTHER_CORES, Machine, proc_cpu_s

ROOT = Path(__file__).resolve().parent.parent
REAL_CALL = ROOT / "tests" / "fixtures" / "livekit_observability_v0_real"
ZERO_CODE = ROOT / "tests" / "realcalls" / "zero_code_agent.py"
KEY = "APIbench"
SECRET = secrets.token_urlsafe(24)  # made anew each run: the bench's own LiveKit key pair, nothing kept
PLAYABLE_TARGET_P95_S = 10.0
PAINT_TARGET_P95_MS = 300.0
RECEIVER_CPU = 1
LOAD_CPU = 0


# --- helpers ----------------------------------------------------------------------------------------


def _pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 3)


def stats(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": _pct(values, 50), "p95": _pct(values, 95),
            "max": round(max(values), 3) if values else None}


def _tree_cpu_s(pid: int | None) -> float:
    """utime + stime of a process and all its children (0 for None or a process gone)."""
    import psutil

    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def token(key: str = KEY, secret: str = SECRET) -> str:
    """A token as livekit-agents mints one for its upload (the observability write grant, 6 h)."""
    from livekit import api

    return (api.AccessToken(key, secret).with_observability_grants(api.ObservabilityGrants(write=True))
            .with_ttl(dt.timedelta(hours=6)).to_jwt())


def real_requests() -> list[dict[str, Any]]:
    """The committed real call's requests: {path, headers (no Content-Length), body}."""
    manifest = json.loads((REAL_CALL / "manifest.json").read_text(encoding="utf-8"))
    out = []
    for req in manifest["requests"]:
        headers = {k: v for k, v in req["headers"].items() if k.lower() != "content-length"}
        out.append({"path": req["path"], "headers": headers, "body": (REAL_CALL / req["body"]).read_bytes()})
    return out


def _content_type(headers: dict[str, str]) -> str:
    return next(v for k, v in headers.items() if k.lower() == "content-type")


def spans_in(body: bytes) -> int:
    """Spans in a gzip'd OTLP/HTTP protobuf trace export."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    msg = ExportTraceServiceRequest()
    msg.ParseFromString(gzip.decompress(body))
    return sum(len(ss.spans) for rs in msg.resource_spans for ss in rs.scope_spans)


def recording_parts(body: bytes, content_type: str) -> tuple[str, int, int, float]:
    """(room id, audio bytes, chat bytes, audio seconds) of a recordings/v0 upload."""
    from voxpulse_console.insights._wire import inspect_ogg, read_header, read_multipart

    parts = read_multipart(content_type, body)
    header = read_header(parts["header"][1])
    audio = parts["audio"][1]
    ogg = inspect_ogg(audio)
    return header.room_id, len(audio), len(parts["chat_history"][1]), float(ogg.seconds or 0.0)


@contextmanager
def database() -> Iterator[str]:
    from tests.support.services import throwaway_database

    with throwaway_database("voxpulse_bench_ins") as dsn:
        yield dsn


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(fn: Callable[[], bool], what: str, deadline_s: float, every_s: float = 0.1) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if fn():
            return
        time.sleep(every_s)
    raise RuntimeError(f"{what}: not within {deadline_s} s")


@contextmanager
def receiver(dsn: str, folder: Path, keys: str, forward_to: str, log: Path,
             cpu: int | None = None) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``voxpulse insights-receiver`` (audio kept in ``folder``), pinned to ``cpu`` when given."""
    from tests.support.backends import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOXPULSE_", "DATABASE_URL", "OTEL_"))}
    env.update({"VOXPULSE_INSIGHTS_KEYS": keys, "VOXPULSE_INSIGHTS_AUDIO": "1",
                "VOXPULSE_INSIGHTS_DIR": str(folder), "VOXPULSE_STACK_DIR": str(folder.parent / "no-stack"),
                "OTEL_EXPORTER_OTLP_ENDPOINT": forward_to, "PYTHONPATH": str(ROOT), "VOXPULSE_LOG_LEVEL": "WARNING"})
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    with log.open("wb") as out:
        proc = subprocess.Popen([*pin, sys.executable, "-m", "voxpulse_console", "insights-receiver", "--listen",
                                 f"127.0.0.1:{port}", "--dsn", dsn], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: proc.poll() is None and _healthy(url + "/healthz"), "the insights receiver", 60)
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- 1. throughput on one core ------------------------------------------------------------------------


async def _replay(url: str, jobs: list[tuple[str, dict[str, str], bytes]], concurrency: int) -> list[int]:
    statuses: list[int] = []
    queue: asyncio.Queue[tuple[str, dict[str, str], bytes]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def one() -> None:
            while not queue.empty():
                path, headers, body = queue.get_nowait()
                resp = await client.post(url + path, content=body, headers=headers)
                statuses.append(resp.status_code)

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return statuses


def throughput(dsn: str, *, uploads: int, trace_rounds: int, concurrency: int) -> dict[str, Any]:
    from bench import sink

    reqs = real_requests()
    rec = next(r for r in reqs if r["path"].endswith("/recordings/v0"))
    room, audio_b, _, audio_s = recording_parts(rec["body"], _content_type(rec["headers"]))
    traces = [r for r in reqs if r["path"].endswith("/traces/otlp/v0")]
    spans_per_round = sum(spans_in(r["body"]) for r in traces)
    auth = {"Authorization": f"Bearer {token()}"}
    upload_jobs = []
    for i in range(uploads):
        new_room = (room[:3] + f"b{i:0{len(room) - 4}d}")[:len(room)]
        assert len(new_room) == len(room)
        upload_jobs.append((rec["path"], {**rec["headers"], **auth}, rec["body"].replace(room.encode(),
                                                                                         new_room.encode())))
    trace_jobs = [(r["path"], {**r["headers"], **auth}, r["body"]) for _ in range(trace_rounds) for r in traces]
    tmp = Path(tempfile.mkdtemp(prefix="vp-bench-ins-"))
    folder = tmp / "insights"
    folder.mkdir(mode=0o700)
    sink_proc, sink_url = sink.start()
    mine = os.sched_getaffinity(0)
    out: dict[str, Any] = {"receiver_cpu": RECEIVER_CPU, "concurrency": concurrency,
                           "upload_bytes": len(rec["body"]), "audio_bytes": audio_b, "audio_s": round(audio_s, 2),
                           "trace_requests_per_round": len(traces), "spans_per_round": spans_per_round}
    try:
        with receiver(dsn, folder, f"{KEY}: {SECRET}", sink_url, tmp / "receiver.log", cpu=RECEIVER_CPU) as (
                proc, url):
            os.sched_setaffinity(0, {LOAD_CPU})  # the load off the receiver's core
            try:
                # warm-up: the pool, the migration, the first upload of each kind (not counted)
                warm = [(p, h, b) for p, h, b in upload_jobs[:1]] + trace_jobs[:len(traces)]
                asyncio.run(_replay(url, warm, 1))
                for name, jobs in (("uploads", upload_jobs), ("traces", trace_jobs)):
                    machine = Machine(lambda: [sink_proc.pid], _tree_cpu_s)
                    cpu0, t0 = proc_cpu_s(proc.pid), time.perf_counter()
                    statuses = asyncio.run(_replay(url, jobs, concurrency))
                    wall, cpu = time.perf_counter() - t0, proc_cpu_s(proc.pid) - cpu0
                    m = machine.done()
                    m["this_bench_cores"] = round(m["this_bench_cores"] + cpu / wall, 2)
                    m["other_processes_cores"] = round(max(0.0, m["other_processes_cores"] - cpu / wall), 2)
                    m["busy"] = m["other_processes_cores"] > BUSY_OTHER_CORES
                    ok = sum(1 for s in statuses if s == 200)
                    row: dict[str, Any] = {"requests": len(jobs), "ok": ok, "wall_s": round(wall, 2),
                                           "per_s": round(ok / wall, 1), "receiver_cpu_s": round(cpu, 2),
                                           "receiver_cores": round(cpu / wall, 2), "machine": m,
                                           "statuses": sorted({str(s) for s in statuses})}
                    if name == "uploads":
                        row["cpu_ms_per_upload"] = round(cpu / max(1, ok) * 1000, 2)
                        row["mb_per_s"] = round(ok * len(rec["body"]) / wall / 1e6, 2)
                    else:
                        spans = ok // len(traces) * spans_per_round if ok == len(jobs) else None
                        row["spans"] = spans
                        row["spans_per_s"] = round(spans / wall, 0) if spans else None
                        row["cpu_s_per_1000_spans"] = round(cpu / spans * 1000, 3) if spans else None
                    out[name] = row
            finally:
                os.sched_setaffinity(0, mine)
        stored = [p for p in folder.iterdir() if p.is_dir()]
        out["calls_stored"] = len(stored)
    finally:
        sink_proc.kill()
        sink_proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# --- 2. hang-up -> playable, 4. storage ------------------------------------------------------------


def playable(dsn: str, *, calls: int) -> dict[str, Any]:
    from agent.realcalls import Worker, call
    from bench import sink
    from tests.ui.conftest import ADMIN, start_console, stop_console
    from voxpulse_console import stack

    why = stack.media_supported() or ""
    if why:
        return {"skipped": f"no media namespace: {why}"}
    if stack.binaries().get("livekit-server") is None:
        return {"skipped": "no livekit-server (scripts/build-backends.sh)"}
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        return {"skipped": "espeak-ng or sox missing"}
    tmp = Path(tempfile.mkdtemp(prefix="vp-bench-ins-calls-"))
    folder = tmp / "insights"
    folder.mkdir(mode=0o700)
    state = tmp / "stack"
    stack.up(["livekit"], state_dir=state, wait_s=90)
    sink_proc, sink_url = sink.start()
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    try:
        lk = stack.livekit_env(state)
        ns = stack.media_namespace(state)
        keys = f"{lk['LIVEKIT_API_KEY']}: {lk['LIVEKIT_API_SECRET']}"
        with receiver(dsn, folder, keys, sink_url, tmp / "receiver.log") as (rproc, rurl):
            console = start_console(tmp, dsn, VOXPULSE_INSIGHTS_DIR=str(folder),
                                    VOXPULSE_PROMETHEUS_URL="http://127.0.0.1:9", VOXPULSE_TRACE_STORE="jaeger",
                                    VOXPULSE_TRACE_STORE_URL="http://127.0.0.1:9")
            agent_name = f"bench-zero-{secrets.token_hex(3)}"
            env = {**lk, "ZERO_CODE_AGENT_NAME": agent_name, "LIVEKIT_OBSERVABILITY_URL": rurl,
                   "OTEL_EXPORTER_OTLP_ENDPOINT": "", "DATABASE_URL": "", "PYTHONPATH": str(ROOT)}
            worker = Worker(env, log_path=tmp / "worker.log", media=ns,
                            argv=[sys.executable, str(ZERO_CODE), "start"]).start()
            client = console.client(ADMIN)
            machine = Machine(lambda: [p for p in (rproc.pid, console.proc.pid, worker.proc.pid if worker.proc
                                                   else 0) if p], _tree_cpu_s)
            try:
                for i in range(calls):
                    (res,) = call([{"scenario": "order_tyres"}], livekit=lk, agent_name=agent_name, concurrency=1,
                                  media=ns)
                    if res.error or not res.room_sid:
                        errors.append(f"call {i}: {res.error}")
                        continue
                    seen: float | None = None
                    view: dict[str, Any] = {}
                    end = time.time() + 90
                    while time.time() < end:
                        r = client.get(f"/api/calls/{res.room_sid}")
                        if r.status_code == 200:
                            view = r.json()
                            audio = (view.get("insights") or {}).get("audio") or {}
                            if audio.get("state") == "present" and audio.get("url"):
                                seen = time.time()
                                break
                        time.sleep(0.1)
                    if seen is None:
                        errors.append(f"call {i} ({res.room_sid}): audio not playable within 90 s")
                        continue
                    d = folder / res.room_sid
                    audio_b = (d / "recording.ogg").stat().st_size if (d / "recording.ogg").exists() else 0
                    chat_b = (d / "chat_history.json").stat().st_size if (d / "chat_history.json").exists() else 0
                    rows.append({"call": res.room_sid, "hung_up_to_playable_s": round(seen - res.hangup_at, 3),
                                 "audio_bytes": audio_b, "chat_bytes": chat_b,
                                 "audio_s": (view["insights"]["audio"].get("duration_s") or 0.0)})
            finally:
                m = machine.done()
                client.close()
                worker.stop()
                stop_console(console)
    finally:
        sink_proc.kill()
        sink_proc.wait()
        stack.down(["livekit"], state_dir=state)
        shutil.rmtree(tmp, ignore_errors=True)
    waits = [r["hung_up_to_playable_s"] for r in rows]
    return {"rows": rows, "errors": errors, "hung_up_to_playable_s": stats(waits), "machine": m}


def per_minute(audio_b: int, chat_b: int, seconds: float) -> dict[str, Any]:
    minutes = seconds / 60
    return {"audio_bytes": audio_b, "chat_bytes": chat_b, "seconds": round(seconds, 2),
            "audio_kb_per_min": round(audio_b / minutes / 1000, 1) if minutes else None,
            "total_kb_per_min": round((audio_b + chat_b) / minutes / 1000, 1) if minutes else None}


def storage(calls: dict[str, Any] | None) -> dict[str, Any]:
    rec = next(r for r in real_requests() if r["path"].endswith("/recordings/v0"))
    _, audio_b, chat_b, seconds = recording_parts(rec["body"], _content_type(rec["headers"]))
    out: dict[str, Any] = {"committed_call": per_minute(audio_b, chat_b, seconds)}
    rows = [r for r in (calls or {}).get("rows", []) if r["audio_s"]]
    if rows:
        out["real_calls"] = {"calls": len(rows), **per_minute(sum(r["audio_bytes"] for r in rows),
                                                              sum(r["chat_bytes"] for r in rows),
                                                              sum(r["audio_s"] for r in rows))}
    return out


# --- 3. the waveform's first paint -----------------------------------------------------------------

OBSERVER = """
(() => {
  const sel = '[data-testid=waveform][data-decoded=true]';
  const check = () => {
    if (window.__wf === undefined && document.querySelector(sel)) {
      window.__wf = performance.now();
      requestAnimationFrame(() => requestAnimationFrame(() => { window.__wfPaint = performance.now(); }));
    }
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true, attributes: true,
                                                 attributeFilter: ['data-decoded']});
})();
"""

PROFILE = """
async (url) => {
  const t0 = performance.now();
  const buf = await (await fetch(url, {credentials: 'same-origin', cache: 'no-store'})).arrayBuffer();
  const t1 = performance.now(), bytes = buf.byteLength;  // decodeAudioData detaches buf
  const ab = await new OfflineAudioContext(1, 1, 48000).decodeAudioData(buf);
  const t2 = performance.now();
  const width = 1100, out = [];
  for (let c = 0; c < ab.numberOfChannels; c++) {
    const s = ab.getChannelData(c), per = s.length / width, p = new Float32Array(width);
    for (let x = 0; x < width; x++) {
      let m = 0;
      for (let i = Math.floor(x * per), e = Math.min(s.length, Math.ceil((x + 1) * per)); i < e; i++) {
        const v = s[i] < 0 ? -s[i] : s[i]; if (v > m) m = v;
      }
      p[x] = m;
    }
    out.push(p);
  }
  const t3 = performance.now();
  return {bytes, fetch_ms: t1 - t0, decode_ms: t2 - t1, peaks_ms: t3 - t2,
          channels: ab.numberOfChannels, seconds: ab.duration};
}
"""


def _run_async(coro: Any) -> Any:
    """asyncio.run in a thread of its own: Playwright's sync API holds an event loop in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def long_recording(seconds: float, source: str) -> bytes:
    """``seconds`` of stereo Ogg Opus as the receiver stores a long call's recording.

    ``real``: the committed real call's recording (LiveKit's recorder: the caller on the first channel,
    the agent on the second) decoded and repeated to ``seconds``, encoded by libopus again at that
    recording's own bit rate, so the file has a real call's size per minute; ``speech``: espeak-ng
    lines, a caller line and an answer every 20 s, silence between (tests/ui/recordings.py; a
    smaller file, as libopus spends little on silence)."""
    import io
    from fractions import Fraction

    import av
    import numpy as np

    from tests.ui.recordings import RATE, speech_recording

    if source == "speech":
        lines = [(k % 2, 2.0 + 10.0 * k, "Добрий день, мені потрібні шини на зиму" if k % 2 == 0
                  else "Є шини двісті п'ять на шістнадцять") for k in range(int(seconds // 10) - 1)]
        return speech_recording(lines, seconds)
    rec = next(r for r in real_requests() if r["path"].endswith("/recordings/v0"))
    from voxpulse_console.insights._wire import read_multipart

    original = read_multipart(_content_type(rec["headers"]), rec["body"])["audio"][1]
    chunks = []
    with av.open(io.BytesIO(original), mode="r") as container:
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
    one = np.concatenate(chunks, axis=1)
    bit_rate = int(len(original) * 8 / (one.shape[1] / RATE))
    total = int(seconds * RATE)
    pcm = np.tile(one, (1, total // one.shape[1] + 1))[:, :total]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="ogg") as container:
        stream: Any = container.add_stream("libopus", rate=RATE, layout="stereo")
        stream.bit_rate = bit_rate
        block = 960  # 20 ms frames, as LiveKit's recorder feeds its encoder
        for i in range(0, total, block):
            chunk = np.ascontiguousarray(pcm[:, i:i + block])
            if chunk.shape[1] < block:
                chunk = np.pad(chunk, ((0, 0), (0, block - chunk.shape[1])))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = RATE
            frame.pts = i
            frame.time_base = Fraction(1, RATE)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def native_decode_cpu_s(audio: bytes) -> float:
    """CPU seconds libopus itself (PyAV, native code, no browser) takes to decode ``audio``: the floor
    of any waveform drawn from the decoded samples, whatever the page does."""
    import io

    import av

    t0 = time.process_time()
    with av.open(io.BytesIO(audio), mode="r") as container:
        for _ in container.decode(audio=0):
            pass
    return round(time.process_time() - t0, 2)


def _paint(browser: Any, url: str, cookies: Any, errors: list[str]) -> dict[str, Any]:
    """One load of the call page at ``url`` in a fresh context: navigation start to the waveform in the
    DOM, and to the frame after it."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB", storage_state=cookies)
    try:
        pg = ctx.new_page()
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.add_init_script(OBSERVER)
        pg.goto(url)
        pg.wait_for_function("() => window.__wfPaint !== undefined", timeout=60_000)
        decoded, painted = pg.evaluate("() => [window.__wf, window.__wfPaint]")
        drawn_from = pg.locator("[data-testid=waveform]").get_attribute("data-drawn-from")
        nav = pg.evaluate("() => JSON.stringify(performance.getEntriesByType('navigation')[0])")
        dcl = json.loads(nav).get("domContentLoadedEventEnd")
        fcp = pg.evaluate("() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null")
        return {"decoded_ms": round(decoded, 1), "painted_ms": round(painted, 1), "drawn_from": drawn_from,
                "dom_content_loaded_ms": round(dcl, 1) if dcl else None,
                "first_contentful_paint_ms": round(fcp, 1) if fcp is not None else None}
    finally:
        ctx.close()


def waveform(dsn: str, *, loads: int, old_loads: int, seconds: float, source: str = "real") -> dict[str, Any]:
    from tests.ui.conftest import ADMIN, ARGS, CHROMIUM, login, start_console, stop_console

    if not Path(CHROMIUM).is_file():
        return {"skipped": f"no {CHROMIUM}"}
    from playwright.sync_api import sync_playwright

    from tests.ui.recordings import store

    t_enc = time.perf_counter()
    audio = long_recording(seconds, source)
    encode_s = time.perf_counter() - t_enc
    from voxpulse_console.insights._waveform import waveform as peaks_of

    t_cpu = time.process_time()
    peaks = peaks_of(audio)
    peaks_cpu_s = round(time.process_time() - t_cpu, 2)
    import tracemalloc

    tracemalloc.start()  # again, traced apart: tracing slows the allocations it counts
    peaks_of(audio)
    peaks_peak_mib = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    tracemalloc.stop()
    call_id, old_id = f"RM_bench{secrets.token_hex(4)}", f"RM_bench{secrets.token_hex(4)}"
    tmp = Path(tempfile.mkdtemp(prefix="vp-bench-ins-wf-"))
    folder = tmp / "insights"
    folder.mkdir(mode=0o700)
    started = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)

    async def seed() -> None:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            for cid, wave in ((call_id, True), (old_id, False)):
                await store(conn, folder, cid, audio=audio, started_at=started, duration_ms=int(seconds * 1000),
                            verdicts={"greeted": ("pass", "the agent greeted first")}, outcome=("success", None),
                            wave=wave)
        finally:
            await conn.close()

    _run_async(seed())
    console = start_console(tmp, dsn, VOXPULSE_INSIGHTS_DIR=str(folder), VOXPULSE_PROMETHEUS_URL="http://127.0.0.1:9",
                            VOXPULSE_TRACE_STORE="jaeger", VOXPULSE_TRACE_STORE_URL="http://127.0.0.1:9")
    rows: list[dict[str, Any]] = []
    old_rows: list[dict[str, Any]] = []
    profile: list[dict[str, Any]] = []
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            machine = Machine(lambda: [console.proc.pid, *(c.pid for c in _children())], _tree_cpu_s)
            try:
                first = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB")
                page = first.new_page()
                login(page, console.url, ADMIN, f"/calls/{call_id}")
                page.wait_for_selector("[data-testid=waveform][data-decoded=true]", timeout=60_000)
                cookies = first.storage_state()
                audio_url = page.locator("audio[data-testid=player]").get_attribute("src")
                first.close()
                for _ in range(loads):
                    rows.append(_paint(browser, f"{console.url}/calls/{call_id}", cookies, errors))
                for _ in range(old_loads):
                    old_rows.append(_paint(browser, f"{console.url}/calls/{old_id}", cookies, errors))
                if audio_url:
                    ctx = browser.new_context(storage_state=cookies)
                    try:
                        pg = ctx.new_page()
                        pg.goto(f"{console.url}/healthz")
                        for _ in range(3):
                            profile.append({k: (round(v, 1) if isinstance(v, float) else v)
                                            for k, v in pg.evaluate(PROFILE, audio_url).items()})
                    finally:
                        ctx.close()
            finally:
                m = machine.done()
                browser.close()
    finally:
        stop_console(console)
        shutil.rmtree(tmp, ignore_errors=True)
    painted = [r["painted_ms"] for r in rows]
    prof = {k: round(statistics.median(float(x[k]) for x in profile), 1) for k in
            ("fetch_ms", "decode_ms", "peaks_ms")} if profile else None
    return {"recording_s": seconds, "source": source, "audio_bytes": len(audio), "encode_s": round(encode_s, 1),
            "native_decode_cpu_s": native_decode_cpu_s(audio), "peaks_cpu_s": peaks_cpu_s,
            "peaks_peak_mib": peaks_peak_mib,
            "peaks_bytes": len(peaks) if peaks else None, "rows": rows, "first_paint_ms": stats(painted),
            "decoded_ms": stats([r["decoded_ms"] for r in rows]),
            "page_first_contentful_paint_ms": stats([r["first_contentful_paint_ms"] for r in rows
                                                     if r["first_contentful_paint_ms"] is not None]),
            "old_rows": old_rows,
            "old_first_paint_ms": stats([r["painted_ms"] for r in old_rows]),
            "old_decoded_ms": stats([r["decoded_ms"] for r in old_rows]),
            "profile": profile, "profile_median_ms": prof, "errors": errors, "machine": m}


def _children() -> list[Any]:
    import psutil

    return list(psutil.Process(os.getpid()).children(recursive=True))


# --- the result ---------------------------------------------------------------------------------------


def full_core(t: dict[str, Any]) -> dict[str, Any]:
    """What one full core of the receiver takes, from its CPU per request (the load generator, one
    Python process, may not keep the receiver's core busy: its rate is then a lower bound)."""
    per_upload, per_1000 = t["uploads"]["cpu_ms_per_upload"], t["traces"]["cpu_s_per_1000_spans"]
    return {"uploads_per_s": round(1000 / per_upload, 1) if per_upload else None,
            "spans_per_s": round(1000 / per_1000) if per_1000 else None}


def verdict(result: dict[str, Any]) -> str:
    parts = []
    t = result.get("throughput") or {}
    if "uploads" in t:
        full = full_core(t)
        parts.append(f"one core: {t['uploads']['per_s']} uploads/s ({t['uploads']['cpu_ms_per_upload']} ms CPU "
                     f"each: {full['uploads_per_s']}/s at a full core), {t['traces']['spans_per_s']} spans/s "
                     f"({t['traces']['cpu_s_per_1000_spans']} CPU s per 1000 spans: {full['spans_per_s']}/s at a "
                     "full core)")
    c = result.get("playable") or {}
    if "hung_up_to_playable_s" in c:
        p95 = c["hung_up_to_playable_s"]["p95"]
        parts.append(f"hang-up -> playable p95 {p95} s over {c['hung_up_to_playable_s']['n']} real calls "
                     f"(target <= {PLAYABLE_TARGET_P95_S:g} s): "
                     f"{'met' if p95 is not None and p95 <= PLAYABLE_TARGET_P95_S else 'NOT met'}")
    elif c.get("skipped"):
        parts.append(f"hang-up -> playable not measured ({c['skipped']})")
    w = result.get("waveform") or {}
    if "first_paint_ms" in w:
        p95 = w["first_paint_ms"]["p95"]
        parts.append(f"waveform first paint of a {w['recording_s'] / 60:g}-minute call p95 {p95} ms "
                     f"(target <= {PAINT_TARGET_P95_MS:g} ms): "
                     f"{'met' if p95 is not None and p95 <= PAINT_TARGET_P95_MS else 'NOT met'}")
    elif w.get("skipped"):
        parts.append(f"waveform not measured ({w['skipped']})")
    s = result.get("storage") or {}
    if s:
        parts.append(f"storage {s['committed_call']['total_kb_per_min']} kB per call-minute (committed call)"
                     + (f", {s['real_calls']['total_kb_per_min']} kB over {s['real_calls']['calls']} real calls"
                        if "real_calls" in s else ""))
    busy = [name for name, m in _machines(result) if m.get("busy")]
    text = "; ".join(parts)
    if busy:
        text += f" -- measured on a BUSY machine (other processes above {BUSY_OTHER_CORES} cores during: " \
                f"{', '.join(busy)})"
    return text


def _machines(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    t = result.get("throughput") or {}
    for k in ("uploads", "traces"):
        if k in t:
            out.append((k, t[k]["machine"]))
    for k in ("playable", "waveform"):
        if "machine" in (result.get(k) or {}):
            out.append((k, result[k]["machine"]))
    return out


def _busy(m: dict[str, Any]) -> str:
    return f"{m['other_processes_cores']}{' **busy**' if m['busy'] else ''}"


def to_markdown(result: dict[str, Any]) -> str:
    if result.get("skipped"):
        return f"_Not measured: {result['skipped']}._"
    lines: list[str] = []
    t = result.get("throughput") or {}
    if "uploads" in t:
        u, tr = t["uploads"], t["traces"]
        lines += [f"**Receiver throughput on one core** (the receiver pinned to CPU {t['receiver_cpu']}, the load on "
                  f"another, {t['concurrency']} requests at a time; the real call's requests: its recording upload "
                  f"of {t['upload_bytes']:,} bytes ({t['audio_s']} s of audio, kept on disk, the call in "
                  f"PostgreSQL), each under a new room id; its {t['trace_requests_per_round']} trace requests "
                  f"({t['spans_per_round']} spans) forwarded to a loopback OTLP sink):", "",
                  "| requests | ok | per s | spans/s | MB/s | receiver cores | receiver CPU | at a full core | "
                  "other load (cores) |",
                  "|---|---|---|---|---|---|---|---|---|",
                  f"| recording uploads | {u['ok']}/{u['requests']} | {u['per_s']} | - | {u['mb_per_s']} | "
                  f"{u['receiver_cores']} | {u['cpu_ms_per_upload']} ms per upload | "
                  f"{full_core(t)['uploads_per_s']} uploads/s | {_busy(u['machine'])} |",
                  f"| trace requests | {tr['ok']}/{tr['requests']} | {tr['per_s']} | {tr['spans_per_s']} | - | "
                  f"{tr['receiver_cores']} | {tr['cpu_s_per_1000_spans']} s per 1000 spans | "
                  f"{full_core(t)['spans_per_s']} spans/s | {_busy(tr['machine'])} |", "",
                  "At a full core: 1 / the receiver's CPU per request; where the receiver's cores are under 1, "
                  "the load generator (one Python process on the other core) set the rate, not the receiver.",
                  ""]
    c = result.get("playable") or {}
    if c.get("skipped"):
        lines += [f"**Hang-up -> audio playable**: not measured ({c['skipped']}).", ""]
    elif "hung_up_to_playable_s" in c:
        s = c["hung_up_to_playable_s"]
        lines += ["**Hang-up -> audio playable on the call page** (real calls, one at a time, to the stock agent "
                  "without VoxPulse through the stack's LiveKit server; the caller's hang-up to the console's API "
                  "showing the audio present with its url, polled every 100 ms):", "",
                  "| calls | p50 s | p95 s | max s | failed | other load (cores) |", "|---|---|---|---|---|---|",
                  f"| {s['n']} | {s['p50']} | {s['p95']} | {s['max']} | {len(c['errors'])} | "
                  f"{_busy(c['machine'])} |", ""]
        if c["errors"]:
            lines += ["Failed: " + "; ".join(c["errors"]) + ".", ""]
    w = result.get("waveform") or {}
    if w.get("skipped"):
        lines += [f"**Waveform first paint**: not measured ({w['skipped']}).", ""]
    elif "first_paint_ms" in w:
        f, d = w["first_paint_ms"], w["decoded_ms"]
        made = ("the committed real call's recording repeated, re-encoded by libopus at its bit rate"
                if w.get("source", "speech") == "real" else "espeak-ng lines every 10 s, libopus")
        lines += [f"**The call page's waveform, a {w['recording_s'] / 60:g}-minute call** (stereo Ogg Opus, "
                  f"{w['audio_bytes']:,} bytes: {made}; Chromium, each load in a fresh context: an empty cache; "
                  "from navigation start to the waveform drawn in the DOM, and to the frame after it):", "",
                  "| the call's waveform | loads | drawn in the DOM p50 / p95 ms | first paint after it "
                  "p50 / p95 / max ms | other load (cores) |", "|---|---|---|---|---|",
                  f"| peaks kept by the receiver ({w['peaks_bytes']:,} bytes of waveform.json) | {f['n']} | "
                  f"{d['p50']} / {d['p95']} | {f['p50']} / {f['p95']} / {f['max']} | {_busy(w['machine'])} |"]
        if w.get("old_rows"):
            of, od = w["old_first_paint_ms"], w["old_decoded_ms"]
            lines += [f"| decoded in the page (a call kept without peaks) | {of['n']} | {od['p50']} / {od['p95']} | "
                      f"{of['p50']} / {of['p95']} / {of['max']} | {_busy(w['machine'])} |"]
        fcp = w.get("page_first_contentful_paint_ms")
        if fcp:
            lines += ["", f"The page itself, in the same loads: its first contentful paint (the browser's "
                      f"first-contentful-paint entry) p50 / p95 {fcp['p50']} / {fcp['p95']} ms."]
        lines += [""]
        prof = w.get("profile_median_ms")
        if prof:
            floor = w.get("native_decode_cpu_s")
            lines += [f"Why the receiver keeps peaks: the page's own decode, its steps timed apart (median of 3), "
                      f"takes fetch {prof['fetch_ms']} ms, decodeAudioData {prof['decode_ms']} ms, per-pixel peaks "
                      f"of both channels {prof['peaks_ms']} ms"
                      + (f"; libopus alone (PyAV, native) takes {floor} CPU s to decode the file" if floor is not None
                         else "")
                      + f". The receiver computes the peaks once, when the recording arrives: "
                      f"{w['peaks_cpu_s']} CPU s for this call, off its event loop"
                      + (f", with at most {w['peaks_peak_mib']} MiB allocated (traced) while it decodes"
                         if w.get("peaks_peak_mib") is not None else "") + ".", ""]
    s = result.get("storage") or {}
    if s:
        rows = [("the committed real call (tests/fixtures/livekit_observability_v0_real)", s["committed_call"])]
        if "real_calls" in s:
            rows.append((f"the {s['real_calls']['calls']} real calls above", s["real_calls"]))
        lines += ["**Storage per call-minute** (as stored: recording.ogg + chat_history.json):", "",
                  "| calls | audio bytes | chat bytes | recording s | audio kB/min | audio + chat kB/min |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {r['audio_bytes']:,} | {r['chat_bytes']:,} | {r['seconds']} | {r['audio_kb_per_min']} | "
                  f"{r['total_kb_per_min']} |" for name, r in rows]
        lines += [""]
    lines += [f"Other load: the machine's busy CPU minus this benchmark's processes; above {BUSY_OTHER_CORES} "
              "cores a row is marked busy. The machine is shared with other workers' builds and tests."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--uploads", type=int, default=200)
    ap.add_argument("--trace-rounds", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--loads", type=int, default=20)
    ap.add_argument("--old-loads", type=int, default=5, help="loads of the call kept without peaks")
    ap.add_argument("--recording-s", type=float, default=600.0)
    ap.add_argument("--recording", choices=["real", "speech"], default="real",
                    help="the long recording: the real call's repeated, or espeak-ng lines")
    ap.add_argument("--only", nargs="+", choices=["throughput", "playable", "waveform"], default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    from telemetry.history import database_url

    if not database_url():
        result: dict[str, Any] = {"skipped": "no DATABASE_URL (scripts/services.sh start)"}
    else:
        want = set(a.only or ["throughput", "playable", "waveform"])
        result = {}
        with database() as dsn:
            if "throughput" in want:
                result["throughput"] = throughput(dsn, uploads=a.uploads, trace_rounds=a.trace_rounds,
                                                  concurrency=a.concurrency)
            if "playable" in want:
                result["playable"] = playable(dsn, calls=a.calls)
            if "waveform" in want:
                result["waveform"] = waveform(dsn, loads=a.loads, old_loads=a.old_loads, seconds=a.recording_s,
                                              source=a.recording)
        result["storage"] = storage(result.get("playable"))
        result["targets"] = {"playable_p95_s": PLAYABLE_TARGET_P95_S, "paint_p95_ms": PAINT_TARGET_P95_MS,
                             "busy_other_cores": BUSY_OTHER_CORES}
        result["verdict"] = verdict(result)
    text = json.dumps(result, indent=2)
    if a.json:
        a.json.write_text(text)
    if result.get("skipped"):
        print(f"_Not measured: {result['skipped']}._")
    else:
        print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
