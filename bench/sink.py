"""A local OTLP/HTTP sink for benchmarks and fault tests: accepts POSTs, optionally after a delay.

    python bench/sink.py [--port 0] [--delay 3.0]    # prints "listening on http://127.0.0.1:PORT"

:func:`start` runs it as a child process on a port the kernel picks and returns once it listens
(the line above, read with a deadline: no sleep, no port chosen in advance that another process
could take).
"""

from __future__ import annotations

import argparse
import select
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["serve", "start"]

READY = "listening on "


def serve(port: int, delay: float) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            if delay:
                time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"{READY}http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


def start(delay: float = 0.0, *, timeout_s: float = 30.0) -> tuple[subprocess.Popen[str], str]:
    """This script as a child process; returns (the process, its URL) once it listens."""
    proc = subprocess.Popen([sys.executable, __file__, "--port", "0", "--delay", str(delay)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline() if ready else ""
    proc.stdout.close()  # the sink prints nothing else
    if not line.startswith(READY):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"bench.sink did not start within {timeout_s} s (exit code {proc.returncode})")
    return proc, line[len(READY):].strip()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    serve(args.port, args.delay)
