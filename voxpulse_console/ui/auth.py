"""Who may use the console: password hashes from the environment, sessions, CSRF, login rate limit.

Users come from ``VOXPULSE_UI_USERS`` only: entries separated by spaces, commas or newlines, each
``NAME:HASH`` or ``NAME:HASH:pii`` (``pii``: may see raw phone numbers and unredacted transcripts).
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
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "AuthConfigError",
    "LoginLimiter",
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


def parse_users(spec: str | None) -> dict[str, User]:
    """``VOXPULSE_UI_USERS`` -> users by name. Raises :class:`AuthConfigError` when empty or malformed
    (the console refuses to start without at least one user)."""
    if not spec or not spec.strip():
        raise AuthConfigError(
            "no console users: set VOXPULSE_UI_USERS=NAME:HASH[:pii] (make a hash with `voxpulse ui hash-password`)"
        )
    users: dict[str, User] = {}
    for entry in re.split(r"[\s,]+", spec.strip()):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (2, 3):
            raise AuthConfigError(f"user entry {entry.split(':', 1)[0]!r}: expected NAME:HASH or NAME:HASH:pii")
        name, encoded = parts[0], parts[1]
        perms = parts[2].split("+") if len(parts) == 3 else []
        if not _NAME_RE.match(name):
            raise AuthConfigError(f"user name {name!r}: letters, digits and _.@- only (1-64)")
        unknown = [p for p in perms if p != PERMISSION_PII]
        if unknown:
            raise AuthConfigError(f"user {name!r}: unknown permission(s) {unknown} (known: {PERMISSION_PII})")
        _parse_hash(encoded)
        if name in users:
            raise AuthConfigError(f"user {name!r} is listed twice")
        users[name] = User(name, encoded, PERMISSION_PII in perms)
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
        s = Session(secrets.token_urlsafe(32), user.name, user.can_view_pii, secrets.token_urlsafe(32), now, now)
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
@dataclass(slots=True)
class LoginLimiter:
    """At most ``max_failures`` failed logins per client address and per user name in ``window_s``;
    beyond that every attempt (even a right password) is refused until the window slides on."""

    max_failures: int = 5
    window_s: float = 300.0
    _fails: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()
        while q and now - q[0] > self.window_s:
            q.popleft()
        if not q:
            self._fails.pop(key, None)
        return q

    def retry_after(self, *keys: str) -> float:
        """Seconds until an attempt for these keys is allowed again (0: allowed now)."""
        now = time.monotonic()
        wait = 0.0
        for k in keys:
            q = self._recent(k, now)
            if len(q) >= self.max_failures:
                wait = max(wait, self.window_s - (now - q[-self.max_failures]))
        return max(0.0, wait)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        if len(self._fails) > 100_000:  # bounded memory under a spray of addresses / names
            for k in list(self._fails)[:50_000]:
                self._fails.pop(k, None)
        for k in keys:
            q = self._fails.setdefault(k, deque(maxlen=self.max_failures * 4))
            q.append(now)

    def succeeded(self, *keys: str) -> None:
        for k in keys:
            self._fails.pop(k, None)
