"""Capture the exact requests livekit-agents' own upload code sends (no LiveKit server needed).

    python -m tests.insights.capture [--out tests/fixtures/livekit_observability_v0]

A loopback HTTP server records each request raw (path, headers, body as sent: gzip stays gzip); the
agent side is :mod:`tests.insights.lk_agent` in a process of its own, with a fixture API key (not a
secret: it signs nothing outside these fixtures). :func:`shape` is what the contract test compares.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "livekit_observability_v0"
#: the requests of a real call on the stack's LiveKit server (tests/realcalls/test_zero_code.py captures them)
REAL_CALL = ROOT / "tests" / "fixtures" / "livekit_observability_v0_real"
FIXTURE_KEY = "APIfixture"
FIXTURE_SECRET = "fixture-only-not-a-secret-0123456789abcdef"  # signs these fixtures only
ROOM_ID = "RM_fixtureRoom01"
JOB_ID = "AJ_fixtureJob01"
#: headers that vary per run or per machine (the rest are part of the contract)
VOLATILE = {"host", "content-length", "authorization", "user-agent", "connection", "accept-encoding"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def make_ogg(path: Path, seconds: float = 0.4) -> None:
    """A short Ogg Opus file as LiveKit's recorder writes one (PyAV, 48 kHz)."""
    import av
    import numpy as np

    with av.open(str(path), mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000)
        stream.layout = "mono"  # type: ignore[union-attr]
        stream.bit_rate = 16000  # type: ignore[union-attr]
        samples = int(48000 * seconds)
        t = np.arange(samples) / 48000
        pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 48000
        for packet in stream.encode(frame):  # type: ignore[union-attr]
            container.mux(packet)
        for packet in stream.encode(None):  # type: ignore[union-attr]
            container.mux(packet)


def run_agent(url: str, *, ogg: Path | None, key: str = FIXTURE_KEY, secret: str = FIXTURE_SECRET,
              room_id: str = ROOM_ID, job_id: str = JOB_ID, timeout: float = 60) -> None:
    """livekit-agents' uploads of one call to ``url``, in a process of its own."""
    env = {**os.environ, "LIVEKIT_API_KEY": key, "LIVEKIT_API_SECRET": secret, "PYTHONPATH": str(ROOT)}
    for name in [n for n in env if n.startswith("OTEL_")]:
        del env[name]
    argv = [sys.executable, "-m", "tests.insights.lk_agent", url, "--room-id", room_id, "--job-id", job_id]
    if ogg is not None:
        argv += ["--ogg", str(ogg)]
    subprocess.run(argv, env=env, check=True, timeout=timeout, cwd=ROOT)


def capture(ogg: Path | None) -> list[Request]:
    """Every request of one call's upload, in arrival order, recorded raw."""
    got: list[Request] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                got.append(Request("POST", self.path, {k: v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        run_agent(f"http://127.0.0.1:{server.server_address[1]}", ogg=ogg)
    finally:
        server.shutdown()
        server.server_close()
    return got


class RecordingProxy:
    """A loopback HTTP proxy in front of ``upstream`` (the insights receiver) that records every request
    raw (as :func:`capture` does) and forwards it: what a live worker on a real call sends.

        with RecordingProxy("http://127.0.0.1:9097") as proxy:
            ...  # LIVEKIT_OBSERVABILITY_URL=proxy.url
        proxy.requests
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RecordingProxy:
        import httpx

        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items()}
                with proxy._lock:
                    proxy.requests.append(Request("POST", self.path, headers, body))
                sent = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
                try:
                    resp = httpx.post(proxy.upstream + self.path, content=body, headers=sent, timeout=30)
                    status, payload, ctype = resp.status_code, resp.content, resp.headers.get("content-type", "")
                except httpx.HTTPError:
                    status, payload, ctype = 502, b"", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _jwt_claims(authorization: str) -> dict[str, Any]:
    payload = authorization.split(" ", 1)[1].split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def shape(requests: list[Request]) -> dict[str, Any]:
    """What must not change between livekit-agents versions: per path, the stable headers, the JWT's
    claims (names, grants, lifetime), the multipart parts and the header protobuf's field numbers."""
    from voxpulse_console.insights._wire import _fields, read_multipart

    out: dict[str, Any] = {}
    for r in requests:
        h = {k.lower(): v for k, v in r.headers.items()}
        claims = _jwt_claims(h["authorization"])
        entry: dict[str, Any] = {
            "method": r.method,
            "headers": {k: v for k, v in sorted(h.items()) if k not in VOLATILE and k != "content-type"},
            "content_type": h["content-type"].split(";")[0],
            "auth_scheme": h["authorization"].split(" ", 1)[0],
            "jwt_claims": sorted(claims),
            "jwt_grants": claims.get("observability"),
            "jwt_ttl_s": int(claims["exp"]) - int(claims["nbf"]),
        }
        if entry["content_type"] == "multipart/form-data":
            parts = read_multipart(h["content-type"], r.body)
            entry["parts"] = {name: filename for name, (filename, _) in sorted(parts.items())}
            entry["header_fields"] = sorted({n for n, _ in _fields(parts["header"][1])})
        out.setdefault(r.path, entry)
    return out


def write_fixtures(out: Path, requests: list[Request], *,
                   captured_by: str = "python -m tests.insights.capture") -> None:
    import livekit.agents

    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "livekit_agents": livekit.agents.__version__,
        "captured_by": captured_by,
        "api_key": FIXTURE_KEY,
        "shape": shape(requests),
        "requests": [],
    }
    seen: dict[str, int] = {}
    for r in requests:
        kind = r.path.strip("/").split("/")[1]  # traces | logs | metrics | recordings
        seen[kind] = seen.get(kind, 0) + 1
        name = f"{kind}-{seen[kind]}.bin"
        (out / name).write_bytes(r.body)
        headers = {k: v for k, v in r.headers.items() if k.lower() not in ("host", "authorization", "user-agent")}
        manifest["requests"].append({"method": r.method, "path": r.path, "headers": headers, "body": name})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=FIXTURES)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ogg = Path(tmp) / "recording.ogg"
        make_ogg(ogg)
        requests = capture(ogg)
    for old in a.out.glob("*.bin"):
        old.unlink()
    write_fixtures(a.out, requests)
    print(f"{len(requests)} requests -> {a.out}")


if __name__ == "__main__":
    main()
