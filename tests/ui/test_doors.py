"""The console's doors tried as an attacker would, against the real console process (``voxpulse
ui``, the app factory behind a real aiohttp server; no database needed): open redirects after the
login, password guessing that must not lock the owner out, X-Forwarded-For from untrusted and
trusted peers, and a forged Host header that the same-origin check must not believe.

Different client addresses are real: every client binds its own loopback source address
(127.0.0.2, 127.0.0.3, ...; Linux routes all of 127/8 to the loopback interface).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import closed_port

from .conftest import ADMIN, VIEWER, Console, ConsoleClient, start_console, stop_console

#: each attempt past the free ones waits ten minutes: a test never races the back-off's clock
THROTTLE = {"VOXPULSE_UI_LOGIN_DELAY_S": "600", "VOXPULSE_UI_LOGIN_ADDRESS_FAILURES": "5"}


def _start(tmp: Path, **env: str) -> Console:
    with closed_port() as prometheus, closed_port() as trace_store:
        return start_console(tmp, None, VOXPULSE_PROMETHEUS_URL=f"http://127.0.0.1:{prometheus}",
                             VOXPULSE_TRACE_STORE="jaeger", VOXPULSE_TRACE_STORE_URL=f"http://127.0.0.1:{trace_store}",
                             **env)


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """One console: long back-off, five failures per address, 127.0.0.1 a trusted proxy (a client
    on 127.0.0.1 plays the proxy; clients on 127.0.0.2 and up are direct)."""
    c = _start(tmp_path_factory.mktemp("doors"), VOXPULSE_UI_TRUSTED_PROXIES="127.0.0.1/32", **THROTTLE)
    yield c
    stop_console(c)
    assert "Traceback" not in c.log_text(), c.log_text()[-4000:]


_OPEN: list[ConsoleClient] = []


def client(console: Console, source: str = "127.0.0.1") -> ConsoleClient:
    """A client whose connections come from ``source``; closed after the test."""
    c = ConsoleClient(httpx.Client(base_url=console.url, timeout=15, follow_redirects=False,
                                   transport=httpx.HTTPTransport(local_address=source)))
    _OPEN.append(c)
    return c


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def attempt(c: ConsoleClient, who: tuple[str, str], *, xff: str | None = None,
            **body: str) -> httpx.Response:
    c.session()
    headers = {"X-CSRF-Token": c.csrf}
    if xff is not None:
        headers["X-Forwarded-For"] = xff
    r = c.http.post("/api/login", json={"user": who[0], "password": who[1], **body}, headers=headers)
    if r.status_code == 200:
        c.csrf = r.json()["csrf"]
    return r


def wrong(who: tuple[str, str]) -> tuple[str, str]:
    return who[0], who[1] + "-wrong"


def throttled(r: httpx.Response) -> bool:
    if r.status_code != 429:
        return False
    assert 0 < int(r.headers["retry-after"]) <= 600 and 0 < r.json()["retry_after_s"] <= 600
    return True


# ------------------------------------------------------------------------------------ open redirect
#: ``next`` as it stands in the login page's URL (percent-encoded where a URL needs it)
EVIL_NEXT = [
    "/%5Cevil.example/x",  # /\evil.example/x: a browser reads /\ as //
    "/%5Cevil",
    "%5C%5Cevil.example",  # \\evil.example
    "%5C/evil.example",
    "/%09/evil.example",  # tab, newline, carriage return: dropped by the browser's URL parser
    "/%0A/evil.example",
    "/%0D/evil.example",
    "%09//evil.example",
    "%20//evil.example",  # leading spaces / control characters are stripped
    "%00//evil.example",
    "//evil.example",
    "%2F%2Fevil.example",
    "////evil.example",
    "https://evil.example",
    "https://evil.example/calls",
    "HtTpS://evil.example",
    "HTTP://EVIL.EXAMPLE/",
    "http:%2F%5Cevil.example",  # http:/\evil.example
    "http:%5C%5Cevil.example",
    "http:////evil.example",
    "https:evil.example",  # another special scheme without slashes: a browser takes a host
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,x",
    "http://evil.example%5C@127.0.0.1/",  # \ ends the host: evil.example
]


def evil_with_own_port(console: Console) -> list[str]:
    port = console.url.rsplit(":", 1)[1]
    return [f"http://127.0.0.1:{port}@evil.example/",  # user info: the host is evil.example
            f"http://127.0.0.1:{int(port) + 1}/calls",  # another port is another origin
            f"https://127.0.0.1:{port}/calls"]  # so is another scheme


def kept(console: Console) -> list[tuple[str, str]]:
    """``next`` values that stay on the console, with the path the console answers."""
    return [
        ("/calls%3Foutcome%3Dtransferred", "/calls?outcome=transferred"),
        ("/calls/abc-1", "/calls/abc-1"),
        (f"{console.url}/alerts", "/alerts"),
        (console.url.replace("127.0.0.1", "LOCALHOST") + "/latency", "/latency"),
        ("/%2509/evil.example", "/%09/evil.example"),  # an escaped tab is a path character
        ("/.//evil.example", "/evil.example"),  # a path on this console; never answered as //...
        ("/login", "/"),  # not back to the login
    ]


def test_login_never_redirects_to_another_site(doors: Console) -> None:
    """After the login (and on the login page with a session), ``next`` becomes a path on the
    console or ``/``: every payload a browser would read as another host gives ``/``."""
    anon = client(doors, "127.0.0.20")
    # without a session the login page is served, whatever next says
    assert anon.http.get("/login?next=//evil.example").status_code in (200, 503)
    assert "next" not in anon.http.get("/api/session?next=//evil.example").json()
    for raw in [*EVIL_NEXT, *evil_with_own_port(doors)]:
        # the login's answer names where to go
        decoded = str(httpx.URL(f"/?next={raw}").params["next"])
        r = attempt(anon, ADMIN, next=decoded)
        assert r.status_code == 200 and r.json()["next"] == "/", (raw, r.json())
        # the login page with a session redirects; so does the session probe's answer
        r = anon.http.get(f"/login?next={raw}")
        assert r.status_code == 302 and r.headers["location"] == "/", (raw, r.headers.get("location"))
        assert anon.http.get(f"/api/session?next={raw}").json()["next"] == "/", raw
    for raw, path in kept(doors):
        r = anon.http.get(f"/login?next={raw}")
        assert r.status_code == 302 and r.headers["location"] == path, (raw, r.headers.get("location"))
        assert attempt(anon, ADMIN, next=str(httpx.URL(f"/?next={raw}").params["next"])).json()["next"] == path


# ------------------------------------------------------------------------------------------ guessing
def test_the_owner_logs_in_while_a_guesser_elsewhere_is_throttled(doors: Console) -> None:
    attacker, owner = client(doors, "127.0.0.2"), client(doors, "127.0.0.3")
    for _ in range(3):  # the free failures
        assert attempt(attacker, wrong(ADMIN)).status_code == 401
    assert throttled(attempt(attacker, wrong(ADMIN)))
    assert throttled(attempt(attacker, ADMIN))  # even the right password waits: it is not checked
    # the owner, from their own address, is not held back by the guesser
    r = attempt(owner, ADMIN)
    assert r.status_code == 200 and r.json()["user"] == "admin"
    assert throttled(attempt(attacker, ADMIN))
    # another user from the guesser's address is not held back by this name's failures...
    assert attempt(client(doors, "127.0.0.2"), VIEWER).status_code == 200
    # ...until the address as a whole has failed too often (five, for any names)
    for name in ("nobody-1", "nobody-2"):
        assert attempt(attacker, (name, "guess")).status_code == 401
    assert throttled(attempt(client(doors, "127.0.0.2"), VIEWER))
    assert attempt(client(doors, "127.0.0.4"), VIEWER).status_code == 200  # elsewhere: fine


def test_forwarded_for_is_ignored_from_an_untrusted_peer(doors: Console) -> None:
    """127.0.0.5 is no trusted proxy: a new X-Forwarded-For per guess does not make a new client."""
    c = client(doors, "127.0.0.5")
    for i in range(3):
        assert attempt(c, wrong(VIEWER), xff=f"203.0.113.{i + 1}").status_code == 401
    assert throttled(attempt(c, VIEWER, xff="203.0.113.50"))
    assert throttled(attempt(c, VIEWER))
    log = doors.log_text()
    assert "failed console login for 'viewer' from 127.0.0.5" in log and "203.0.113." not in log


def test_forwarded_for_is_honoured_from_a_trusted_proxy(doors: Console) -> None:
    """127.0.0.1 is a trusted proxy: the right-most address it forwards that is not itself a
    trusted proxy is the client; what a client writes further left counts for nothing."""
    proxy = client(doors, "127.0.0.1")
    for _ in range(3):
        assert attempt(proxy, wrong(ADMIN), xff="198.51.100.7").status_code == 401
    assert throttled(attempt(proxy, ADMIN, xff="198.51.100.7"))
    assert throttled(attempt(proxy, ADMIN, xff="198.51.100.8, 198.51.100.7"))  # forged on the left
    assert throttled(attempt(proxy, ADMIN, xff="198.51.100.7, 127.0.0.1"))  # a second trusted hop
    assert "failed console login for 'admin' from 198.51.100.7" in doors.log_text()
    # the owner behind the same proxy logs in
    assert attempt(proxy, ADMIN, xff="198.51.100.8").status_code == 200
    # the failures were the forwarded client's, not the proxy's own address's
    assert attempt(client(doors, "127.0.0.1"), ADMIN).status_code == 200


def test_many_guessers_slow_each_other_but_never_a_fresh_address(tmp_path: Path) -> None:
    """Past the per-user alarm (three failures for the name here) an address that has failed once
    waits; an address with no failures still gets its attempt, and the owner logs in."""
    own = _start(tmp_path, VOXPULSE_UI_LOGIN_USER_FAILURES="3", **THROTTLE)
    try:
        guessers = [client(own, f"127.0.0.{i}") for i in (6, 7, 8)]
        for g in guessers:
            assert attempt(g, wrong(ADMIN)).status_code == 401
        assert throttled(attempt(guessers[0], wrong(ADMIN)))
        assert attempt(client(own, "127.0.0.10"), wrong(ADMIN)).status_code == 401  # a fresh address
        assert attempt(client(own, "127.0.0.9"), ADMIN).status_code == 200  # the owner
    finally:
        stop_console(own)


# ------------------------------------------------------------------------------------- same origin
def test_a_forged_host_header_does_not_make_a_request_same_origin(doors: Console) -> None:
    """The Origin is checked against the console's configured origins, not against Host (which the
    sender or a DNS-rebound name chooses)."""
    port = doors.url.rsplit(":", 1)[1]
    c = client(doors, "127.0.0.11")
    assert attempt(c, VIEWER).status_code == 200
    for forged in (f"evil.example:{port}", "evil.example"):
        origin = f"http://{forged}"
        r = c.post("/api/logout", Host=forged, Origin=origin)
        assert r.status_code == 403 and "cross-site" in r.json()["error"], (forged, r.text)
        r = c.post("/api/logout", Host=forged, Referer=f"{origin}/calls")
        assert r.status_code == 403, forged
    assert c.post("/api/logout", Origin="null").status_code == 403
    assert c.get("/api/meta").status_code == 200  # still logged in
    # a login posted from a rebound name is refused before any password check
    anon = client(doors, "127.0.0.11")
    anon.session()
    r = anon.http.post("/api/login", json={"user": VIEWER[0], "password": VIEWER[1]},
                       headers={"X-CSRF-Token": anon.csrf, "Host": f"rebound.example:{port}",
                                "Origin": f"http://rebound.example:{port}"})
    assert r.status_code == 403
    # the console's own origins pass, whatever Host says
    for origin in (doors.url, f"http://localhost:{port}"):
        assert c.post("/api/logout", Host=f"evil.example:{port}", Origin=origin).status_code == 200
        assert attempt(c, VIEWER).status_code == 200
    r = c.post("/api/logout", Host=f"evil.example:{port}", Referer=f"{doors.url}/calls")
    assert r.status_code == 200


def test_a_pinned_origin_is_the_only_one(tmp_path: Path) -> None:
    """With VOXPULSE_UI_ORIGIN set, the listen address's origin is no longer accepted."""
    own = _start(tmp_path, VOXPULSE_UI_ORIGIN="https://console.example.com")
    try:
        c = client(own, "127.0.0.12")
        c.session()
        for origin, status in ((own.url, 403), ("https://console.example.com:443", 200)):
            r = c.http.post("/api/login", json={"user": VIEWER[0], "password": VIEWER[1]},
                            headers={"X-CSRF-Token": c.csrf, "Origin": origin})
            assert r.status_code == status, (origin, r.text)
        r = c.http.get("/login?next=https://console.example.com/alerts")
        assert r.status_code == 302 and r.headers["location"] == "/alerts"
        r = c.http.get(f"/login?next={own.url}/alerts")
        assert r.status_code == 302 and r.headers["location"] == "/"
    finally:
        stop_console(own)
