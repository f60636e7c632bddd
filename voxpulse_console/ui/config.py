"""The console's settings, all from the environment: the variables of
:mod:`voxpulse_console.settings` (``docs/configuration.md`` lists them) and the library's DSN."""

from __future__ import annotations

import os
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from telemetry import _env
from voxpulse_console import settings
from voxpulse_console.insights._objects import S3Settings
from voxpulse_console.settings import DEFAULT_PROMETHEUS_URL, DEFAULT_UI_LISTEN
from voxpulse_console.ui.auth import User, parse_users
from voxpulse_console.ui.doors import Network, default_origins, origin_of, parse_networks, parse_origins

__all__ = ["DEFAULT_LISTEN", "TTFW_OBJECTIVE_MS", "UiConfig", "UiConfigError"]

DEFAULT_LISTEN: Final = DEFAULT_UI_LISTEN
#: The time-to-first-word objective the console marks (the alert rule's threshold: p95 > 3 s).
TTFW_OBJECTIVE_MS: Final = 3000.0


class UiConfigError(ValueError):
    """A console setting is missing or malformed."""


@dataclass(frozen=True, slots=True)
class UiConfig:
    users: Mapping[str, User]
    listen: str = DEFAULT_LISTEN
    database_url: str | None = None
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    #: public origin behind a proxy (https://console.example.com): Secure cookies, one of ``origins``
    public_url: str | None = None
    #: the console's own origins: a state change must come from one (``Origin`` / ``Referer``), and
    #: a login redirects only to them; empty: derived from ``listen`` (see :meth:`allowed_origins`)
    origins: tuple[str, ...] = ()
    #: reverse proxies whose ``X-Forwarded-For`` names the client (empty: the header is ignored)
    trusted_proxies: tuple[Network, ...] = ()
    #: days of "today" and the overview's daily numbers
    timezone: str = "UTC"
    #: a URL template for a call's logs, ``{call_id}`` and ``{trace_id}`` filled in (empty: no link)
    logs_url: str | None = None
    #: a URL template for a trace, ``{trace_id}`` filled in (empty: the console's own /api/traces/<id>)
    trace_url: str | None = None
    session_idle_s: float = 8 * 3600
    #: wrong passwords per user name and client address before each attempt waits (1 s, doubling)
    login_free_failures: int = 3
    login_delay_s: float = 1.0
    login_max_delay_s: float = 900.0
    #: wrong passwords per client address (any user name) in 10 minutes before it waits
    login_address_failures: int = 30
    #: wrong passwords per user name from all addresses in 15 minutes before every address that
    #: has failed for it waits from its first failure on (an address without failures never does)
    login_user_failures: int = 100
    ttfw_objective_ms: float = TTFW_OBJECTIVE_MS
    #: the console's own TLS: a certificate chain and its key (PEM files); None: plain HTTP
    tls_cert: str | None = None
    tls_key: str | None = None
    #: complete traces of finished calls kept in memory (0: fetch every time)
    trace_cache: int = 32
    #: the insights receiver's folder (``VOXPULSE_INSIGHTS_DIR``): calls' recordings are read from there
    insights_dir: Path | None = None
    #: the insights receiver's S3 bucket (``VOXPULSE_INSIGHTS_S3_*``) when it keeps the files there instead
    insights_s3: S3Settings | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """``origins`` (else the listen address's, :func:`~voxpulse_console.ui.doors.default_origins`)
        and the public URL's origin; the first is the one a redirect target is resolved against."""
        found = list(self.origins or default_origins(self.host, self.port, self.scheme))
        public = origin_of(self.public_url) if self.public_url else None
        if public and public not in found:
            found.append(public)
        return tuple(found)

    @property
    def scheme(self) -> str:
        """``https`` when the console serves TLS itself, else ``http``."""
        return "https" if self.tls_cert else "http"

    @property
    def secure_cookies(self) -> bool:
        return self.scheme == "https" or bool(self.public_url and self.public_url.lower().startswith("https://"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, listen: str | None = None) -> UiConfig:
        """Raises :class:`UiConfigError` (or :class:`~voxpulse_console.ui.auth.AuthConfigError`)
        when no user is configured or a value is malformed: the console refuses to start."""
        def get(var: _env.EnvVar) -> str | None:  # from ``env``, else os.environ
            return _env.text(var, env=env)

        users = parse_users(get(settings.UI_USERS))
        addr = listen or str(get(settings.UI_LISTEN))
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UiConfigError(f"{settings.UI_LISTEN.name}={addr!r}: expected HOST:PORT")
        tz = str(get(settings.UI_TIMEZONE))
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise UiConfigError(f"{settings.UI_TIMEZONE.name}={tz!r} is not a known time zone") from exc
        public = get(settings.UI_PUBLIC_URL)
        if public and not public.lower().startswith(("http://", "https://")):
            raise UiConfigError(f"{settings.UI_PUBLIC_URL.name} must start with http:// or https://")
        try:
            idle_h = float(str(get(settings.UI_SESSION_HOURS)))
        except ValueError as exc:
            raise UiConfigError(f"{settings.UI_SESSION_HOURS.name} must be a number") from exc
        origins: tuple[str, ...] = ()
        if raw_origins := get(settings.UI_ORIGIN):
            try:
                origins = parse_origins(raw_origins)
            except ValueError as exc:
                raise UiConfigError(f"{settings.UI_ORIGIN.name}: {exc}") from exc
        try:
            proxies = parse_networks(get(settings.UI_TRUSTED_PROXIES) or "")
        except ValueError as exc:
            raise UiConfigError(f"{settings.UI_TRUSTED_PROXIES.name}: {exc}") from exc
        free = _count(env, settings.UI_LOGIN_FREE_FAILURES, 1, 1000)
        delay = _seconds(env, settings.UI_LOGIN_DELAY_S)
        per_address = _count(env, settings.UI_LOGIN_ADDRESS_FAILURES, 1, 100_000)
        per_user = _count(env, settings.UI_LOGIN_USER_FAILURES, 1, 1_000_000)
        cert, key = get(settings.UI_TLS_CERT), get(settings.UI_TLS_KEY)
        if bool(cert) != bool(key):
            raise UiConfigError(f"{settings.UI_TLS_CERT.name} and {settings.UI_TLS_KEY.name} go together (PEM files)")
        for var, path in ((settings.UI_TLS_CERT, cert), (settings.UI_TLS_KEY, key)):
            if path and not os.access(path, os.R_OK):
                raise UiConfigError(f"{var.name}={path!r}: not a readable file")
        cache = str(get(settings.UI_TRACE_CACHE))
        if not cache.isdigit() or int(cache) > 10_000:
            raise UiConfigError(f"{settings.UI_TRACE_CACHE.name}: a number of traces, 0 to 10000")
        from voxpulse_console.insights import default_folder, s3_from_env

        try:
            s3 = s3_from_env(env)
        except ValueError as exc:
            raise UiConfigError(str(exc)) from None

        return cls(
            users=users,
            trace_cache=int(cache),
            listen=addr,
            database_url=_env.text(_env.DATABASE_URL, env=env),  # the library's lookup of the DSN
            prometheus_url=str(get(settings.PROMETHEUS_URL)).rstrip("/"),
            public_url=public.rstrip("/") if public else None,
            timezone=tz,
            logs_url=get(settings.UI_LOGS_URL),
            trace_url=get(settings.UI_TRACE_URL),
            session_idle_s=idle_h * 3600,
            origins=origins,
            trusted_proxies=proxies,
            login_free_failures=free,
            login_delay_s=delay,
            login_max_delay_s=max(900.0, delay),
            login_address_failures=per_address,
            login_user_failures=per_user,
            tls_cert=cert,
            tls_key=key,
            insights_dir=default_folder(env),
            insights_s3=s3,
        )


def _count(env: Mapping[str, str] | None, var: _env.EnvVar, low: int, high: int) -> int:
    raw = str(_env.text(var, env=env))
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise UiConfigError(f"{var.name}={raw!r}: a whole number, {low} to {high}")
    return int(raw)


def _seconds(env: Mapping[str, str] | None, var: _env.EnvVar) -> float:
    raw = str(_env.text(var, env=env))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 86_400:
        raise UiConfigError(f"{var.name}={raw!r}: seconds, 0.01 to 86400")
    return value
