"""A REAL S3-compatible server for the tests: ``voxpulse-s3`` (s3server/: gofakes3 with its filesystem
backend, every request's AWS Signature Version 4 checked with the AWS SDK's signer), built by
``scripts/build-backends.sh --only=s3server``, started on loopback on a port it picks itself, its
data in a temporary folder, with one random key pair.

Without the binary the test skips, or fails under ``VOXPULSE_REQUIRE_STACK`` (CI), like the collector
and Jaeger (:func:`tests.support.backends.binary`).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from voxpulse_console.insights import S3Settings

from .backends import binary, wait_for

__all__ = ["BUCKET", "S3Server", "s3_server"]

BUCKET = "voxpulse-calls"


@dataclass(frozen=True)
class S3Server:
    settings: S3Settings
    proc: subprocess.Popen[bytes]
    log: Path

    def env(self) -> dict[str, str]:
        """The ``VOXPULSE_INSIGHTS_S3_*`` variables that point at this server's bucket."""
        s = self.settings
        return {"VOXPULSE_INSIGHTS_S3_BUCKET": s.bucket, "VOXPULSE_INSIGHTS_S3_ENDPOINT": s.endpoint,
                "VOXPULSE_INSIGHTS_S3_REGION": s.region, "VOXPULSE_INSIGHTS_S3_ACCESS_KEY_ID": s.access_key_id,
                "VOXPULSE_INSIGHTS_S3_SECRET_ACCESS_KEY": s.secret_access_key}


@contextmanager
def s3_server(tmp: Path) -> Iterator[S3Server]:
    """``voxpulse-s3`` with its data in ``tmp``, on a free loopback port, the bucket created."""
    exe = binary("s3server")
    key_id, secret = "VP" + secrets.token_hex(8).upper(), secrets.token_urlsafe(24)
    log = tmp / "voxpulse-s3.log"
    env = {**os.environ, "VOXPULSE_S3_ACCESS_KEY_ID": key_id, "VOXPULSE_S3_SECRET_ACCESS_KEY": secret}
    with log.open("wb") as out:
        proc = subprocess.Popen([str(exe), "-listen", "127.0.0.1:0", "-dir", str(tmp / "data"), "-bucket", BUCKET],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        def listening() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(f"voxpulse-s3 exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            for line in log.read_text().splitlines():
                if line.startswith("listening on "):
                    return line.removeprefix("listening on ")
            return None

        endpoint = wait_for(listening, "voxpulse-s3's address in its log", 30, every_s=0.05)
        yield S3Server(S3Settings(bucket=BUCKET, endpoint=endpoint, region="us-east-1", access_key_id=key_id,
                                  secret_access_key=secret), proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
