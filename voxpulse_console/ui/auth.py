"""Who may use the console: password hashes from the environment, sessions, CSRF, login throttle.

Users come from ``VOXPULSE_UI_USERS`` only: entries separated by spaces, commas or newlines, each
``NAME:HASH`` or ``NAME:HASH:PERMISSIONS`` with permissions joined by ``+``: ``pii`` (may see raw phone
numbers and unredacted transcripts), ``audio`` (may play and download calls' recordings, personal data
of its own: ``alice:HASH:pii+audio``).
A hash is made by ``voxpulse ui hash-password`` (scrypt, a random salt; no ``$`` or ``:`` in it, so
it survives shells, ``.env`` files and docker compose). Plain-text passwords are never read.

Sessions live in the console process (a restart logs everyone out): a random 256-bit token in an
HttpOnly, SameSite=Strict cookie (Secure behind TLS) maps to the user, their permission and a CSRF
token that every state-changing request must echo in ``X-CSRF-Token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "PERMISSIONS",
    "PERMISSION_AUDIO",
    "PERMISSION_PII",
    "AuthConfigError",
    "LoginThrottle",
    "Session",
    "SessionStore",
    "User",
    "hash_password",
    "parse_users",
    "verify_password",
]

# scrypt cost: ~50-100 ms and 32 MiB per check on this machine kind (OWASP's minimum is N=2^17 with
# r=8 at 128 MiB; 2^15 keeps a login burst from exhausting memory of a small console host).
SCRYPT_N: Final = 2**15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_MAXMEM: Final = 128 * 1024 * 1024
_PREFIX: Final = "scrypt"
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
PERMISSION_PII: Final = "pii"
PERMISSION_AUDIO: Final = "audio"
PERMISSIONS: Final = (PERMISSION_PII, PERMISSION_AUDIO)
MAX_PASSWORD_CHARS: Final = 1024


class AuthConfigError(ValueError):
    """``VOXPULSE_UI_USERS`` is missing or malformed."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt.N.r.p.SALT.HASH`` (salt and hash base64url): what ``VOXPULSE_UI_USERS`` holds."""
    if not password:
        raise ValueError("empty password")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"{_PREFIX}.{n}.{r}.{p}.{_b64(salt)}.{_b64(digest)}"


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split(".")
    if len(parts) != 6 or parts[0] != _PREFIX:
        raise AuthConfigError("a password hash must look like scrypt.N.r.p.SALT.HASH (voxpulse ui hash-password)")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError as exc:
        raise AuthConfigError(f"malformed password hash: {exc}") from exc
    if n < 2**14 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16 or len(salt) < 8 or len(digest) < 16:
        raise AuthConfigError("password hash parameters out of range (N >= 2^14, a power of two)")
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    n, r, p, salt, digest = _parse_hash(encoded)
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    got = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=len(digest))
    return hmac.compare_digest(got, digest)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password_hash: str
    can_view_pii: bool = False
    can_play_audio: bool = False


def parse_users(spec: str | None) -> dict[str, User]:
    """``VOXPULSE_UI_USERS`` -> users by name. Raises :class:`AuthConfigError` when empty or malformed
    (the console refuses to start without at least one user)."""
    if not spec or not spec.strip():
        raise AuthConfigError(
            "no console users: set VOXPULSE_UI_USERS=NAME:HASH[:pii+audio] "
            "(make a hash with `voxpulse ui hash-password`)"
        )
    users: dict[str, User] = {}
    for entry in re.split(r"[\s,]+", spec.strip()):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (2, 3):
            raise AuthConfigError(f"user entry {entry.split(':', 1)[0]!r}: expected NAME:HASH or "
                                  "NAME:HASH:PERMISSIONS (pii, audio, joined by +)")
        name, encoded = parts[0], parts[1]
        perms = parts[2].split("+") if len(parts) == 3 else []
        if not _NAME_RE.match(name):
            raise AuthConfigError(f"user name {name!r}: letters, digits and _.@- only (1-64)")
        unknown = [p for p in perms if p not in PERMISSIONS]
        if unknown:
            raise AuthConfigError(f"user {name!r}: unknown permission(s) {unknown} (known: {', '.join(PERMISSIONS)})")
        _parse_hash(encoded)
        if name in users:
            raise AuthConfigError(f"user {name!r} is listed twice")
        users[name] = User(name, encoded, PERMISSION_PII in perms, PERMISSION_AUDIO in perms)
    return users


# ------------------------------------------------------------------------------------------ sessions
@dataclass(slots=True)
class Session:
    token: str
    user: str
    can_view_pii: bool
    csrf: str
    created: float
    last_seen: float
    can_play_audio: bool = False


class SessionStore:
    """Server-side sessions with an idle timeout and an absolute lifetime."""

    def __init__(self, *, idle_s: float = 8 * 3600, max_age_s: float = 24 * 3600, max_sessions: int = 10_000) -> None:
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}

    def create(self, user: User) -> Session:
        now = time.monotonic()
        if len(self._sessions) >= self.max_sessions:
            self._sweep(now)
            if len(self._sessions) >= self.max_sessions:  # drop the oldest
                oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
                self._sessions.pop(oldest.token, None)
        s = Session(secrets.token_urlsafe(32), user.name, user.can_view_pii, secrets.token_urlsafe(32), now, now,
                    user.can_play_audio)
        self._sessions[s.token] = s
        return s

    def get(self, token: str | None) -> Session | None:
        if not token or len(token) > 128:
            return None
        s = self._sessions.get(token)
        if s is None:
            return None
        now = time.monotonic()
        if now - s.last_seen > self.idle_s or now - s.created > self.max_age_s:
            self._sessions.pop(token, None)
            return None
        s.last_seen = now
        return s

    def drop(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    def drop_user(self, user: str) -> None:
        for t in [t for t, s in self._sessions.items() if s.user == user]:
            self._sessions.pop(t, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _sweep(self, now: float) -> None:
        for t in [t for t, s in self._sessions.items()
                  if now - s.last_seen > self.idle_s or now - s.created > self.max_age_s]:
            self._sessions.pop(t, None)


# ------------------------------------------------------------------------------------ rate limit
def _address_key(address: str) -> str:
    """IPv6 clients by their /64 (one host holds a whole /64), everything else as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(slots=True)
class _Backoff:
    failures: int
    last: float


@dataclass(slots=True)
class LoginThrottle:
    """Slows password guessing without locking the owner out.

    - **Per user name and client address**: the first ``free_failures`` wrong passwords cost
      nothing; after that each attempt from that address for that name waits ``delay_s``, doubling
      with each further failure up to ``max_delay_s``. A right password clears it; an hour without
      failures forgets it.
    - **Per client address** (IPv6: per /64): ``address_failures`` wrong passwords for any names in
      ``address_window_s``, then the address waits until the window slides on (password spraying).
    - **Per user name, from everywhere**: past ``user_failures`` wrong passwords in
      ``user_window_s`` (a guessing botnet), an address that has already failed for the name waits
      from its first failure on. An address with no failures is never held back by another
      address's failures: the owner logs in from their own address while a guesser elsewhere waits.

    A waiting attempt is refused before the password is checked, so it tells the guesser nothing.
    """

    free_failures: int = 3
    delay_s: float = 1.0
    max_delay_s: float = 900.0
    address_failures: int = 30
    address_window_s: float = 600.0
    user_failures: int = 100
    user_window_s: float = 900.0
    forget_s: float = 3600.0
    max_entries: int = 100_000
    _pairs: dict[tuple[str, str], _Backoff] = field(default_factory=dict)
    _addresses: dict[str, deque[float]] = field(default_factory=dict)
    _users: dict[str, deque[float]] = field(default_factory=dict)

    @staticmethod
    def _recent(q: deque[float] | None, now: float, window: float) -> int:
        if q is None:
            return 0
        while q and now - q[0] > window:
            q.popleft()
        return len(q)

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until ``user`` may try a password from ``address`` (0: now)."""
        now = time.monotonic()
        name, addr = user.lower(), _address_key(address)
        wait = 0.0
        b = self._pairs.get((name, addr))
        if b is not None and now - b.last > self.forget_s:
            self._pairs.pop((name, addr), None)
            b = None
        if b is not None and b.failures > 0:
            free = self.free_failures
            if self._recent(self._users.get(name), now, self.user_window_s) >= self.user_failures:
                free = 1
            if b.failures >= free:
                delay = min(self.max_delay_s, self.delay_s * 2.0 ** min(b.failures - free, 64))
                wait = max(wait, b.last + delay - now)
        q = self._addresses.get(addr)
        if self._recent(q, now, self.address_window_s) >= self.address_failures:
            assert q is not None
            wait = max(wait, self.address_window_s - (now - q[-self.address_failures]))
        return max(0.0, wait)

    def failed(self, user: str, address: str) -> None:
        now = time.monotonic()
        name, addr = user.lower(), _address_key(address)
        self._bound(now)
        b = self._pairs.setdefault((name, addr), _Backoff(0, now))
        b.failures += 1
        b.last = now
        self._addresses.setdefault(addr, deque(maxlen=self.address_failures)).append(now)
        self._users.setdefault(name, deque(maxlen=self.user_failures)).append(now)

    def succeeded(self, user: str, address: str) -> None:
        self._pairs.pop((user.lower(), _address_key(address)), None)

    def _bound(self, now: float) -> None:
        """Bounded memory under a spray of addresses and names: expired entries go first, then the
        oldest."""
        for table, window in ((self._addresses, self.address_window_s), (self._users, self.user_window_s)):
            if len(table) >= self.max_entries:
                for k in [k for k, q in table.items() if not q or now - q[-1] > window]:
                    table.pop(k, None)
                for k in list(table)[: max(0, len(table) - self.max_entries // 2)]:
                    table.pop(k, None)
        if len(self._pairs) >= self.max_entries:
            for pair in [p for p, b in self._pairs.items() if now - b.last > self.forget_s]:
                self._pairs.pop(pair, None)
            oldest = sorted(self._pairs, key=lambda p: self._pairs[p].last)
            for pair in oldest[: max(0, len(self._pairs) - self.max_entries // 2)]:
                self._pairs.pop(pair, None)
