"""The console's doors: its own origin, where a login may send the browser, who the client is.

    origins = parse_origins("https://console.example.com http://127.0.0.1:8090")
    safe_next("/%5Cevil.example", origins)          # -> "/" (a browser reads /\\ as //)
    safe_next("/calls?outcome=transferred", origins)  # -> "/calls?outcome=transferred"
    client_address("10.0.0.2", ["203.0.113.9"], parse_networks("10.0.0.0/8"))  # -> "203.0.113.9"

Everything here is pure: the web application (``app.py``) passes in the request's peer address and
headers, the configuration (``config.py``) the parsed settings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable
from typing import Final
from urllib.parse import urljoin, urlsplit

__all__ = [
    "Network",
    "client_address",
    "default_origins",
    "origin_of",
    "parse_networks",
    "parse_origins",
    "safe_next",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SCHEME_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_SPLIT_RE: Final = re.compile(r"[\s,]+")
#: what a browser's URL parser drops anywhere in a URL (tab, newline, carriage return)
_DROPPED: Final = re.compile(r"[\t\n\r]")
_C0_OR_SPACE: Final = "".join(chr(i) for i in range(0x21))
_WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
MAX_NEXT_CHARS: Final = 2048


# ------------------------------------------------------------------------------------------ origins
def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL as a browser serialises it (lower case, no
    default port), or None when ``url`` has no such origin (another scheme, no host, a bad port)."""
    try:
        u = urlsplit(url.strip())
        port = u.port
    except ValueError:
        return None
    scheme = u.scheme.lower()
    host = u.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" if port is None or port == _DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


def parse_origins(spec: str) -> tuple[str, ...]:
    """``VOXPULSE_UI_ORIGIN``: origins separated by spaces or commas, each ``http(s)://HOST[:PORT]``
    (a trailing ``/`` is allowed; a path, query, user or ``null`` is not). Raises ValueError."""
    out: list[str] = []
    for entry in _SPLIT_RE.split(spec.strip()):
        if not entry:
            continue
        u = urlsplit(entry)
        origin = origin_of(entry)
        if origin is None or u.path not in ("", "/") or u.query or u.fragment or "@" in u.netloc:
            raise ValueError(f"{entry!r}: expected an origin, http(s)://HOST[:PORT]")
        if origin not in out:
            out.append(origin)
    if not out:
        raise ValueError("no origin given")
    return tuple(out)


def default_origins(host: str, port: int, scheme: str = "http") -> tuple[str, ...]:
    """The origins a browser uses for a console listening on ``host:port``: for a loopback or
    wildcard address ``SCHEME://127.0.0.1:PORT`` and ``SCHEME://localhost:PORT`` (both name this
    machine in every browser), else ``SCHEME://HOST:PORT``."""
    h = host.strip("[]").lower()
    if h in _WILDCARD_HOSTS or h == "localhost" or _is_loopback(h):
        found = [f"{scheme}://127.0.0.1:{port}", f"{scheme}://localhost:{port}"]
        if h in ("::1", "::"):
            found.append(f"{scheme}://[::1]:{port}")
        return tuple(found)
    return (f"{scheme}://[{h}]:{port}" if ":" in h else f"{scheme}://{h}:{port}",)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------- redirect
def safe_next(target: str | None, origins: Collection[str]) -> str:
    """Where a login may send the browser: ``target`` as a path on the console (``/calls?x=1``)
    when it resolves, the way a browser resolves it, to one of the console's ``origins``; else ``/``.

    A browser drops tabs, newlines and carriage returns anywhere in a URL, strips leading and
    trailing control characters and spaces, and reads a backslash as a slash before the query
    (``/\\evil.example`` and ``/<tab>/evil.example`` are ``//evil.example``), and after ``//`` (or
    ``scheme:`` followed by any number of slashes) comes another host. Such a target and anything
    that is neither a path starting with one ``/`` nor an absolute ``http(s)://`` URL of the
    console gives ``/``; so does the login page itself. The answer always starts with exactly one
    ``/``, so it cannot name another host whatever parser reads it.
    """
    if not target or len(target) > MAX_NEXT_CHARS or not origins:
        return "/"
    t = _DROPPED.sub("", target.strip(_C0_OR_SPACE))
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in t):
        return "/"
    cut = min((i for i in (t.find("?"), t.find("#")) if i >= 0), default=len(t))
    t = t[:cut].replace("\\", "/") + t[cut:]
    if _SCHEME_RE.match(t):
        rest = t.split(":", 1)[1]
        if not rest.startswith("//") or rest.startswith("///"):
            return "/"  # "http:evil", "https:evil" and "http:///evil": parsers disagree; refuse
    elif not t.startswith("/") or t.startswith("//"):
        return "/"
    allowed = set(origins)
    base = next(iter(origins))
    try:
        resolved = urlsplit(urljoin(base + "/login", t))
        _ = resolved.port  # raises on a malformed port
    except ValueError:
        return "/"
    if resolved.username is not None or resolved.password is not None:
        return "/"
    if origin_of(f"{resolved.scheme}://{resolved.netloc}") not in allowed:
        return "/"
    path = "/" + resolved.path.lstrip("/")
    if path == "/login" or path.startswith("/login/"):
        return "/"
    query = f"?{resolved.query}" if resolved.query else ""
    return path + query + (f"#{resolved.fragment}" if resolved.fragment else "")


# ------------------------------------------------------------------------------------ client address
def parse_networks(spec: str) -> tuple[Network, ...]:
    """``VOXPULSE_UI_TRUSTED_PROXIES``: addresses or CIDR networks separated by spaces or commas
    (``10.0.0.0/8, 127.0.0.1, ::1``). Raises ValueError."""
    nets: list[Network] = []
    for entry in _SPLIT_RE.split(spec.strip()):
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError as exc:
            raise ValueError(f"{entry!r}: expected an IP address or a CIDR network") from exc
    return tuple(nets)


def _ip(text: str | None) -> IPAddress | None:
    """An address from a peer name or a forwarded hop: ``1.2.3.4``, ``::1``, ``[::1]``,
    ``[::1]:443`` or ``1.2.3.4:5678``; IPv4-mapped IPv6 as IPv4. None when it is none of these."""
    if not text:
        return None
    s = text.strip()
    if s.startswith("["):
        s = s[1:].split("]", 1)[0]
    elif s.count(":") == 1:
        s = s.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: IPAddress, networks: Iterable[Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: Collection[Network]) -> str:
    """The client's address for rate limits and logs.

    The peer's own address, unless the peer is one of the ``trusted`` proxies: then the
    ``X-Forwarded-For`` hops (every such header, in order) are read from the right, skipping
    trusted proxies, and the first address that is not one is the client (a client can write
    whatever it likes on the left; only what the trusted proxies appended counts). A malformed hop
    stops the walk at the trusted proxy to its right. Without a trusted proxy the header is ignored.
    """
    ip = _ip(peer)
    if ip is None:
        return peer or "unknown"
    if not trusted or not _trusted(ip, trusted):
        return str(ip)
    hops = [h for value in forwarded_for for h in value.split(",")]
    for hop in reversed(hops):
        hop_ip = _ip(hop)
        if hop_ip is None:
            break
        ip = hop_ip
        if not _trusted(ip, trusted):
            break
    return str(ip)
