"""The console's own TLS (VOXPULSE_UI_TLS_CERT / VOXPULSE_UI_TLS_KEY): what lets ``voxpulse stack up
--bind`` open it to a network. The real console process, a certificate made here with openssl."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, free_port, unavailable, wait_for

from .conftest import ADMIN, cached_users_env


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        unavailable("STACK", "no openssl to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "console.pem", d / "console.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True, timeout=60)
    return crt, key


def test_the_console_serves_tls_with_secure_cookies(cert: tuple[Path, Path], tmp_path: Path) -> None:
    crt, key = cert
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "VOXPULSE_UI_USERS": cached_users_env(), "VOXPULSE_UI_TLS_CERT": str(crt),
           "VOXPULSE_UI_TLS_KEY": str(key), "VOXPULSE_UI_LISTEN": f"127.0.0.1:{port}",
           "VOXPULSE_PROMETHEUS_URL": "http://127.0.0.1:9", "HOME": str(tmp_path)}
    log = tmp_path / "console.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "voxpulse_console", "ui"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        trust = ssl.create_default_context(cafile=str(crt))
        base = f"https://127.0.0.1:{port}"
        def up() -> bool:
            return proc.poll() is None and httpx.get(f"{base}/healthz", verify=trust, timeout=1).status_code == 200

        wait_for(up, f"the console over TLS ({log})", 30, every_s=0.1)
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the same port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        with httpx.Client(base_url=base, verify=trust, timeout=10) as c:
            csrf = c.get("/api/session").json()["csrf"]
            r = c.post("/api/login", json={"user": ADMIN[0], "password": ADMIN[1]},
                       headers={"X-CSRF-Token": csrf, "Origin": base})
            assert r.status_code == 200, r.text  # the https origin is the console's own by default
            cookie = r.headers.get("set-cookie", "")
            assert "Secure" in cookie, cookie
    finally:
        proc.terminate()
        proc.wait(10)


def test_half_a_tls_setting_is_refused(cert: tuple[Path, Path]) -> None:
    env = {"PATH": "/usr/bin:/bin", "VOXPULSE_UI_USERS": cached_users_env(), "VOXPULSE_UI_TLS_CERT": str(cert[0])}
    proc = subprocess.run([sys.executable, "-m", "voxpulse_console", "ui", "--listen", "127.0.0.1:1"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "go together" in proc.stderr, proc.stderr
